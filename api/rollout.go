package api

import "time"

// States of a rollout.
const (
	RolloutActive   = "active"
	RolloutAborted  = "aborted"
	RolloutPromoted = "promoted"
)

// RolloutCohort says which subjects get the candidate: those whose stored
// or sent properties match every key of Selector, or, without a selector,
// Percent of subjects chosen by a stable hash of the rollout id and the
// subject id (0 serves nobody: the candidate is only shadow-evaluated).
type RolloutCohort struct {
	Percent  float64        `json:"percent,omitempty"`
	Selector map[string]any `json:"selector,omitempty"`
}

// RolloutAbortPolicy is when nodes abort a rollout by themselves: once a node
// has MinSamples shadow evaluations, a flip rate (decisions the candidate
// answers differently) above MaxFlipRate, or a rate of candidate evaluation
// errors above MaxErrorRate. An absent rate is not checked.
type RolloutAbortPolicy struct {
	MaxFlipRate  *float64 `json:"max_flip_rate,omitempty"`
	MaxErrorRate *float64 `json:"max_error_rate,omitempty"`
	MinSamples   uint64   `json:"min_samples,omitempty"`
}

// Rollout is a canary rollout of a candidate bundle version, as replicated.
type Rollout struct {
	// ID is the revision that started the rollout.
	ID    uint64 `json:"id"`
	State string `json:"state"`
	// Candidate is the version served to the cohort. A staged candidate
	// (files sent with the start) is numbered as the next version, which a
	// promote publishes; until then it is not in the version list.
	Candidate     uint64             `json:"candidate"`
	Staged        bool               `json:"staged,omitempty"`
	CandidateHash string             `json:"candidate_hash,omitempty"`
	Base          uint64             `json:"base"` // the current version when it started
	Cohort        RolloutCohort      `json:"cohort"`
	Abort         RolloutAbortPolicy `json:"abort"`
	StartedBy     string             `json:"started_by,omitempty"`
	StartedAt     time.Time          `json:"started_at"`
	// Set when it ended.
	EndedBy  string    `json:"ended_by,omitempty"`
	EndedAt  time.Time `json:"ended_at,omitzero"`
	Reason   string    `json:"reason,omitempty"`
	Promoted uint64    `json:"promoted_version,omitempty"` // the version a promote published
	Revision uint64    `json:"revision"`                   // of the last change
}

// RolloutRequest starts a rollout (POST /v1/rollouts) of exactly one of an
// existing version (Candidate) or a new bundle staged by the rollout
// (Files, validated like a publish).
type RolloutRequest struct {
	Candidate uint64             `json:"candidate,omitempty"`
	Files     []File             `json:"files,omitempty"`
	Percent   float64            `json:"percent,omitempty"`
	Selector  map[string]any     `json:"selector,omitempty"`
	Abort     RolloutAbortPolicy `json:"abort"`
}

// RolloutEndRequest aborts (with a reason) or promotes the active rollout.
// ID, when set, ends only that rollout.
type RolloutEndRequest struct {
	ID     uint64 `json:"id,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// RolloutFlips counts shadow decisions that flipped from one effect to
// another, for one rule of the candidate's answer (policy/rule, or the
// layer for an implicit denial) and one action.
type RolloutFlips struct {
	Rule   string `json:"rule"`
	Action string `json:"action"`
	From   Effect `json:"from"`
	To     Effect `json:"to"`
	Count  uint64 `json:"count"`
}

// RolloutCounters are one node's shadow counters of the active rollout.
type RolloutCounters struct {
	Node    string         `json:"node,omitempty"`
	Samples uint64         `json:"samples"`
	Flips   uint64         `json:"flips"`
	Errors  uint64         `json:"errors"`
	Cohort  uint64         `json:"cohort"` // decisions served by the candidate
	ByRule  []RolloutFlips `json:"by_rule"`
}

// RolloutStatus answers GET /v1/rollouts/current and the writes: the latest
// rollout (nil if none was ever started) and this node's counters.
type RolloutStatus struct {
	Rollout  *Rollout         `json:"rollout"`
	Counters *RolloutCounters `json:"counters,omitempty"`
	Revision uint64           `json:"revision"`
}
