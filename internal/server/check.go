package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/policy"
)

// MaxBatch bounds the checks of one batch request (and of an AuthZEN
// evaluations request).
const MaxBatch = api.MaxBatch

// The check endpoints are the hot path: their bodies are decoded by the api
// package's decoders (a parser written for check requests, with encoding/json
// as the referee) and their answers written by its append encoders, into
// pooled buffers.

func (s *Server) handleCheck(w http.ResponseWriter, r *http.Request) {
	buf := getBuffer()
	defer putBuffer(buf)
	body, err := readBody(w, r, min(s.cfg.MaxBodyBytes, api.MaxCheckRequestSize), buf.b[:0])
	buf.b = body
	if err != nil {
		badRequest(w, err)
		return
	}
	req, err := api.DecodeCheckRequest(body)
	if err == nil {
		err = checkActionName(req, -1)
	}
	if err != nil {
		badRequest(w, err)
		return
	}
	if !s.waitRevision(w, r.Context(), req.MinRevision) {
		return
	}
	d := s.pdp.DecideJSON(req, body)
	// The decoded request holds no reference to the body: its buffer is
	// free for the answer.
	buf.b = append(api.AppendDecision(buf.b[:0], &d), '\n')
	writeJSONBytes(w, buf.b)
}

func (s *Server) handleCheckBatch(w http.ResponseWriter, r *http.Request) {
	buf := getBuffer()
	defer putBuffer(buf)
	body, err := readBody(w, r, min(s.cfg.MaxBodyBytes, api.MaxBatchCheckRequestSize), buf.b[:0])
	buf.b = body
	if err != nil {
		badRequest(w, err)
		return
	}
	// A check that is not valid gets an error result in its slot; only an
	// error of the whole batch fails it.
	// raw, each check's piece of the body, is what the decision log keeps
	// of a sampled check (nil if the batch took the per-item path).
	req, raw, itemErrs, err := api.DecodeBatchCheckItemsRaw(body)
	if err != nil {
		badRequest(w, err)
		return
	}
	var minRev uint64
	for i := range req.Checks {
		if itemErrs != nil && itemErrs[i] != nil {
			continue
		}
		if err := checkActionName(&req.Checks[i], i); err != nil {
			if itemErrs == nil {
				itemErrs = make([]error, len(req.Checks))
			}
			itemErrs[i] = err
			continue
		}
		minRev = max(minRev, req.Checks[i].MinRevision)
	}
	if !s.waitRevision(w, r.Context(), minRev) {
		return
	}
	// One goroutine decides the whole batch: deciding shares of it on
	// several cores was measured and did not pay on two cores, which a
	// loaded node keeps busy anyway.
	results := make([]api.Decision, len(req.Checks))
	for i := range req.Checks {
		if itemErrs != nil && itemErrs[i] != nil {
			results[i] = s.invalidCheck(itemErrs[i])
			continue
		}
		var js []byte
		if raw != nil {
			js = raw[i]
		}
		results[i] = s.pdp.DecideJSONNoAudit(&req.Checks[i], js)
	}
	s.pdp.AuditBatch(req.Checks, results, itemErrs)
	buf.b = append(api.AppendBatchCheckResponse(buf.b[:0], results), '\n')
	writeJSONBytes(w, buf.b)
}

// checkActionName refuses a check of a name outside the grammar of action
// names (the policy package's, which rules' patterns follow): no rule can
// name it, so deciding it would only hide the caller's mistake. i is the
// check's index in a batch, negative for a single check.
func checkActionName(req *api.CheckRequest, i int) error {
	err := policy.ValidateActionName(req.Action.Name)
	switch {
	case err == nil:
		return nil
	case i < 0:
		return fmt.Errorf("action.name: %w", err)
	}
	return fmt.Errorf("checks[%d].action.name: %w", i, err)
}

// invalidCheck is the result of a check of a batch that could not be
// decided: a denial carrying the error, stamped like a decision.
func (s *Server) invalidCheck(err error) api.Decision {
	code := codeBadRequest
	if errors.Is(err, errTooLarge) {
		code = codeTooLarge
	}
	msg := err.Error()
	return api.Decision{
		Decision: api.Deny, Version: s.pdp.Holder().Version(), Revision: s.store.AppliedRevision(),
		Reasons: []api.Reason{{Effect: api.Deny, Message: "this check is invalid and was not decided: " + msg}},
		Error:   &api.ErrorDetail{Code: code, Message: msg},
	}
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
