package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/aibos/kernel/api"
)

// Rollout command types: at most one rollout is active; start needs none
// active, abort and promote need one. While one is active the bundle is
// frozen: publish and rollback are rejected (ErrRolloutActive), so a staged
// candidate's number (the next version) stays the one a promote publishes.
const (
	cmdRolloutStart   = "rollout.start"
	cmdRolloutAbort   = "rollout.abort"
	cmdRolloutPromote = "rollout.promote"
)

// ChangeRollout is the Change kind of a rollout started, aborted or
// promoted; Rollout is set, and Candidate while it is active. A promote
// also sets Version: the new version with the candidate's files.
const ChangeRollout = "rollout"

// DefaultMinSamples is the abort policy's MinSamples when none is given.
const DefaultMinSamples = 100

var (
	// ErrRolloutActive: a rollout is active, so another cannot start and
	// the bundle cannot be published or rolled back (abort or promote it
	// first).
	ErrRolloutActive = errors.New("store: a rollout is active")
	// ErrNoRollout: no rollout is active (or not the one named).
	ErrNoRollout = errors.New("store: no such active rollout")
)

// rolloutStartCmd starts a rollout of an existing version (Candidate) or of
// staged files (Files, with Hash computed by the proposer). ID, base,
// revision and a staged candidate's number are assigned by the state
// machine.
type rolloutStartCmd struct {
	Candidate uint64                 `json:"candidate,omitempty"`
	Files     []api.File             `json:"files,omitempty"`
	Hash      string                 `json:"hash,omitempty"`
	Cohort    api.RolloutCohort      `json:"cohort"`
	Abort     api.RolloutAbortPolicy `json:"abort"`
	By        string                 `json:"by,omitempty"`
	Time      time.Time              `json:"time"`
}

// rolloutEndCmd aborts or promotes the active rollout (ID 0: whichever is
// active).
type rolloutEndCmd struct {
	ID     uint64    `json:"id,omitempty"`
	Reason string    `json:"reason,omitempty"`
	By     string    `json:"by,omitempty"`
	Time   time.Time `json:"time"`
}

// validateRollout checks a start command on its own (the state machine
// checks it against the state).
func validateRollout(p *rolloutStartCmd) error {
	switch {
	case p.Candidate == 0 && len(p.Files) == 0:
		return errors.New("candidate is missing: give the version to canary, or the files of a new bundle")
	case p.Candidate != 0 && len(p.Files) > 0:
		return errors.New("give either candidate or files, not both")
	case len(p.Files) > 0:
		if err := validateFiles(p.Files); err != nil {
			return err
		}
		if p.Hash == "" {
			return errors.New("staged files without their hash")
		}
	}
	c := p.Cohort
	if math.IsNaN(c.Percent) || c.Percent < 0 || c.Percent > 100 {
		return fmt.Errorf("percent %v is not between 0 and 100", c.Percent)
	}
	if len(c.Selector) > 0 && c.Percent != 0 {
		return errors.New("give either percent or selector, not both")
	}
	for name, r := range map[string]*float64{"max_flip_rate": p.Abort.MaxFlipRate, "max_error_rate": p.Abort.MaxErrorRate} {
		if r != nil && (math.IsNaN(*r) || *r < 0 || *r > 1) {
			return fmt.Errorf("%s %v is not between 0 and 1", name, *r)
		}
	}
	return nil
}

// applyRolloutStart starts a rollout, of an existing version or of staged
// files, while none is active.
func (f *fsm) applyRolloutStart(c command, p *rolloutStartCmd) (Change, applyResult, error) {
	if err := validateRollout(p); err != nil {
		return bad(c, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if r := f.st.rollout; r != nil && r.State == api.RolloutActive {
		return fail(fmt.Errorf("%w: rollout %d of version %d", ErrRolloutActive, r.ID, r.Candidate))
	}
	n := uint64(len(f.st.versions))
	var staged *api.BundleVersion
	cand, hash := p.Candidate, p.Hash
	if len(p.Files) > 0 {
		// Numbered as the next version: the bundle stays frozen until
		// the rollout ends, so a promote publishes exactly that one.
		cand = n + 1
		staged = &api.BundleVersion{
			VersionInfo: api.VersionInfo{Version: cand, Parent: n, Hash: p.Hash, Author: p.By, Time: p.Time},
			Files:       p.Files,
		}
	} else {
		if cand > n {
			return fail(fmt.Errorf("%w: %d", ErrNoSuchVersion, cand))
		}
		if cand == n {
			return bad(c, fmt.Errorf("version %d is already the current version", n))
		}
		hash = f.st.versions[cand-1].Hash
	}
	f.st.revision++
	r := &api.Rollout{
		ID: f.st.revision, State: api.RolloutActive, Candidate: cand, Staged: staged != nil, CandidateHash: hash,
		Base: n, Cohort: p.Cohort, Abort: p.Abort, StartedBy: p.By, StartedAt: p.Time, Revision: f.st.revision,
	}
	r.Cohort.Selector = normProps(r.Cohort.Selector)
	if staged != nil {
		staged.Revision = f.st.revision
		staged.Message = fmt.Sprintf("candidate of rollout %d", r.ID)
	}
	f.st.rollout = r
	f.st.staged = staged
	return f.rolloutChangeLocked(nil)
}

// applyRolloutAbort ends the active rollout without changing the current
// version.
func (f *fsm) applyRolloutAbort(_ command, p *rolloutEndCmd) (Change, applyResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, err := f.endingRolloutLocked(p)
	if err != nil {
		return fail(err)
	}
	r.State = api.RolloutAborted
	f.st.revision++
	r.Revision = f.st.revision
	f.st.rollout = &r
	f.st.staged = nil
	return f.rolloutChangeLocked(nil)
}

// applyRolloutPromote ends the active rollout like a rollback: a new
// version with the candidate's files, so the version history says when the
// candidate became current. A staged candidate becomes exactly the version
// it was numbered as: the freeze guarantees it, and a broken invariant
// rejects the promote rather than renumber.
func (f *fsm) applyRolloutPromote(c command, p *rolloutEndCmd) (Change, applyResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, err := f.endingRolloutLocked(p)
	if err != nil {
		return fail(err)
	}
	cand := f.candidateLocked()
	n := uint64(len(f.st.versions))
	if cand == nil || (r.Staged && r.Candidate != n+1) {
		return bad(c, fmt.Errorf("candidate %d of rollout %d cannot be published after version %d", r.Candidate, r.ID, n))
	}
	msg := fmt.Sprintf("promoted canary rollout %d of version %d", r.ID, r.Candidate)
	if r.Staged {
		msg = fmt.Sprintf("promoted canary rollout %d", r.ID)
	}
	if p.Reason != "" {
		msg += ": " + p.Reason
	}
	bv := &api.BundleVersion{
		VersionInfo: api.VersionInfo{Hash: cand.Hash, Message: msg, Author: p.By, Time: p.Time},
		Files:       cand.Files,
	}
	_, _, _ = f.addVersionLocked(bv)
	r.State = api.RolloutPromoted
	r.Promoted = bv.Version
	r.Revision = f.st.revision
	f.st.rollout = &r
	f.st.staged = nil
	return f.rolloutChangeLocked(bv)
}

// endingRolloutLocked is a copy of the active rollout, marked as ended by
// p (stored values are immutable: replace, never modify); ErrNoRollout if
// none is active or p names another.
func (f *fsm) endingRolloutLocked(p *rolloutEndCmd) (api.Rollout, error) {
	old := f.st.rollout
	if old == nil || old.State != api.RolloutActive || (p.ID != 0 && p.ID != old.ID) {
		return api.Rollout{}, fmt.Errorf("%w (asked for id %d)", ErrNoRollout, p.ID)
	}
	r := *old
	r.EndedBy, r.EndedAt, r.Reason = p.By, p.Time, p.Reason
	return r, nil
}

// rolloutChangeLocked reports the rollout as it now is; the revision has
// been bumped already.
func (f *fsm) rolloutChangeLocked(v *api.BundleVersion) (Change, applyResult, error) {
	r := f.st.rollout
	ch := Change{Revision: f.st.revision, Kind: ChangeRollout, Version: v, Rollout: r, Candidate: f.candidateLocked()}
	res := applyResult{Revision: f.st.revision, Rollout: r}
	if v != nil {
		vi := v.VersionInfo
		res.Version = &vi
	}
	return ch, res, nil
}

// candidateLocked is the candidate version of the active rollout (the
// staged one if it has files), or nil.
func (f *fsm) candidateLocked() *api.BundleVersion {
	r := f.st.rollout
	switch {
	case r == nil || r.State != api.RolloutActive:
		return nil
	case r.Staged:
		return f.st.staged
	case r.Candidate == 0 || r.Candidate > uint64(len(f.st.versions)):
		return nil
	}
	return f.st.versions[r.Candidate-1]
}

// frozenLocked rejects a bundle change while a rollout is active.
func (f *fsm) frozenLocked(typ string) error {
	if r := f.st.rollout; r != nil && r.State == api.RolloutActive {
		return fmt.Errorf("%w: %s: rollout %d of version %d freezes the bundle", ErrRolloutActive, typ, r.ID, r.Candidate)
	}
	return nil
}

// StartRollout starts a canary rollout with no other rollout active, of
// version req.Candidate (which must exist and not be the current version)
// or of req.Files, staged as the next version (the caller validates them
// as a bundle; they are stored verbatim). MinSamples defaults to
// DefaultMinSamples. Leader only.
func (s *Store) StartRollout(ctx context.Context, req api.RolloutRequest, by string, now time.Time) (api.Rollout, error) {
	p := rolloutStartCmd{
		Candidate: req.Candidate, Files: req.Files, Cohort: api.RolloutCohort{Percent: req.Percent, Selector: req.Selector},
		Abort: req.Abort, By: by, Time: now,
	}
	if len(p.Files) > 0 {
		p.Hash = HashFiles(p.Files)
	}
	if p.Abort.MinSamples == 0 {
		p.Abort.MinSamples = DefaultMinSamples
	}
	if err := validateRollout(&p); err != nil {
		return api.Rollout{}, fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	return s.proposeRollout(ctx, cmdRolloutStart, p)
}

// AbortRollout ends the active rollout (id 0: whichever is active; else
// only that one) without changing the current version. Leader only.
func (s *Store) AbortRollout(ctx context.Context, id uint64, reason, by string, now time.Time) (api.Rollout, error) {
	return s.proposeRollout(ctx, cmdRolloutAbort, rolloutEndCmd{ID: id, Reason: reason, By: by, Time: now})
}

// PromoteRollout ends the active rollout by publishing the candidate's
// files as a new version (Rollout.Promoted), in the same entry. Leader
// only.
func (s *Store) PromoteRollout(ctx context.Context, id uint64, reason, by string, now time.Time) (api.Rollout, error) {
	return s.proposeRollout(ctx, cmdRolloutPromote, rolloutEndCmd{ID: id, Reason: reason, By: by, Time: now})
}

func (s *Store) proposeRollout(ctx context.Context, typ string, payload any) (api.Rollout, error) {
	res, err := s.propose(ctx, typ, payload)
	if err != nil {
		return api.Rollout{}, err
	}
	return *res.Rollout, nil
}

// Rollout returns the latest rollout (active or ended), false if none was
// ever started. Shared, read-only.
func (s *Store) Rollout() (*api.Rollout, bool) {
	f := s.fsm
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.rollout, f.st.rollout != nil
}

// RolloutCandidate returns the candidate version of the active rollout,
// false if none is active. Files are shared and must not be modified.
func (s *Store) RolloutCandidate() (*api.BundleVersion, bool) {
	f := s.fsm
	f.mu.RLock()
	defer f.mu.RUnlock()
	c := f.candidateLocked()
	return c, c != nil
}
