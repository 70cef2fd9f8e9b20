package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"
	"unicode/utf8"

	"github.com/aibos/kernel/api"
)

// Placement of sandboxed agents on nodes, and their timers. The leader
// decides where each agent runs (internal/sandbox); this file holds the
// replicated assignment and the fence that keeps an agent acting from one
// node only: every write a running agent makes carries the epoch of its
// placement, and apply refuses it unless that is still the agent's
// current one.

// ErrStaleEpoch: a write of an agent's placement epoch other than the
// current one (the agent was placed elsewhere since).
var ErrStaleEpoch = errors.New("store: stale placement epoch")

// Bounds of timers, checked in Apply.
const (
	MaxTimers         = 64 // per agent
	MaxTimerNameBytes = 128
)

// placement is where an agent is placed: a node and the epoch of the
// placement. Epoch is kept when the agent stops (Node empty), so every
// placement of an agent has a higher one than the last.
type placement struct {
	Node  string    `json:"node,omitempty"`
	Epoch uint64    `json:"epoch,omitempty"`
	Time  time.Time `json:"time,omitzero"`
}

// placeEntry moves one agent to Node; From is the epoch the proposer saw
// (a placement made meanwhile refuses the command).
type placeEntry struct {
	Agent string `json:"agent"`
	Node  string `json:"node"`
	From  uint64 `json:"from"`
}

// sandboxPlaceCmd places agents at once; all or none.
type sandboxPlaceCmd struct {
	Placements []placeEntry `json:"placements"`
	Time       time.Time    `json:"time"`
}

// Timer operations.
const (
	TimerSet    = "set"    // arm or move
	TimerCancel = "cancel" // remove
	TimerFired  = "fired"  // remove the one due at Due, if still that one
)

// sandboxTimerCmd changes one of an agent's timers, in placement Epoch.
type sandboxTimerCmd struct {
	Agent string    `json:"agent"`
	Epoch uint64    `json:"epoch"`
	Op    string    `json:"op"`
	Name  string    `json:"name"`
	Due   time.Time `json:"due,omitzero"`
}

// fence refuses a write of placement epoch unless the agent is placed
// (on some node) in that epoch now.
func (r *sandboxRecord) fence(epoch uint64) error {
	if r.Place.Node == "" || r.Place.Epoch != epoch {
		return fmt.Errorf("%w: agent %q is in epoch %d on node %q, not epoch %d: the write is refused", ErrStaleEpoch, r.Agent, r.Place.Epoch, r.Place.Node, epoch)
	}
	return nil
}

// applySandboxPlace places agents on nodes: each gets the next epoch,
// above any it had (and above any epoch a status report carried).
func (f *fsm) applySandboxPlace(c command, p *sandboxPlaceCmd) (Change, applyResult, error) {
	if len(p.Placements) == 0 {
		return bad(c, errors.New("no placements"))
	}
	seen := map[string]bool{}
	for _, e := range p.Placements {
		if e.Agent == "" || e.Node == "" {
			return bad(c, errors.New("a placement needs an agent and a node"))
		}
		if seen[e.Agent] {
			return bad(c, fmt.Errorf("agent %q is placed twice", e.Agent))
		}
		seen[e.Agent] = true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	next := make(map[string]*sandboxRecord, len(p.Placements))
	for _, e := range p.Placements {
		if _, err := f.liveAgentLocked(e.Agent); err != nil {
			return fail(err)
		}
		r := f.st.sandbox[e.Agent]
		if r == nil || r.Desired != api.SandboxRun {
			return fail(fmt.Errorf("%w: agent %q is not asked to run", ErrAgentConflict, e.Agent))
		}
		if r.Place.Epoch != e.From {
			return fail(fmt.Errorf("%w: agent %q was placed in epoch %d meanwhile (the placement saw %d)", ErrStaleEpoch, e.Agent, r.Place.Epoch, e.From))
		}
		r = r.clone()
		r.Place = placement{Node: e.Node, Epoch: max(r.Place.Epoch, r.Status.Epoch) + 1, Time: p.Time}
		next[e.Agent] = r
	}
	f.st.revision++
	for id, r := range next {
		f.st.sandbox[id] = r
	}
	return Change{Revision: f.st.revision, Kind: ChangeSandbox, Agent: p.Placements[0].Agent}, applyResult{Revision: f.st.revision}, nil
}

// applySandboxTimer sets, cancels or retires a fired timer of an agent,
// fenced by its placement epoch.
func (f *fsm) applySandboxTimer(c command, p *sandboxTimerCmd) (Change, applyResult, error) {
	switch {
	case p.Op != TimerSet && p.Op != TimerCancel && p.Op != TimerFired:
		return bad(c, fmt.Errorf("timer op %q: want %s, %s or %s", p.Op, TimerSet, TimerCancel, TimerFired))
	case p.Name == "" || len(p.Name) > MaxTimerNameBytes || !utf8.ValidString(p.Name):
		return bad(c, fmt.Errorf("timer name: 1 to %d bytes of UTF-8", MaxTimerNameBytes))
	case p.Op != TimerCancel && p.Due.IsZero():
		return bad(c, errors.New("timer without a due time"))
	}
	return f.sandboxChange(p.Agent, func(r *sandboxRecord) error {
		if err := r.fence(p.Epoch); err != nil {
			return err
		}
		switch p.Op {
		case TimerSet:
			if _, ok := r.Timers[p.Name]; !ok && len(r.Timers) >= MaxTimers {
				return fmt.Errorf("%w: agent %q has %d timers set; at most %d (cancel some)", ErrQuota, p.Agent, len(r.Timers), MaxTimers)
			}
			if r.Timers == nil {
				r.Timers = map[string]time.Time{}
			}
			r.Timers[p.Name] = p.Due
		case TimerCancel:
			delete(r.Timers, p.Name)
		case TimerFired:
			// Set again while it fired (a periodic timer): keep the new one.
			if due, ok := r.Timers[p.Name]; ok && due.Equal(p.Due) {
				delete(r.Timers, p.Name)
			}
		}
		return nil
	})
}

// PlaceAgents records placements (agent → node; From the epoch each
// was seen in) in one command. Leader only.
func (s *Store) PlaceAgents(ctx context.Context, ps []api.AgentPlacement, now time.Time) (uint64, error) {
	cmd := sandboxPlaceCmd{Time: now}
	for _, p := range ps {
		cmd.Placements = append(cmd.Placements, placeEntry{Agent: p.Agent, Node: p.Node, From: p.Epoch})
	}
	res, err := s.propose(ctx, cmdSandboxPlace, cmd)
	return res.Revision, err
}

// SetAgentTimer sets (op TimerSet, due), cancels, or retires the fired
// timer name of an agent running in placement epoch. Leader only.
func (s *Store) SetAgentTimer(ctx context.Context, agent string, epoch uint64, op, name string, due time.Time) (uint64, error) {
	res, err := s.propose(ctx, cmdSandboxTimer, sandboxTimerCmd{Agent: agent, Epoch: epoch, Op: op, Name: name, Due: due})
	return res.Revision, err
}

// AgentPlacement is the node an agent is placed on ("" for none) and the
// epoch of its placement.
func (s *Store) AgentPlacement(agent string) (node string, epoch uint64) {
	r := s.sandboxRecord(agent)
	if r == nil {
		return "", 0
	}
	return r.Place.Node, r.Place.Epoch
}

// AgentTimers are an agent's pending timers: name → due (a copy).
func (s *Store) AgentTimers(agent string) map[string]time.Time {
	s.fsm.mu.RLock()
	defer s.fsm.mu.RUnlock()
	r := s.fsm.st.sandbox[agent]
	if r == nil || len(r.Timers) == 0 {
		return nil
	}
	out := make(map[string]time.Time, len(r.Timers))
	for k, v := range r.Timers {
		out[k] = v
	}
	return out
}

// SandboxPlacements lists the agents asked to run with their placements
// (Node empty: not placed), by agent id.
func (s *Store) SandboxPlacements() []api.AgentPlacement {
	s.fsm.mu.RLock()
	var out []api.AgentPlacement
	for id, r := range s.fsm.st.sandbox {
		if r.Desired == api.SandboxRun {
			out = append(out, api.AgentPlacement{Agent: id, Node: r.Place.Node, Epoch: r.Place.Epoch, PlacedAt: r.Place.Time})
		}
	}
	s.fsm.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Agent < out[j].Agent })
	return out
}
