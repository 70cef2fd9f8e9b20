package server

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/audit"
	"github.com/aibos/kernel/internal/gateway"
	"github.com/aibos/kernel/internal/jcs"
	"github.com/aibos/kernel/internal/store"
)

// Requestable denials: the AuthZEN Access Request and Approval profile
// (draft 1) on top of the kernel's approvals. A require_approval decision is
// answered to an AuthZEN caller as decision false with context.access_request;
// POST /access/v1/requests turns it into a pending approval bound to the
// subject, the action and the digest of the evaluation request; operators
// decide it like any other approval (aibos approval approve); a
// re-evaluation carrying context.approval {id} redeems it, once, before it
// expires. AUTHZEN.md lists the choices made where the draft leaves room.

// accessRequestWindow is how long a requestable denial may be submitted as
// an access request.
const accessRequestWindow = 10 * time.Minute

// The profile's problem types and their codes in {error: {code}}.
const (
	arpNotRequestable = "not_requestable"
	arpExpiredDenial  = "expired_denial"
	arpInvalidBinding = "invalid_denial_binding"
	arpUnknownTask    = "unknown_task"
	arpUnsupported    = "unsupported"
	arpURNPrefix      = "urn:openid:authzen:access-request:error:"
)

// profileMembers are the context members of the profile's machinery; they
// are not authorization input and are left out of the binding.
// submissionMembers may be added to the context when submitting (a
// justification for the approvers) and are left out too.
var (
	profileMembers    = []string{"access_request", "evaluation_id", "evaluated_at", "reason", "approval", "next_action", "retry_after"}
	submissionMembers = []string{"business_justification"}
)

// boundRequest is the evaluation request an access request is bound to:
// the request with the profile's and the submission's members taken out of
// its context.
func boundRequest(req *api.CheckRequest) api.CheckRequest {
	b := api.CheckRequest{Subject: req.Subject, Action: req.Action, Resource: req.Resource}
	if len(req.Context) > 0 {
		b.Context = maps.Clone(req.Context)
		for _, k := range profileMembers {
			delete(b.Context, k)
		}
		for _, k := range submissionMembers {
			delete(b.Context, k)
		}
		if len(b.Context) == 0 {
			b.Context = nil
		}
	}
	return b
}

// bindingDigest is the RFC 8785 digest of the bound request: subject,
// action and resource with their properties, and the context.
func bindingDigest(req *api.CheckRequest) (string, error) {
	b := boundRequest(req)
	raw, err := json.Marshal(struct {
		Subject  api.Entity     `json:"subject"`
		Action   api.Action     `json:"action"`
		Resource api.Entity     `json:"resource"`
		Context  map[string]any `json:"context,omitempty"`
	}{b.Subject, b.Action, b.Resource, b.Context})
	if err != nil {
		return "", err
	}
	return jcs.Digest(raw)
}

// evaluationID names a requestable denial: it is derived from the binding
// digest and the denial's expiry, so the access request endpoint (on any
// node) validates it by computing it again from what is submitted.
func evaluationID(digest string, expires time.Time) string {
	sum := sha256.Sum256([]byte(digest + "|" + expires.UTC().Format(time.RFC3339)))
	return "ev_" + base64.RawURLEncoding.EncodeToString(sum[:18])
}

// baseURL is the PDP's base URL as the caller reached it.
func baseURL(r *http.Request) string {
	if r.TLS != nil {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

// requestable adds the requestable-denial members to the context of a
// require_approval decision of req.
func (s *Server) requestable(ctx map[string]any, req *api.CheckRequest, base string) map[string]any {
	digest, err := bindingDigest(req)
	if err != nil {
		return ctx
	}
	now := s.now().UTC().Truncate(time.Second)
	expires := now.Add(accessRequestWindow)
	if ctx == nil {
		ctx = map[string]any{}
	}
	ctx["evaluation_id"] = evaluationID(digest, expires)
	ctx["evaluated_at"] = now.Format(time.RFC3339)
	ctx["reason"] = "approval_required"
	ctx["access_request"] = map[string]any{
		"endpoint":   base + "/access/v1/requests",
		"expires_at": expires.Format(time.RFC3339),
	}
	return ctx
}

// approvalSubject is who an access request's approval is bound to: a
// registered agent by its id and version (so a new version voids it, as
// for invocations, and kill switches of the agent and its tenant cover it),
// anyone else as "TYPE:ID".
func (s *Server) approvalSubject(e api.Entity) (agent, version, tenant string) {
	if e.Type == api.EntityTypeAgent {
		if a, ok := s.store.Agent(e.ID); ok {
			return a.ID, a.Version, a.Tenant
		}
	}
	return e.Type + ":" + e.ID, "", ""
}

type azAccessRequest struct {
	Subject         *azEntity       `json:"subject"`
	Action          *azAction       `json:"action"`
	Resource        *azEntity       `json:"resource"`
	Context         map[string]any  `json:"context"`
	Items           json.RawMessage `json:"items"`
	Callback        json.RawMessage `json:"callback"`
	Denial          *azDenial       `json:"denial"`
	RequestedAccess map[string]any  `json:"requested_access,omitempty"`
	Client          map[string]any  `json:"client,omitempty"`
}

type azDenial struct {
	EvaluationID *string `json:"evaluation_id"`
	ExpiresAt    *string `json:"expires_at"`
	EvaluatedAt  *string `json:"evaluated_at"`
	Reason       *string `json:"reason"`
	BindingToken *string `json:"binding_token"`
	Template     *string `json:"template"`
}

// azTask is the profile's task handle; its id is the approval's.
type azTask struct {
	ID             string `json:"id"`
	Status         string `json:"status"`
	StatusEndpoint string `json:"status_endpoint"`
	ExpiresAt      string `json:"expires_at,omitempty"`
}

type azTaskResponse struct {
	Task   azTask    `json:"task"`
	Result *azResult `json:"result,omitempty"`
}

type azResult struct {
	Mode     string         `json:"mode"`
	Approval map[string]any `json:"approval"`
}

// writeProblem answers an error of the access request endpoints: the
// kernel's {error: {code, message}} and, in the same object, the RFC 9457
// members the profile asks for.
func writeProblem(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	typ := "about:blank"
	switch code {
	case arpNotRequestable, arpExpiredDenial, arpInvalidBinding, arpUnknownTask:
		typ = arpURNPrefix + code
	}
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type": typ, "title": http.StatusText(status), "status": status, "detail": msg,
		"error": api.ErrorDetail{Code: code, Message: msg},
	})
}

// decodeAccessRequest checks a submission on its own: required members,
// what is not supported, the denial's binding material and expiry. It
// returns the evaluation request it is for.
func decodeAccessRequest(body *azAccessRequest, now time.Time) (*api.CheckRequest, int, string, error) {
	switch {
	case len(body.Items) > 0 && string(body.Items) != "null":
		return nil, http.StatusBadRequest, arpUnsupported, errors.New("items (bundled access requests) are not supported: submit one access request per denied evaluation")
	case len(body.Callback) > 0 && string(body.Callback) != "null":
		return nil, http.StatusBadRequest, arpUnsupported, errors.New("callback is not supported: poll the task's status_endpoint (GET, with ?wait=30s to hold the answer until it changes)")
	}
	ev := azEvaluation{Subject: body.Subject, Action: body.Action, Resource: body.Resource, Context: body.Context}
	req, err := ev.toCheck(nil, "")
	if err != nil {
		return nil, http.StatusBadRequest, codeBadRequest, err
	}
	d := body.Denial
	switch {
	case d == nil:
		return nil, http.StatusBadRequest, arpInvalidBinding, errors.New("denial is missing: echo {evaluation_id, expires_at} of the denied evaluation's context")
	case d.ExpiresAt == nil || *d.ExpiresAt == "":
		return nil, http.StatusBadRequest, arpInvalidBinding, errors.New("denial.expires_at is missing: echo context.access_request.expires_at of the denied evaluation")
	case d.EvaluationID == nil || *d.EvaluationID == "":
		return nil, http.StatusBadRequest, arpInvalidBinding, errors.New("denial.evaluation_id is missing: echo context.evaluation_id of the denied evaluation (this kernel issues no binding_token)")
	}
	expires, err := time.Parse(time.RFC3339, *d.ExpiresAt)
	if err != nil {
		return nil, http.StatusBadRequest, arpInvalidBinding, fmt.Errorf("denial.expires_at %q is not an RFC 3339 time: echo it unchanged", *d.ExpiresAt)
	}
	digest, err := bindingDigest(req)
	if err != nil {
		return nil, http.StatusBadRequest, codeBadRequest, err
	}
	if evaluationID(digest, expires) != *d.EvaluationID {
		return nil, http.StatusBadRequest, arpInvalidBinding, errors.New("the submission does not match the denied evaluation: send its subject, action, resource and context unchanged (add a justification as context.business_justification), with denial.evaluation_id and denial.expires_at as it answered them")
	}
	if !now.Before(expires) {
		return nil, http.StatusGone, arpExpiredDenial, fmt.Errorf("the requestable denial expired at %s: evaluate again and submit the new denial", expires.Format(time.RFC3339))
	}
	return req, 0, "", nil
}

// approvalTTL and maxPendingApprovals are the gateway's, so an access
// request's approval lives and is bounded as an invocation's.
func (s *Server) approvalTTL() time.Duration {
	if s.gw != nil {
		return s.gw.ApprovalTTL()
	}
	return gateway.DefaultApprovalTTL
}

func (s *Server) maxPendingApprovals() int {
	if s.gw != nil {
		return s.gw.MaxPendingApprovals()
	}
	return gateway.DefaultMaxPendingApprovals
}

// handleAccessRequest creates the pending approval of a requestable denial
// (leader only: it writes), or answers the pending one already asked for
// the same request.
func (s *Server) handleAccessRequest(w http.ResponseWriter, r *http.Request) {
	echoRequestID(w, r)
	var body azAccessRequest
	if err := decodeAuthZEN(r, s.cfg.MaxBodyBytes, &body); err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, errTooLarge) {
			status = http.StatusRequestEntityTooLarge
		}
		writeProblem(w, status, codeBadRequest, err.Error())
		return
	}
	now := s.now()
	req, status, code, err := decodeAccessRequest(&body, now)
	if err != nil {
		writeProblem(w, status, code, err.Error())
		return
	}
	// The denial must still be requestable under current policy.
	bound := boundRequest(req)
	d := s.pdp.DecideNoAudit(&bound)
	if d.Decision != api.RequireApproval {
		writeProblem(w, http.StatusBadRequest, arpNotRequestable, fmt.Sprintf("the current policy (version %d) answers %s for this request, not require_approval: there is nothing to approve", d.Version, d.Decision))
		return
	}
	digest, _ := bindingDigest(req)
	agent, version, tenant := s.approvalSubject(req.Subject)
	pending := 0
	for _, a := range s.store.Approvals() {
		if a.Kind != api.ApprovalKindAccessRequest || a.Agent != agent || store.EffectiveApprovalState(a, now) != api.ApprovalPending {
			continue
		}
		if a.ArgsDigest == digest && a.Action == req.Action.Name && a.AgentVersion == version {
			// The same request again: the same task.
			writeJSON(w, http.StatusOK, s.taskResponse(r, a))
			return
		}
		pending++
	}
	if pending >= s.maxPendingApprovals() {
		writeProblem(w, http.StatusTooManyRequests, gateway.CodeTooManyApprovals, fmt.Sprintf("%s already has %d access requests waiting for a decision (at most %d): wait for them to be decided or to expire", agent, pending, s.maxPendingApprovals()))
		return
	}
	shown := map[string]any{"subject": bound.Subject, "action": bound.Action, "resource": bound.Resource}
	if bound.Context != nil {
		shown["context"] = bound.Context
	}
	for k, v := range map[string]any{"business_justification": req.Context["business_justification"], "requested_access": body.RequestedAccess, "client": body.Client} {
		if v != nil {
			shown[k] = v
		}
	}
	input, _ := json.Marshal(shown)
	var approvers []string
	if d.Obligations != nil {
		approvers = d.Obligations.Approvers
	}
	a := api.Approval{
		ID: gateway.NewID("apv_"), Kind: api.ApprovalKindAccessRequest,
		Agent: agent, AgentVersion: version, Tenant: tenant, Action: req.Action.Name, ArgsDigest: digest,
		Input: input, Reasons: d.Reasons, Approvers: approvers, State: api.ApprovalPending,
		CreatedAt: now, ExpiresAt: now.Add(s.approvalTTL()), InvocationID: *body.Denial.EvaluationID,
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.WriteTimeout)
	defer cancel()
	out, err := s.store.CreateApproval(ctx, a)
	switch {
	case errors.Is(err, store.ErrKilled):
		writeProblem(w, http.StatusForbidden, codeForbidden, err.Error())
		return
	case err != nil:
		writeProblem(w, http.StatusServiceUnavailable, codeUnavailable, "could not create the access request: "+err.Error())
		return
	}
	s.auditEvent(&audit.Record{Kind: audit.KindApproval, Agent: out.Agent, AgentVersion: out.AgentVersion, Tenant: out.Tenant,
		Action: out.Action, ApprovalID: out.ID, Status: "requested", ArgsDigest: out.ArgsDigest, InvocationID: out.InvocationID})
	resp := s.taskResponse(r, out)
	w.Header().Set("Location", resp.Task.StatusEndpoint)
	writeJSON(w, http.StatusAccepted, resp)
}

// taskStatus maps an approval's state to the profile's task status;
// "consumed" is this kernel's own terminal status: approved and used.
func taskStatus(state string) string {
	switch state {
	case api.ApprovalVoided:
		return "cancelled"
	default: // pending, approved, denied, expired, consumed
		return state
	}
}

func (s *Server) taskResponse(r *http.Request, a api.Approval) azTaskResponse {
	state := store.EffectiveApprovalState(a, s.now())
	out := azTaskResponse{Task: azTask{
		ID: a.ID, Status: taskStatus(state), StatusEndpoint: baseURL(r) + "/access/v1/requests/" + a.ID,
		ExpiresAt: a.ExpiresAt.UTC().Format(time.RFC3339),
	}}
	if state == api.ApprovalApproved {
		out.Result = &azResult{Mode: "reevaluate", Approval: map[string]any{
			"id": a.ID, "approved_at": a.DecidedAt.UTC().Format(time.RFC3339), "approved_until": a.ExpiresAt.UTC().Format(time.RFC3339),
		}}
	}
	return out
}

// handleAccessRequestStatus answers a task; with ?wait=30s it holds the
// answer until the task leaves pending (or the wait ends).
func (s *Server) handleAccessRequestStatus(w http.ResponseWriter, r *http.Request) {
	echoRequestID(w, r)
	id := r.PathValue("id")
	var wait time.Duration
	if v := r.URL.Query().Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			writeProblem(w, http.StatusBadRequest, codeBadRequest, fmt.Sprintf("wait=%q: want a duration such as 30s", v))
			return
		}
		wait = min(d, maxApprovalWait)
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	for {
		rev := s.store.AppliedRevision()
		a, ok := s.store.Approval(id)
		if !ok || a.Kind != api.ApprovalKindAccessRequest {
			writeProblem(w, http.StatusNotFound, arpUnknownTask, fmt.Sprintf("no access request %q on this node (ids come from POST /access/v1/requests; finished ones are kept %s)", id, store.ApprovalRetention))
			return
		}
		if store.EffectiveApprovalState(a, s.now()) != api.ApprovalPending || wait == 0 {
			writeJSON(w, http.StatusOK, s.taskResponse(r, a))
			return
		}
		wctx, wcancel := context.WithDeadline(ctx, minTime(a.ExpiresAt.Add(time.Millisecond), deadline(ctx)))
		err := s.store.WaitForRevision(wctx, rev+1)
		wcancel()
		if err != nil && ctx.Err() != nil {
			writeJSON(w, http.StatusOK, s.taskResponse(r, a))
			return
		}
	}
}

// approvalRef is the id of context.approval, the approval a re-evaluation
// presents (AuthZEN access request profile, Completion Semantics).
func approvalRef(ctx map[string]any) (string, bool) {
	a, ok := ctx["approval"].(map[string]any)
	if !ok {
		return "", false
	}
	id, ok := a["id"].(string)
	return id, ok && id != ""
}

// redeem completes a re-evaluation that presents approval id for a
// require_approval decision of req: an approved access request bound to
// exactly this request is consumed and the answer becomes true; otherwise
// the answer stays false and says why and what to do next. Leader only. A
// non-nil error means the approval could not be read or written.
func (s *Server) redeem(r *http.Request, req *api.CheckRequest, id string, out *azDecision) error {
	now := s.now()
	deny := func(reason, next string) error {
		if next == "request" {
			out.Context = s.requestable(out.Context, req, baseURL(r))
		}
		out.Context["reason"] = reason
		out.Context["next_action"] = next
		if next == "retry" {
			out.Context["retry_after"] = 5
		}
		return nil
	}
	a, ok := s.store.Approval(id)
	if !ok || a.Kind != api.ApprovalKindAccessRequest {
		return deny("approval_unverifiable", "none")
	}
	digest, err := bindingDigest(req)
	if err != nil {
		return deny("approval_unverifiable", "none")
	}
	agent, version, _ := s.approvalSubject(req.Subject)
	if a.Agent != agent || a.AgentVersion != version || a.Action != req.Action.Name || a.ArgsDigest != digest {
		return deny("out_of_scope", "request")
	}
	switch store.EffectiveApprovalState(a, now) {
	case api.ApprovalPending:
		return deny("approval_pending", "retry")
	case api.ApprovalDenied:
		return deny("approval_denied", "none")
	case api.ApprovalConsumed:
		return deny("approval_used", "request")
	case api.ApprovalApproved:
	default: // expired, voided
		return deny("approval_expired", "request")
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.WriteTimeout)
	defer cancel()
	evID := gateway.NewID("ev_")
	_, err = s.store.ConsumeApproval(ctx, id, agent, version, req.Action.Name, digest, evID, now)
	switch {
	case errors.Is(err, store.ErrApprovalState):
		// Another re-evaluation used it first.
		return deny("approval_used", "request")
	case errors.Is(err, store.ErrApprovalExpired):
		return deny("approval_expired", "request")
	case err != nil:
		return fmt.Errorf("could not redeem approval %s: %v; retry", id, err)
	}
	s.auditEvent(&audit.Record{Kind: audit.KindApproval, Agent: a.Agent, AgentVersion: a.AgentVersion, Tenant: a.Tenant,
		Action: a.Action, ApprovalID: a.ID, Status: api.ApprovalConsumed, ArgsDigest: a.ArgsDigest, InvocationID: evID})
	out.Decision = true
	out.Context["approval"] = map[string]any{"id": a.ID, "approved_until": a.ExpiresAt.UTC().Format(time.RFC3339)}
	return nil
}
