package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/auth"
	"github.com/aibos/kernel/internal/engine"
	"github.com/aibos/kernel/internal/pdp"
	"github.com/aibos/kernel/internal/policy"
	"github.com/aibos/kernel/internal/store"
)

// RolloutStore is what the rollout routes need.
type RolloutStore interface {
	StartRollout(ctx context.Context, req api.RolloutRequest, by string, now time.Time) (api.Rollout, error)
	AbortRollout(ctx context.Context, id uint64, reason, by string, now time.Time) (api.Rollout, error)
	PromoteRollout(ctx context.Context, id uint64, reason, by string, now time.Time) (api.Rollout, error)
	Rollout() (*api.Rollout, bool)
}

// codeRolloutActive answers a start, a publish or a rollback while a
// rollout is active.
const codeRolloutActive = api.CodeRolloutActive

// maxStagedBody bounds a start with files: a bundle of the largest size,
// base64-encoded, plus the rest of the request.
const maxStagedBody = policy.MaxBundleSize/3*4 + 1<<20

func (s *Server) handleStartRollout(w http.ResponseWriter, r *http.Request) {
	var req api.RolloutRequest
	if err := decodeJSON(r, max(s.cfg.MaxBodyBytes, maxStagedBody), &req); err != nil {
		badRequest(w, err)
		return
	}
	switch {
	case req.Candidate == 0 && len(req.Files) == 0:
		badRequest(w, errors.New("candidate is missing: give the version to canary, e.g. {\"candidate\": 7, \"percent\": 10}, or a new bundle as files: [{\"name\", \"data\" (base64)}]"))
		return
	case req.Candidate != 0 && len(req.Files) > 0:
		badRequest(w, errors.New("give either candidate (an existing version) or files (a new bundle), not both"))
		return
	}
	now := s.now()
	if len(req.Files) > 0 {
		// Validated like a publish: a staged candidate is promoted as is.
		if _, err := engine.PrepareContext(r.Context(), req.Files, engine.Options{Limits: s.cfg.BundleLimits}, now); err != nil {
			writeBundleError(w, err)
			return
		}
	}
	by, ok := s.attribution(w, r, param(r, "author", headerAuthor), "author")
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.WriteTimeout)
	defer cancel()
	ro, err := s.store.StartRollout(ctx, req, by, now)
	if err != nil {
		s.writeRolloutError(w, err)
		return
	}
	s.log.Info("canary rollout started", "id", ro.ID, "candidate", ro.Candidate, "staged", ro.Staged, "base", ro.Base, "by", ro.StartedBy)
	writeJSON(w, http.StatusOK, api.RolloutStatus{Rollout: &ro, Revision: ro.Revision})
}

// autoAbort is who a node's automatic abort of a rollout is attributed to.
const autoAbort = "auto-abort"

func (s *Server) handleAbortRollout(w http.ResponseWriter, r *http.Request) {
	s.endRollout(w, r, s.store.AbortRollout)
}

func (s *Server) handlePromoteRollout(w http.ResponseWriter, r *http.Request) {
	s.endRollout(w, r, s.store.PromoteRollout)
}

func (s *Server) endRollout(w http.ResponseWriter, r *http.Request,
	end func(ctx context.Context, id uint64, reason, by string, now time.Time) (api.Rollout, error)) {
	var req api.RolloutEndRequest
	if r.ContentLength != 0 {
		if err := decodeJSON(r, s.cfg.MaxBodyBytes, &req); err != nil {
			badRequest(w, err)
			return
		}
	}
	given := param(r, "author", headerAuthor)
	var by string
	ok := true
	if p := principal(r); p != nil && given == autoAbort && (slices.Contains(p.Roles, auth.RoleNode) || slices.Contains(p.Roles, auth.RoleAdmin)) {
		// A node's automatic abort, sent with the node's credential.
		by = autoAbort
	} else if by, ok = s.attribution(w, r, given, "author"); !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.WriteTimeout)
	defer cancel()
	ro, err := end(ctx, req.ID, req.Reason, by, s.now())
	if err != nil {
		s.writeRolloutError(w, err)
		return
	}
	s.log.Info("canary rollout ended", "id", ro.ID, "state", ro.State, "by", ro.EndedBy, "reason", ro.Reason, "promoted_version", ro.Promoted)
	writeJSON(w, http.StatusOK, api.RolloutStatus{Rollout: &ro, Revision: ro.Revision})
}

func (s *Server) handleCurrentRollout(w http.ResponseWriter, r *http.Request) {
	if !s.waitRevision(w, r.Context(), minRevisionParam(r)) {
		return
	}
	writeJSON(w, http.StatusOK, s.rolloutStatus())
}

// rolloutStatus is the latest rollout and, while it is active on this node,
// this node's counters.
func (s *Server) rolloutStatus() api.RolloutStatus {
	rev := s.store.AppliedRevision()
	st := api.RolloutStatus{Revision: rev}
	if ro, ok := s.store.Rollout(); ok {
		st.Rollout = ro
	}
	if st.Rollout != nil {
		if c, ok := s.pdp.Holder().Counters(st.Rollout.ID); ok {
			st.Counters = c
			st.Counters.Node = s.cfg.NodeID
		}
	}
	return st
}

func (s *Server) writeRolloutError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, store.ErrRolloutActive):
		writeError(w, http.StatusConflict, codeRolloutActive, err.Error()+": abort or promote it first (GET /v1/rollouts/current)")
	case errors.Is(err, store.ErrNoRollout):
		writeError(w, http.StatusNotFound, codeNotFound, err.Error()+": GET /v1/rollouts/current shows the latest")
	case errors.Is(err, store.ErrBadCommand):
		writeError(w, http.StatusBadRequest, codeBadRequest, err.Error())
	default:
		s.writeStoreError(w, err)
	}
}

// RunRolloutGuard runs the decision point's automatic-abort check every
// interval (pdp.RunGuard), asking the leader to abort a rollout whose
// shadow counters break its abort policy. It returns when ctx ends; the
// node owns the goroutine.
func (s *Server) RunRolloutGuard(ctx context.Context, every time.Duration) {
	pdp.RunGuard(ctx, s.pdp.Holder(), every, s.cfg.NodeID, s.proposeAbort, s.log)
}

// proposeAbort aborts rollout id through the leader. A rollout that is no
// longer active counts as done.
func (s *Server) proposeAbort(ctx context.Context, id uint64, reason string) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	defer cancel()
	by := autoAbort
	if s.store.IsLeader() {
		_, err := s.store.AbortRollout(ctx, id, reason, by, s.now())
		if errors.Is(err, store.ErrNoRollout) {
			return nil
		}
		return err
	}
	body, _ := json.Marshal(api.RolloutEndRequest{ID: id, Reason: reason})
	status, msg, err := s.callLeader(ctx, "/v1/rollouts/abort", body, http.Header{headerAuthor: {by}})
	if err != nil {
		return err
	}
	if status == http.StatusOK || status == http.StatusNotFound {
		return nil
	}
	return fmt.Errorf("the leader answered %d: %s", status, bytes.TrimSpace(msg))
}
