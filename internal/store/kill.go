package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/policy"
)

// Kill switch command types. A switch is set active and lifted once; it
// is never deleted, except that only the maxLiftedKills most recently
// lifted are kept.
const (
	cmdKillSet  = "kill.set"
	cmdKillLift = "kill.lift"
)

// ChangeKill is the Change kind of a kill switch set or lifted;
// Change.Kill is set, and Change.Voided lists the approvals a set voided.
const ChangeKill = "kill"

// maxLiftedKills bounds the lifted switches kept as history: a lift
// beyond it drops the one lifted longest ago (lowest revision).
const maxLiftedKills = 1000

var (
	// ErrKillState: lifting a switch that is not active, or setting one
	// with an id that exists.
	ErrKillState = errors.New("store: kill switch state")
	// ErrKilled: an active kill switch covers what the command would
	// start (an approval for an agent, tenant or action it stops).
	ErrKilled = errors.New("store: stopped by a kill switch")
)

// killSetCmd sets a new kill switch, fixed by the proposer.
type killSetCmd struct {
	Kill api.KillSwitch `json:"kill"`
}

// killLiftCmd lifts an active kill switch.
type killLiftCmd struct {
	ID     string    `json:"id"`
	By     string    `json:"by"`
	Reason string    `json:"reason,omitempty"`
	Time   time.Time `json:"time"`
}

// validateNewKill checks a kill.set on its own.
func validateNewKill(k *api.KillSwitch) error {
	if err := validAgentID(k.ID); err != nil {
		return fmt.Errorf("kill switch %v", err)
	}
	// Named by what it would stop: its id was made by the proposer and
	// means nothing to whoever asked (the switch is never created).
	at := "kill switch (" + k.Scope + ")"
	if k.Target != "" {
		at = "kill switch (" + k.Scope + " " + k.Target + ")"
	}
	switch k.Scope {
	case api.KillGlobal:
		if k.Target != "" {
			return fmt.Errorf("%s: a global kill switch has no target (got %q)", at, k.Target)
		}
	case api.KillTenant, api.KillAgent:
		if err := validAgentID(k.Target); err != nil {
			return fmt.Errorf("%s: %s target: %v", at, k.Scope, err)
		}
	case api.KillAction:
		if err := policy.ValidatePattern(k.Target); err != nil {
			return fmt.Errorf("%s: action target: %v", at, err)
		}
	default:
		return fmt.Errorf("%s: unknown scope %q; want global, tenant, agent or action", at, k.Scope)
	}
	switch {
	case k.Reason == "":
		return fmt.Errorf("%s: a reason is required: say why it is set", at)
	case k.By == "":
		return fmt.Errorf("%s: who sets it (by) is required", at)
	case k.CreatedAt.IsZero():
		return fmt.Errorf("%s: created_at is required", at)
	case k.LiftedBy != "" || !k.LiftedAt.IsZero() || k.LiftReason != "":
		return fmt.Errorf("%s: a new kill switch is not lifted", at)
	}
	return nil
}

// killCovers reports whether k stops what approval a is for.
func killCovers(k *api.KillSwitch, a *api.Approval) bool {
	if a.AgentVersion == KernelApproval {
		// An operator's act held for a second person: kill switches stop
		// agents, not the people who lift them.
		return false
	}
	return KillCovers(k, a.Agent, a.Tenant, a.Action)
}

// KernelApproval is the agent_version of an approval that holds an
// operator's act on the kernel's API (the two-person rule): its agent is
// the principal who asked, its action the route's kernel.* action.
const KernelApproval = "kernel"

// KillCovers reports whether kill switch k's scope covers an action of
// the agent of the tenant: the one rule for the store (which approvals a
// kill switch voids) and the gateway (which invocations it stops).
func KillCovers(k *api.KillSwitch, agent, tenant, action string) bool {
	switch k.Scope {
	case api.KillGlobal:
		return true
	case api.KillTenant:
		return tenant == k.Target
	case api.KillAgent:
		return agent == k.Target
	case api.KillAction:
		return policy.MatchPattern(k.Target, action)
	}
	return false
}

// killCoveringLocked is the active kill switch (the smallest id, so every
// replica names the same) that covers a, or nil.
func (f *fsm) killCoveringLocked(a *api.Approval) *api.KillSwitch {
	var found *api.KillSwitch
	for _, k := range f.st.kills {
		if k.Active && killCovers(k, a) && (found == nil || k.ID < found.ID) {
			found = k
		}
	}
	return found
}

// applyKillSet sets a new kill switch and, in the same revision, voids the
// unexpired approvals it covers.
func (f *fsm) applyKillSet(c command, p *killSetCmd) (Change, applyResult, error) {
	k := p.Kill
	if err := validateNewKill(&k); err != nil {
		return bad(c, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, dup := f.st.kills[k.ID]; dup {
		return fail(fmt.Errorf("%w: kill switch %q already exists", ErrKillState, k.ID))
	}
	f.st.revision++
	k.Active, k.Revision = true, f.st.revision
	f.st.kills[k.ID] = &k
	f.st.killRev = f.st.revision
	// Void, in this revision, what it covers and has not expired yet.
	var void []*api.Approval
	why := fmt.Sprintf("kill switch %s: %s", k.ID, k.Reason)
	for _, a := range f.st.approvals {
		if (a.State == api.ApprovalPending || a.State == api.ApprovalApproved) && k.CreatedAt.Before(a.ExpiresAt) && killCovers(&k, a) {
			v := voided(a, k.By, why, k.CreatedAt)
			v.Revision = f.st.revision
			f.st.approvals[v.ID] = v
			void = append(void, v)
		}
	}
	sort.Slice(void, func(i, j int) bool { return void[i].ID < void[j].ID })
	out := k
	return Change{Revision: f.st.revision, Kind: ChangeKill, Kill: &k, Voided: void},
		applyResult{Revision: f.st.revision, Kill: &out}, nil
}

// applyKillLift lifts an active kill switch, once; lifted ones beyond
// maxLiftedKills are pruned.
func (f *fsm) applyKillLift(c command, p *killLiftCmd) (Change, applyResult, error) {
	switch {
	case p.ID == "":
		return bad(c, errors.New("kill switch id is required"))
	case p.By == "":
		return bad(c, errors.New("who lifts it (by) is required"))
	case p.Time.IsZero():
		return bad(c, errors.New("time is required"))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	old, ok := f.st.kills[p.ID]
	if !ok {
		return fail(fmt.Errorf("%w: kill switch %q", ErrNotFound, p.ID))
	}
	if !old.Active {
		return fail(fmt.Errorf("%w: kill switch %q was already lifted by %q at %s", ErrKillState, p.ID, old.LiftedBy, old.LiftedAt.Format(time.RFC3339)))
	}
	f.st.revision++
	k := *old
	k.Active, k.LiftedBy, k.LiftedAt, k.LiftReason, k.Revision = false, p.By, p.Time, p.Reason, f.st.revision
	f.st.kills[k.ID] = &k
	f.st.killRev = f.st.revision
	f.pruneKillsLocked()
	out := k
	return Change{Revision: f.st.revision, Kind: ChangeKill, Kill: &k},
		applyResult{Revision: f.st.revision, Kill: &out}, nil
}

// pruneKillsLocked keeps the maxLiftedKills most recently lifted switches.
// A lift's revision is unique and increasing, so "most recent" is the
// same on every replica, and the switch just lifted is never dropped.
func (f *fsm) pruneKillsLocked() {
	var lifted []*api.KillSwitch
	for _, k := range f.st.kills {
		if !k.Active {
			lifted = append(lifted, k)
		}
	}
	if len(lifted) <= maxLiftedKills {
		return
	}
	sort.Slice(lifted, func(i, j int) bool { return lifted[i].Revision < lifted[j].Revision })
	for _, k := range lifted[:len(lifted)-maxLiftedKills] {
		delete(f.st.kills, k.ID)
	}
}

// SetKill sets a kill switch. The caller fixes ID (unique: ErrKillState
// otherwise), CreatedAt, Scope, Target, Reason and By. In the same
// revision every pending or approved approval in its scope that has not
// expired is voided. Leader only.
func (s *Store) SetKill(ctx context.Context, k api.KillSwitch) (api.KillSwitch, error) {
	k.Active, k.Revision = false, 0
	if err := validateNewKill(&k); err != nil {
		return api.KillSwitch{}, fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	return s.proposeKill(ctx, cmdKillSet, killSetCmd{Kill: k})
}

// LiftKill lifts an active kill switch (ErrNotFound if unknown,
// ErrKillState if already lifted). Leader only.
func (s *Store) LiftKill(ctx context.Context, id, by, reason string, now time.Time) (api.KillSwitch, error) {
	if by == "" {
		return api.KillSwitch{}, fmt.Errorf("%w: kill switch %q: who lifts it (by) is required", ErrBadCommand, id)
	}
	return s.proposeKill(ctx, cmdKillLift, killLiftCmd{ID: id, By: by, Reason: reason, Time: now})
}

func (s *Store) proposeKill(ctx context.Context, typ string, payload any) (api.KillSwitch, error) {
	res, err := s.propose(ctx, typ, payload)
	if err != nil {
		return api.KillSwitch{}, err
	}
	return *res.Kill, nil
}

// KillSwitch returns a kill switch from the local replica.
func (s *Store) KillSwitch(id string) (api.KillSwitch, bool) {
	f := s.fsm
	f.mu.RLock()
	defer f.mu.RUnlock()
	k, ok := f.st.kills[id]
	if !ok {
		return api.KillSwitch{}, false
	}
	return *k, true
}

// Kills lists every kept kill switch, active and lifted, by CreatedAt,
// then ID.
func (s *Store) Kills() []api.KillSwitch { return s.kills(false) }

// ActiveKills lists the active kill switches by CreatedAt, then ID.
func (s *Store) ActiveKills() []api.KillSwitch { return s.kills(true) }

func (s *Store) kills(activeOnly bool) []api.KillSwitch {
	f := s.fsm
	f.mu.RLock()
	out := make([]api.KillSwitch, 0, len(f.st.kills))
	for _, k := range f.st.kills {
		if k.Active || !activeOnly {
			out = append(out, *k)
		}
	}
	f.mu.RUnlock()
	sortKills(out)
	return out
}

func sortKills(ks []api.KillSwitch) {
	sort.Slice(ks, func(i, j int) bool {
		if c := ks[i].CreatedAt.Compare(ks[j].CreatedAt); c != 0 {
			return c < 0
		}
		return ks[i].ID < ks[j].ID
	})
}

// KillRevision is the revision of the last kill switch set or lifted (0:
// none), so a reader can skip Kills when it has not moved.
func (s *Store) KillRevision() uint64 {
	f := s.fsm
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.killRev
}
