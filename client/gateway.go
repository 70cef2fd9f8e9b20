package client

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/aibos/kernel/api"
)

// InvokeOptions tune one invocation.
type InvokeOptions struct {
	// IdempotencyKey makes a retried call run once: the kernel answers a
	// repeat with the first call's answer. With a key, the client also
	// retries calls whose connection failed after they were sent.
	IdempotencyKey string
}

// Invoke asks the kernel to run an action for the agent whose token is
// given. The answer is returned for every outcome the kernel decided —
// completed, pending approval (Status pending_approval, ApprovalID set),
// denied, failed or cancelled — with a non-nil *Error for all but the
// first two. Other errors (bad credential, unknown action, invalid input)
// come back as *Error with an empty answer.
func (c *Client) Invoke(ctx context.Context, token, action string, req api.InvokeRequest, opts InvokeOptions) (api.InvokeResponse, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return api.InvokeResponse{}, err
	}
	hdr := http.Header{"Authorization": {"Bearer " + token}}
	retry := invokeRetry
	if opts.IdempotencyKey != "" {
		hdr.Set("Idempotency-Key", opts.IdempotencyKey)
		retry = safeWithKey
	}
	var out api.InvokeResponse
	err = c.doH(ctx, http.MethodPost, "/v1/actions/"+url.PathEscape(action)+"/invoke", "application/json", body, hdr, &out, retry)
	var apiErr *Error
	if errors.As(err, &apiErr) && len(apiErr.Body) > 0 {
		var resp api.InvokeResponse
		if json.Unmarshal(apiErr.Body, &resp) == nil && resp.InvocationID != "" {
			return resp, err
		}
	}
	return out, err
}

// invokeRetry retries an invocation without an idempotency key only when
// it certainly did not run: it never reached a node, no leader took it, or
// the node was not ready.
func invokeRetry(method, path string, err error) bool {
	var apiErr *Error
	if errors.As(err, &apiErr) {
		return notCarriedOut(apiErr)
	}
	var opErr *net.OpError
	return errors.As(err, &opErr) && opErr.Op == "dial"
}

// safeWithKey: with an idempotency key a repeat is answered from the first
// call, so any transport failure may be retried.
func safeWithKey(method, path string, err error) bool {
	var apiErr *Error
	if errors.As(err, &apiErr) {
		return notCarriedOut(apiErr)
	}
	return true
}

// Actions lists the catalog (orchestra and risk filter it when set).
func (c *Client) Actions(ctx context.Context, orchestra, risk string) ([]api.CatalogAction, error) {
	q := url.Values{}
	if orchestra != "" {
		q.Set("orchestra", orchestra)
	}
	if risk != "" {
		q.Set("risk", risk)
	}
	p := "/v1/actions"
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	var l api.ActionList
	err := c.doJSON(ctx, http.MethodGet, p, nil, &l)
	return l.Actions, err
}

// Orchestras lists the orchestras, the kernel's own first.
func (c *Client) Orchestras(ctx context.Context) ([]api.Orchestra, error) {
	var l api.OrchestraList
	err := c.doJSON(ctx, http.MethodGet, "/v1/orchestras", nil, &l)
	return l.Orchestras, err
}

// Orchestra reads one orchestra.
func (c *Client) Orchestra(ctx context.Context, name string) (api.Orchestra, error) {
	var o api.Orchestra
	err := c.doJSON(ctx, http.MethodGet, "/v1/orchestras/"+url.PathEscape(name), nil, &o)
	return o, err
}

// PutOrchestra creates or replaces an orchestra and its actions.
func (c *Client) PutOrchestra(ctx context.Context, o api.Orchestra) (api.Orchestra, error) {
	var out api.Orchestra
	err := c.doJSON(ctx, http.MethodPut, "/v1/orchestras/"+url.PathEscape(o.Name), o, &out)
	return out, err
}

// AcceptOrchestra pins an mcp orchestra's current tool definitions (one
// tool, or all with tool ""), ending their quarantine; by names the
// operator in the audit log.
func (c *Client) AcceptOrchestra(ctx context.Context, name, tool, by string) (api.AcceptResponse, error) {
	var out api.AcceptResponse
	err := c.doJSON(ctx, http.MethodPost, "/v1/orchestras/"+url.PathEscape(name)+"/accept", api.AcceptRequest{Tool: tool, By: by}, &out)
	return out, err
}

// DeleteOrchestra removes an orchestra and its actions.
func (c *Client) DeleteOrchestra(ctx context.Context, name string) error {
	return c.doJSON(ctx, http.MethodDelete, "/v1/orchestras/"+url.PathEscape(name), nil, nil)
}

// ApprovalFilter narrows Approvals; empty fields do not filter.
type ApprovalFilter struct {
	State  string // api.ApprovalPending, ...
	Agent  string
	Action string
}

// Approvals lists approvals.
func (c *Client) Approvals(ctx context.Context, f ApprovalFilter) ([]api.Approval, error) {
	q := url.Values{}
	for k, v := range map[string]string{"state": f.State, "agent": f.Agent, "action": f.Action} {
		if v != "" {
			q.Set(k, v)
		}
	}
	p := "/v1/approvals"
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	var l api.ApprovalList
	err := c.doJSON(ctx, http.MethodGet, p, nil, &l)
	return l.Approvals, err
}

// Approval reads one approval. With wait > 0 the node answers once the
// approval is no longer pending, or after wait (at most 60 s, and less
// than the HTTP client's timeout: a long poll must not outlast the client
// that waits for it); the caller sees a pending approval when the wait
// ended with nobody deciding.
func (c *Client) Approval(ctx context.Context, id string, wait time.Duration) (api.Approval, error) {
	p := "/v1/approvals/" + url.PathEscape(id)
	if t := c.http.Timeout; t > 0 && wait > 0 {
		wait = min(wait, t-min(5*time.Second, t/4))
	}
	if wait > 0 {
		p += "?wait=" + url.QueryEscape(wait.String())
	}
	var a api.Approval
	err := c.doJSON(ctx, http.MethodGet, p, nil, &a)
	return a, err
}

// Approve approves a pending approval; the agent may then invoke the action
// once more with the same arguments and the approval's id.
func (c *Client) Approve(ctx context.Context, id, approver, reason string) (api.Approval, error) {
	var a api.Approval
	err := c.doJSON(ctx, http.MethodPost, "/v1/approvals/"+url.PathEscape(id)+"/approve", api.ApprovalVerdict{Approver: approver, Reason: reason}, &a)
	return a, err
}

// DenyApproval denies a pending approval.
func (c *Client) DenyApproval(ctx context.Context, id, approver, reason string) (api.Approval, error) {
	var a api.Approval
	err := c.doJSON(ctx, http.MethodPost, "/v1/approvals/"+url.PathEscape(id)+"/deny", api.ApprovalVerdict{Approver: approver, Reason: reason}, &a)
	return a, err
}

// Kill sets a kill switch.
func (c *Client) Kill(ctx context.Context, k api.KillRequest) (api.KillSwitch, error) {
	var out api.KillSwitch
	err := c.doJSON(ctx, http.MethodPost, "/v1/kill", k, &out)
	return out, err
}

// LiftKill lifts a kill switch.
func (c *Client) LiftKill(ctx context.Context, id, by, reason string) (api.KillSwitch, error) {
	var out api.KillSwitch
	err := c.doJSON(ctx, http.MethodPost, "/v1/kill/"+url.PathEscape(id)+"/lift", api.LiftRequest{By: by, Reason: reason}, &out)
	return out, err
}

// Kills lists the active kill switches (all, lifted included, if all).
func (c *Client) Kills(ctx context.Context, all bool) ([]api.KillSwitch, error) {
	p := "/v1/kill"
	if all {
		p += "?all=true"
	}
	var l api.KillList
	err := c.doJSON(ctx, http.MethodGet, p, nil, &l)
	return l.Kills, err
}

// AgentStats reads the answering node's counters for an agent.
func (c *Client) AgentStats(ctx context.Context, id string) (api.AgentStats, error) {
	var s api.AgentStats
	err := c.doJSON(ctx, http.MethodGet, "/v1/agents/"+url.PathEscape(id)+"/stats", nil, &s)
	return s, err
}
