package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/aibos/kernel/api"
)

// MaxBatch bounds the checks of one batch request.
const MaxBatch = 10_000

func (s *Server) handleCheck(w http.ResponseWriter, r *http.Request) {
	var req api.CheckRequest
	if err := decodeJSON(r, s.cfg.MaxBodyBytes, &req); err != nil {
		badRequest(w, err)
		return
	}
	if err := validateCheck(&req, ""); err != nil {
		badRequest(w, err)
		return
	}
	if !s.waitRevision(w, r.Context(), req.MinRevision) {
		return
	}
	d := s.decide(&req)
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) handleCheckBatch(w http.ResponseWriter, r *http.Request) {
	var req api.BatchCheckRequest
	if err := decodeJSON(r, s.cfg.MaxBodyBytes, &req); err != nil {
		badRequest(w, err)
		return
	}
	if len(req.Checks) > MaxBatch {
		writeError(w, http.StatusRequestEntityTooLarge, codeTooLarge, fmt.Sprintf("batch has %d checks; at most %d are allowed", len(req.Checks), MaxBatch))
		return
	}
	var minRev uint64
	for i := range req.Checks {
		if err := validateCheck(&req.Checks[i], fmt.Sprintf("checks[%d].", i)); err != nil {
			badRequest(w, err)
			return
		}
		minRev = max(minRev, req.Checks[i].MinRevision)
	}
	if !s.waitRevision(w, r.Context(), minRev) {
		return
	}
	resp := api.BatchCheckResponse{Results: make([]api.Decision, len(req.Checks))}
	for i := range req.Checks {
		resp.Results[i] = s.decide(&req.Checks[i])
	}
	writeJSON(w, http.StatusOK, resp)
}

// validateCheck rejects a request the engine cannot decide meaningfully.
func validateCheck(req *api.CheckRequest, where string) error {
	if req.Action.Name == "" {
		return fmt.Errorf("%saction.name is missing: name the action, e.g. \"data.query\"", where)
	}
	return nil
}

// decide makes one decision with the bundle this node holds and records it
// in the metrics.
func (s *Server) decide(req *api.CheckRequest) api.Decision {
	start := time.Now()
	// The revision is read before the bundle: the bundle is then at least as
	// new as the revision the decision reports.
	rev := s.store.AppliedRevision()
	c := s.bundles.load()
	var d api.Decision
	switch {
	case c.bundle != nil:
		d = c.bundle.Decide(req, s.store, s.now())
	case c.err != nil:
		d = api.Decision{Decision: api.Deny, Version: c.version,
			Reasons: []api.Reason{{Effect: api.Deny, Message: "the current bundle does not compile on this node"}},
			Errors:  []string{c.err.Error()}}
	default:
		d = api.Decision{Decision: api.Deny,
			Reasons: []api.Reason{{Effect: api.Deny, Message: "no policy bundle has been published"}}}
	}
	d.Revision = rev
	if d.Reasons == nil {
		d.Reasons = []api.Reason{}
	}
	s.metrics.observeDecision(d.Decision, time.Since(start))
	return d
}

// waitRevision holds a request until this node has applied rev, up to the
// configured bound. It writes the error and returns false on failure.
func (s *Server) waitRevision(w http.ResponseWriter, ctx context.Context, rev uint64) bool {
	if rev == 0 || s.store.AppliedRevision() >= rev {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.MinRevisionWait)
	defer cancel()
	if err := s.store.WaitForRevision(ctx, rev); err != nil {
		msg := fmt.Sprintf("this node has applied revision %d, not yet %d (waited %s): retry, or ask another node", s.store.AppliedRevision(), rev, s.cfg.MinRevisionWait)
		if errors.Is(ctx.Err(), context.Canceled) {
			msg = "request cancelled while waiting for revision " + fmt.Sprint(rev)
		}
		writeError(w, http.StatusServiceUnavailable, codeStale, msg)
		return false
	}
	return true
}
