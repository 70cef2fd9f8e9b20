package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/aibos/kernel/api"
)

// The OpenID AuthZEN Authorization API 1.0: single and batch evaluation and
// the discovery document. A decision is true only for allow; deny and
// require_approval are false (the reasons are in the response context).

type azEntity struct {
	Type       *string        `json:"type"`
	ID         *string        `json:"id"`
	Properties map[string]any `json:"properties,omitempty"`
}

type azAction struct {
	Name       *string        `json:"name"`
	Properties map[string]any `json:"properties,omitempty"`
}

type azEvaluation struct {
	Subject  *azEntity      `json:"subject,omitempty"`
	Action   *azAction      `json:"action,omitempty"`
	Resource *azEntity      `json:"resource,omitempty"`
	Context  map[string]any `json:"context,omitempty"`
}

// azEvaluationsRequest is the body of the batch endpoint. The items are
// decoded one by one, so that a malformed item is an error of that item
// only (AuthZEN 1.0, Access Evaluations API Response, Errors).
type azEvaluationsRequest struct {
	azEvaluation
	Evaluations []json.RawMessage `json:"evaluations,omitempty"`
	Options     *struct {
		Semantic *string `json:"evaluations_semantic,omitempty"`
	} `json:"options,omitempty"`
}

type azDecision struct {
	Decision bool           `json:"decision"`
	Context  map[string]any `json:"context,omitempty"`
}

type azEvaluationsResponse struct {
	Evaluations []azDecision `json:"evaluations"`
}

// Evaluation semantics of the batch endpoint.
const (
	semExecuteAll     = "execute_all"
	semDenyOnDeny     = "deny_on_first_deny"
	semPermitOnPermit = "permit_on_first_permit"
)

func echoRequestID(w http.ResponseWriter, r *http.Request) {
	if id := r.Header.Get("X-Request-ID"); id != "" {
		w.Header().Set("X-Request-ID", id)
	}
}

// decodeAuthZEN reads an AuthZEN body. Unknown members are allowed (the API
// is extensible); members of the wrong type are not.
func decodeAuthZEN(r *http.Request, limit int64, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, limit))
	if err := dec.Decode(v); err != nil {
		return describeJSONError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("invalid JSON body: unexpected data after the JSON object")
	}
	return nil
}

func (s *Server) handleAuthZENEvaluation(w http.ResponseWriter, r *http.Request) {
	echoRequestID(w, r)
	// The body is kept: a re-evaluation that redeems an approval on a
	// follower is forwarded to the leader.
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		badRequest(w, describeJSONError(err))
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var ev azEvaluation
	if err := decodeAuthZEN(r, s.cfg.MaxBodyBytes, &ev); err != nil {
		badRequest(w, err)
		return
	}
	req, err := ev.toCheck(nil, "")
	if err != nil {
		badRequest(w, err)
		return
	}
	out, d := s.azDecide(req, true, baseURL(r))
	if _, ok := approvalRef(req.Context); ok && d.Decision == api.Deny {
		// An approval does not lift a denial of current policy.
		out.Context["reason"], out.Context["next_action"] = "policy_denied", "none"
	}
	if d.Decision == api.RequireApproval {
		if id, ok := approvalRef(req.Context); ok {
			if !s.store.IsLeader() {
				// Redeeming writes: the leader decides again and answers.
				leader := s.store.LeaderHTTP()
				if leader == "" || r.Header.Get(headerForwarded) != "" {
					writeError(w, http.StatusServiceUnavailable, codeNoLeader, "redeeming an approval needs the leader and none is known right now; retry shortly")
					return
				}
				r.Body = io.NopCloser(bytes.NewReader(body))
				r.ContentLength = int64(len(body))
				s.forward(w, r, leader)
				return
			}
			if err := s.redeem(r, req, id, &out); err != nil {
				writeError(w, http.StatusServiceUnavailable, codeUnavailable, err.Error())
				return
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleAuthZENEvaluations(w http.ResponseWriter, r *http.Request) {
	echoRequestID(w, r)
	var body azEvaluationsRequest
	if err := decodeAuthZEN(r, s.cfg.MaxBodyBytes, &body); err != nil {
		badRequest(w, err)
		return
	}
	semantic := semExecuteAll
	if body.Options != nil && body.Options.Semantic != nil {
		semantic = *body.Options.Semantic
		switch semantic {
		case semExecuteAll, semDenyOnDeny, semPermitOnPermit:
		default:
			badRequest(w, fmt.Errorf("options.evaluations_semantic %q is not one of %s, %s, %s", semantic, semExecuteAll, semDenyOnDeny, semPermitOnPermit))
			return
		}
	}
	// Without evaluations the request is a single evaluation (AuthZEN 1.0
	// section 7.1) and is answered like one.
	if len(body.Evaluations) == 0 {
		req, err := body.azEvaluation.toCheck(nil, "")
		if err != nil {
			badRequest(w, err)
			return
		}
		out, _ := s.azDecide(req, true, baseURL(r))
		writeJSON(w, http.StatusOK, out)
		return
	}
	if len(body.Evaluations) > MaxBatch {
		writeError(w, http.StatusRequestEntityTooLarge, codeTooLarge, fmt.Sprintf("%d evaluations; at most %d are allowed", len(body.Evaluations), MaxBatch))
		return
	}
	resp := azEvaluationsResponse{Evaluations: make([]azDecision, 0, len(body.Evaluations))}
	for i, raw := range body.Evaluations {
		var d azDecision
		if req, err := decodeAZItem(raw, &body.azEvaluation, i); err != nil {
			d = azItemError(http.StatusBadRequest, err)
		} else {
			d, _ = s.azDecide(req, false, baseURL(r))
		}
		resp.Evaluations = append(resp.Evaluations, d)
		// An item in error is a denial (fail closed): it stops a
		// deny_on_first_deny batch and does not stop a permit_on_first_permit one.
		if semantic == semDenyOnDeny && !d.Decision || semantic == semPermitOnPermit && d.Decision {
			break
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// decodeAZItem decodes item i of an evaluations request and completes it
// with the request's defaults.
func decodeAZItem(raw json.RawMessage, defaults *azEvaluation, i int) (*api.CheckRequest, error) {
	where := fmt.Sprintf("evaluations[%d]", i)
	var ev azEvaluation
	if err := json.Unmarshal(raw, &ev); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			if ute.Field == "" {
				return nil, fmt.Errorf("%s must be an object {subject?, action?, resource?, context?}, not %s", where, ute.Value)
			}
			return nil, fmt.Errorf("%s.%s must be %s, not %s", where, ute.Field, jsonTypeName(ute.Type.Kind().String()), ute.Value)
		}
		return nil, fmt.Errorf("%s: %v", where, err)
	}
	return ev.toCheck(defaults, where+".")
}

// jsonTypeName names the JSON type of a Go kind for error messages.
func jsonTypeName(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "map", "struct", "ptr":
		return "an object"
	case "slice":
		return "an array"
	case "bool":
		return "true or false"
	}
	return "a " + kind
}

// azItemError is the answer of an evaluation that could not be made: a
// denial with the error in its context.
func azItemError(status int, err error) azDecision {
	return azDecision{Decision: false, Context: map[string]any{
		"error": map[string]any{"status": status, "message": err.Error()},
	}}
}

// azDecide decides and shapes the answer. Batch items carry only the
// decision, as the interop harness compares them exactly, except that a
// require_approval decision is a requestable denial (access_request.go).
func (s *Server) azDecide(req *api.CheckRequest, withContext bool, base string) (azDecision, api.Decision) {
	d := s.pdp.Decide(req)
	out := azDecision{Decision: d.Decision == api.Allow}
	if withContext {
		out.Context = map[string]any{
			"decision": d.Decision, "version": d.Version, "revision": d.Revision, "reasons": d.Reasons,
		}
		if len(d.Errors) > 0 {
			out.Context["errors"] = d.Errors
		}
	}
	if d.Decision == api.RequireApproval {
		out.Context = s.requestable(out.Context, req, base)
	}
	return out, d
}

// toCheck completes an evaluation with the batch defaults and checks that
// every required member is there.
func (ev *azEvaluation) toCheck(defaults *azEvaluation, where string) (*api.CheckRequest, error) {
	subject, action, resource, ctx := ev.Subject, ev.Action, ev.Resource, ev.Context
	if defaults != nil {
		if subject == nil {
			subject = defaults.Subject
		}
		if action == nil {
			action = defaults.Action
		}
		if resource == nil {
			resource = defaults.Resource
		}
		if ctx == nil {
			ctx = defaults.Context
		}
	}
	switch {
	case subject == nil:
		return nil, fmt.Errorf("%ssubject is missing: give {type, id}", where)
	case subject.Type == nil || *subject.Type == "":
		return nil, fmt.Errorf("%ssubject.type is missing", where)
	case subject.ID == nil || *subject.ID == "":
		return nil, fmt.Errorf("%ssubject.id is missing", where)
	case action == nil:
		return nil, fmt.Errorf("%saction is missing: give {name}", where)
	case action.Name == nil || *action.Name == "":
		return nil, fmt.Errorf("%saction.name is missing", where)
	case resource == nil:
		return nil, fmt.Errorf("%sresource is missing: give {type, id}", where)
	case resource.Type == nil || *resource.Type == "":
		return nil, fmt.Errorf("%sresource.type is missing", where)
	case resource.ID == nil || *resource.ID == "":
		return nil, fmt.Errorf("%sresource.id is missing", where)
	}
	return &api.CheckRequest{
		Subject:  api.Entity{Type: *subject.Type, ID: *subject.ID, Properties: subject.Properties},
		Action:   api.Action{Name: *action.Name, Properties: action.Properties},
		Resource: api.Entity{Type: *resource.Type, ID: *resource.ID, Properties: resource.Properties},
		Context:  ctx,
	}, nil
}

func (s *Server) handleAuthZENConfig(w http.ResponseWriter, r *http.Request) {
	echoRequestID(w, r)
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	base := scheme + "://" + r.Host
	writeJSON(w, http.StatusOK, map[string]any{
		"policy_decision_point":       base,
		"access_evaluation_endpoint":  base + "/access/v1/evaluation",
		"access_evaluations_endpoint": base + "/access/v1/evaluations",
		"search_subject_endpoint":     base + "/access/v1/search/subject",
		"search_resource_endpoint":    base + "/access/v1/search/resource",
		"search_action_endpoint":      base + "/access/v1/search/action",
		"access_request_endpoint":     base + "/access/v1/requests",
		"capabilities":                []string{"urn:openid:authzen:capability:access-request"},
	})
}
