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

// Approval command types. An approval is created pending, decided once
// (approved or denied), and an approved one is consumed once by the
// invocation it was asked for; anything else presenting it voids it.
const (
	cmdApprovalCreate  = "approval.create"
	cmdApprovalDecide  = "approval.decide"
	cmdApprovalConsume = "approval.consume"
)

// ChangeApproval is the Change kind of an approval created, decided,
// consumed or voided by a consume; Change.Approval is set.
const ChangeApproval = "approval"

// ApprovalRetention is how long a finished approval (denied, consumed,
// voided) is kept after its last change, and an unfinished one after it
// expired. Pruning happens when an approval is created, at that
// command's time, so every replica drops the same ones.
const ApprovalRetention = 7 * 24 * time.Hour

var (
	// ErrApprovalConflict: an approval with that id exists.
	ErrApprovalConflict = errors.New("store: approval conflict")
	// ErrApprovalState: the approval is not in a state that allows the
	// command (deciding a decided one, consuming a pending, denied,
	// consumed or voided one).
	ErrApprovalState = errors.New("store: approval state")
	// ErrApprovalExpired: the approval expired before the command; nothing
	// changed.
	ErrApprovalExpired = errors.New("store: approval expired")
	// ErrApprovalVoided: the consume presented other arguments, agent,
	// agent version or action than the approval was given for; the
	// approval is now voided (a change with its own revision).
	ErrApprovalVoided = errors.New("store: approval voided")
)

// approvalCreateCmd stores a new pending approval; everything in it is
// fixed by the proposer.
type approvalCreateCmd struct {
	Approval api.Approval `json:"approval"`
}

// approvalDecideCmd approves or denies a pending approval.
type approvalDecideCmd struct {
	ID      string    `json:"id"`
	Approve bool      `json:"approve"`
	By      string    `json:"by"`
	Reason  string    `json:"reason,omitempty"`
	Time    time.Time `json:"time"`
}

// approvalConsumeCmd redeems an approved approval for one invocation.
type approvalConsumeCmd struct {
	ID           string    `json:"id"`
	Agent        string    `json:"agent"`
	AgentVersion string    `json:"agent_version"`
	Action       string    `json:"action"`
	ArgsDigest   string    `json:"args_digest"`
	InvocationID string    `json:"invocation_id"`
	Time         time.Time `json:"time"`
}

// EffectiveApprovalState is the state of a as seen at now: a pending or
// approved approval whose ExpiresAt is not after now is "expired".
// Expiry is never written to the state; readers compute it.
func EffectiveApprovalState(a api.Approval, now time.Time) string {
	if (a.State == api.ApprovalPending || a.State == api.ApprovalApproved) && !now.Before(a.ExpiresAt) {
		return api.ApprovalExpired
	}
	return a.State
}

// validateNewApproval checks an approval.create on its own.
func validateNewApproval(a *api.Approval) error {
	if err := validAgentID(a.ID); err != nil {
		return fmt.Errorf("approval %v", err)
	}
	at := fmt.Sprintf("approval %q", a.ID)
	switch {
	case a.Agent == "":
		return fmt.Errorf("%s: agent is required", at)
	case a.Kind != "" && a.Kind != api.ApprovalKindAccessRequest:
		return fmt.Errorf("%s: kind %q is not %q or empty", at, a.Kind, api.ApprovalKindAccessRequest)
	case a.AgentVersion == "" && a.Kind == "":
		// An access request's subject need not be an agent.
		return fmt.Errorf("%s: agent_version is required", at)
	case a.ArgsDigest == "":
		return fmt.Errorf("%s: args_digest is required", at)
	case a.CreatedAt.IsZero():
		return fmt.Errorf("%s: created_at is required", at)
	case !a.ExpiresAt.After(a.CreatedAt):
		return fmt.Errorf("%s: expires_at %s is not after created_at %s", at, a.ExpiresAt.Format(time.RFC3339Nano), a.CreatedAt.Format(time.RFC3339Nano))
	case a.State != "" && a.State != api.ApprovalPending:
		return fmt.Errorf("%s: a new approval is pending, not %q", at, a.State)
	case a.DecidedBy != "" || !a.DecidedAt.IsZero() || a.Reason != "" || a.ConsumedBy != "" || !a.ConsumedAt.IsZero():
		return fmt.Errorf("%s: a new approval has no decision or consumption yet", at)
	}
	if err := policy.ValidateActionName(a.Action); err != nil {
		return fmt.Errorf("%s: action: %v", at, err)
	}
	return nil
}

// applyApprovalCreate stores a new pending approval, unless a kill switch
// covers what it is for. It prunes expired history first, at the command's
// time, so every replica drops the same approvals.
func (f *fsm) applyApprovalCreate(c command, p *approvalCreateCmd) (Change, applyResult, error) {
	a := p.Approval
	if err := validateNewApproval(&a); err != nil {
		return bad(c, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, dup := f.st.approvals[a.ID]; dup {
		return fail(fmt.Errorf("%w: approval %q already exists", ErrApprovalConflict, a.ID))
	}
	if k := f.killCoveringLocked(&a); k != nil {
		return fail(fmt.Errorf("%w: kill switch %q (%s) covers %s by agent %q", ErrKilled, k.ID, k.Reason, a.Action, a.Agent))
	}
	f.pruneApprovalsLocked(a.CreatedAt)
	a.State = api.ApprovalPending
	return f.putApprovalLocked(&a)
}

// applyApprovalDecide approves or denies a pending approval that has not
// expired.
func (f *fsm) applyApprovalDecide(c command, p *approvalDecideCmd) (Change, applyResult, error) {
	switch {
	case p.ID == "":
		return bad(c, errors.New("approval id is required"))
	case p.By == "":
		return bad(c, errors.New("the approver (by) is required"))
	case p.Time.IsZero():
		return bad(c, errors.New("time is required"))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	old, err := f.approvalLocked(p.ID)
	if err != nil {
		return fail(err)
	}
	if old.State != api.ApprovalPending {
		return fail(fmt.Errorf("%w: approval %q is %s, not pending: it can be decided once", ErrApprovalState, p.ID, old.State))
	}
	if err := checkExpiry(old, p.Time); err != nil {
		return fail(err)
	}
	a := *old
	a.State = api.ApprovalDenied
	if p.Approve {
		a.State = api.ApprovalApproved
	}
	a.DecidedBy, a.DecidedAt, a.Reason = p.By, p.Time, p.Reason
	return f.putApprovalLocked(&a)
}

// applyApprovalConsume redeems an approved approval once. One presented
// for anything else than it was given for is voided: that is a change of
// the state, not a rejection, and ConsumeApproval reports it as
// ErrApprovalVoided.
func (f *fsm) applyApprovalConsume(c command, p *approvalConsumeCmd) (Change, applyResult, error) {
	switch {
	case p.ID == "":
		return bad(c, errors.New("approval id is required"))
	case p.InvocationID == "":
		return bad(c, errors.New("invocation_id is required"))
	case p.Time.IsZero():
		return bad(c, errors.New("time is required"))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	old, err := f.approvalLocked(p.ID)
	if err != nil {
		return fail(err)
	}
	switch old.State {
	case api.ApprovalPending, api.ApprovalApproved:
	case api.ApprovalConsumed:
		return fail(fmt.Errorf("%w: approval %q was already used by invocation %q at %s; ask for a new one",
			ErrApprovalState, p.ID, old.ConsumedBy, old.ConsumedAt.Format(time.RFC3339)))
	case api.ApprovalDenied:
		return fail(fmt.Errorf("%w: approval %q was denied by %q", ErrApprovalState, p.ID, old.DecidedBy))
	case api.ApprovalVoided:
		return fail(fmt.Errorf("%w: approval %q was voided: %s", ErrApprovalState, p.ID, old.Reason))
	default:
		return fail(fmt.Errorf("%w: approval %q is %s", ErrApprovalState, p.ID, old.State))
	}
	if err := checkExpiry(old, p.Time); err != nil {
		return fail(err)
	}
	if why := consumeMismatch(old, p); why != "" {
		return f.putApprovalLocked(voided(old, p.Agent, why, p.Time))
	}
	if old.State == api.ApprovalPending {
		return fail(fmt.Errorf("%w: approval %q is not approved yet (pending); retry once an approver approved it", ErrApprovalState, p.ID))
	}
	a := *old
	a.State, a.ConsumedBy, a.ConsumedAt = api.ApprovalConsumed, p.InvocationID, p.Time
	return f.putApprovalLocked(&a)
}

func (f *fsm) approvalLocked(id string) (*api.Approval, error) {
	a, ok := f.st.approvals[id]
	if !ok {
		return nil, fmt.Errorf("%w: approval %q", ErrNotFound, id)
	}
	return a, nil
}

func checkExpiry(a *api.Approval, now time.Time) error {
	if !now.Before(a.ExpiresAt) {
		return fmt.Errorf("%w: approval %q expired at %s; ask for a new one", ErrApprovalExpired, a.ID, a.ExpiresAt.Format(time.RFC3339))
	}
	return nil
}

// consumeMismatch says why p may not redeem a ("" if it may).
func consumeMismatch(a *api.Approval, p *approvalConsumeCmd) string {
	switch {
	case p.Agent != a.Agent:
		return "agent changed"
	case p.AgentVersion != a.AgentVersion:
		return "agent version changed"
	case p.Action != a.Action:
		return "action changed"
	case p.ArgsDigest != a.ArgsDigest:
		return "arguments changed after approval"
	}
	return ""
}

// voided is a copy of a, voided by by for reason at t.
func voided(a *api.Approval, by, reason string, t time.Time) *api.Approval {
	v := *a
	v.State, v.DecidedBy, v.DecidedAt, v.Reason = api.ApprovalVoided, by, t, reason
	return &v
}

// putApprovalLocked stores a (a fresh value) at the next revision.
func (f *fsm) putApprovalLocked(a *api.Approval) (Change, applyResult, error) {
	f.st.revision++
	a.Revision = f.st.revision
	f.st.approvals[a.ID] = a
	out := *a
	return Change{Revision: f.st.revision, Kind: ChangeApproval, Approval: a},
		applyResult{Revision: f.st.revision, Approval: &out}, nil
}

// pruneApprovalsLocked drops approvals whose retention ended before now:
// finished ones last changed, and unfinished ones expired, more than
// ApprovalRetention earlier. Deleting from a map while ranging over it is
// safe, and the result does not depend on the order.
func (f *fsm) pruneApprovalsLocked(now time.Time) {
	cutoff := now.Add(-ApprovalRetention)
	for id, a := range f.st.approvals {
		var last time.Time
		switch a.State {
		case api.ApprovalPending, api.ApprovalApproved:
			last = a.ExpiresAt
		default:
			last = a.CreatedAt
			for _, t := range []time.Time{a.DecidedAt, a.ConsumedAt} {
				if t.After(last) {
					last = t
				}
			}
		}
		if last.Before(cutoff) {
			delete(f.st.approvals, id)
		}
	}
}

// CreateApproval stores a new pending approval. The caller fixes ID
// (unique: ErrApprovalConflict otherwise), CreatedAt, ExpiresAt, Agent,
// AgentVersion, Action and ArgsDigest; State must be empty or pending. An
// active kill switch covering it refuses it with ErrKilled. Leader only.
func (s *Store) CreateApproval(ctx context.Context, a api.Approval) (api.Approval, error) {
	a.Revision = 0
	if err := validateNewApproval(&a); err != nil {
		return api.Approval{}, fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	return s.proposeApproval(ctx, cmdApprovalCreate, approvalCreateCmd{Approval: a})
}

// DecideApproval approves or denies a pending approval, once. A decided
// one gives ErrApprovalState, an expired one ErrApprovalExpired (nothing
// changes either way). Leader only.
func (s *Store) DecideApproval(ctx context.Context, id string, approve bool, by, reason string, now time.Time) (api.Approval, error) {
	if by == "" {
		return api.Approval{}, fmt.Errorf("%w: approval %q: the approver is required", ErrBadCommand, id)
	}
	return s.proposeApproval(ctx, cmdApprovalDecide, approvalDecideCmd{ID: id, Approve: approve, By: by, Reason: reason, Time: now})
}

// ConsumeApproval redeems an approved approval for invocationID: it
// succeeds once, when agent, agentVersion, action and argsDigest all equal
// the approval's, before it expires. Raft orders consumes, so of two
// concurrent ones exactly one succeeds. If any of the four differ the
// approval is voided (a change of its own) and returned with
// ErrApprovalVoided. A pending, denied, consumed or voided approval gives
// ErrApprovalState; an expired one ErrApprovalExpired; neither changes
// anything. Leader only.
func (s *Store) ConsumeApproval(ctx context.Context, id, agent, agentVersion, action, argsDigest, invocationID string, now time.Time) (api.Approval, error) {
	a, err := s.proposeApproval(ctx, cmdApprovalConsume, approvalConsumeCmd{
		ID: id, Agent: agent, AgentVersion: agentVersion, Action: action, ArgsDigest: argsDigest,
		InvocationID: invocationID, Time: now,
	})
	if err == nil && a.State == api.ApprovalVoided {
		return a, fmt.Errorf("%w: approval %q: %s; ask for a new approval", ErrApprovalVoided, id, a.Reason)
	}
	return a, err
}

func (s *Store) proposeApproval(ctx context.Context, typ string, payload any) (api.Approval, error) {
	res, err := s.propose(ctx, typ, payload)
	if err != nil {
		return api.Approval{}, err
	}
	return *res.Approval, nil
}

// Approval returns an approval from the local replica, as stored: see
// EffectiveApprovalState for whether it has expired. Slices are shared and
// must not be modified.
func (s *Store) Approval(id string) (api.Approval, bool) {
	f := s.fsm
	f.mu.RLock()
	defer f.mu.RUnlock()
	a, ok := f.st.approvals[id]
	if !ok {
		return api.Approval{}, false
	}
	return *a, true
}

// Approvals lists the kept approvals by CreatedAt, then ID.
func (s *Store) Approvals() []api.Approval {
	f := s.fsm
	f.mu.RLock()
	out := make([]api.Approval, 0, len(f.st.approvals))
	for _, a := range f.st.approvals {
		out = append(out, *a)
	}
	f.mu.RUnlock()
	sortApprovals(out)
	return out
}

func sortApprovals(as []api.Approval) {
	sort.Slice(as, func(i, j int) bool {
		if c := as[i].CreatedAt.Compare(as[j].CreatedAt); c != 0 {
			return c < 0
		}
		return as[i].ID < as[j].ID
	})
}
