package api

import "time"

// SimulationReport says what a candidate bundle would have decided differently. A
// flip is "recorded→candidate", e.g. "allow→deny". The baseline is each
// decision as recorded, with the bundle version then current.
type SimulationReport struct {
	Since    time.Time `json:"since"`
	Replayed int       `json:"replayed"`
	Changed  int       `json:"changed"`
	// Errors counts candidate decisions that had condition errors.
	Errors int            `json:"errors"`
	Flips  map[string]int `json:"flips"`
	// ByAction, ByRule and BySubject count flips per action name, per
	// rule that determined the candidate's decision, and per subject
	// ("type:id").
	ByAction  map[string]map[string]int `json:"by_action"`
	ByRule    map[string]map[string]int `json:"by_rule"`
	BySubject map[string]map[string]int `json:"by_subject"`
	Samples   []SimulatedChange         `json:"samples"`
	Took      Duration                  `json:"took"`
}

// SimulatedChange is one logged decision that would change.
type SimulatedChange struct {
	Time          time.Time    `json:"time"`
	Request       CheckRequest `json:"request"`
	Version       uint64       `json:"version"`
	Recorded      Effect       `json:"recorded"`
	RecordedRule  string       `json:"recorded_rule,omitempty"`
	Candidate     Effect       `json:"candidate"`
	CandidateRule string       `json:"candidate_rule,omitempty"`
}
