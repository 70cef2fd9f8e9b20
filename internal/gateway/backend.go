package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aibos/kernel/api"
)

// Headers of a call to an http backend.
const (
	HeaderInvocation = "Aibos-Invocation-Id"
	HeaderAgent      = "Aibos-Agent"
	// HeaderCost, in a backend's answer, is the call's actual cost; the
	// budget reservation is settled to it. Absent: the estimate stands.
	HeaderCost = "Aibos-Cost"
)

// errKilled is the cancellation cause of an invocation stopped by a kill
// switch.
type errKilled struct{ k api.KillSwitch }

func (e errKilled) Error() string {
	return fmt.Sprintf("cancelled by kill switch %s (%s %s): %s", e.k.ID, e.k.Scope, e.k.Target, e.k.Reason)
}

// perform runs the action on its backend, registered as in flight so that
// a kill switch can cancel it. It returns the result, the actual cost, and
// the HTTP status with an error code and message when it did not succeed.
func (in *invocation) perform(ctx context.Context) (result json.RawMessage, cost float64, status int, code, msg string) {
	g := in.g
	timeout := in.entry.timeout
	if timeout <= 0 {
		timeout = g.cfg.DefaultTimeout
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	f := g.track(in.resp.InvocationID, &in.agent, in.entry.def.Name, cancel)
	defer g.untrack(in.resp.InvocationID)
	// A kill switch applied between the check at the start and now.
	if k := g.killFor(&in.agent, in.entry.def.Name); k != nil {
		f.cancel(errKilled{*k})
	}
	tctx, tcancel := context.WithTimeout(ctx, timeout)
	defer tcancel()

	cost = in.resp.Cost
	var err error
	if in.entry.builtin != nil {
		result, err = in.entry.builtin(tctx, g, &in.agent, in.resp.InvocationID, in.input)
	} else if in.entry.backend.Type == api.BackendMCP {
		result, err = in.callMCP(tctx)
	} else {
		result, cost, err = in.callHTTP(tctx, cost)
	}
	var killed errKilled
	switch {
	case errors.As(context.Cause(ctx), &killed):
		return nil, 0, http.StatusConflict, CodeCancelled, killed.Error()
	case err == nil:
		return result, cost, http.StatusOK, "", ""
	case errors.Is(tctx.Err(), context.DeadlineExceeded):
		return nil, 0, http.StatusGatewayTimeout, CodeTimeout, fmt.Sprintf("%s did not answer within %s", in.entry.def.Name, timeout)
	case ctx.Err() != nil:
		return nil, 0, http.StatusServiceUnavailable, CodeCancelled, "the caller went away: " + err.Error()
	}
	// A failed call is not charged: the reservation is released.
	return nil, 0, http.StatusBadGateway, CodeBackend, err.Error()
}

// callHTTP POSTs the call to the orchestra's webhook.
func (in *invocation) callHTTP(ctx context.Context, estimate float64) (json.RawMessage, float64, error) {
	g := in.g
	body, err := json.Marshal(api.ActionCall{
		InvocationID: in.resp.InvocationID, Action: in.entry.def.Name, Agent: in.agent.ID,
		Tenant: in.agent.Tenant, Input: in.req.Input,
	})
	if err != nil {
		return nil, 0, err
	}
	url := strings.TrimRight(in.entry.backend.URL, "/") + in.entry.def.Path
	if in.entry.def.Path == "" {
		url = in.entry.backend.URL
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, 0, fmt.Errorf("backend URL %s: %w", url, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderInvocation, in.resp.InvocationID)
	req.Header.Set(HeaderAgent, in.agent.ID)
	// The invocation id doubles as the backend's idempotency key.
	req.Header.Set("Idempotency-Key", in.resp.InvocationID)
	resp, err := g.cfg.Client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("calling %s: %w", url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, g.cfg.MaxResultBytes+1))
	if err != nil {
		return nil, 0, fmt.Errorf("reading the answer of %s: %w", url, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		snippet := strings.TrimSpace(string(data[:min(len(data), 512)]))
		return nil, estimate, fmt.Errorf("%s answered %s: %s", url, resp.Status, snippet)
	}
	if int64(len(data)) > g.cfg.MaxResultBytes {
		return nil, estimate, fmt.Errorf("%s answered more than %d bytes", url, g.cfg.MaxResultBytes)
	}
	cost := estimate
	if h := resp.Header.Get(HeaderCost); h != "" {
		c, err := strconv.ParseFloat(h, 64)
		if err != nil || c < 0 {
			return nil, estimate, fmt.Errorf("%s answered %s: %q, want a non-negative number", url, HeaderCost, h)
		}
		cost = c
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return json.RawMessage("null"), cost, nil
	}
	if !json.Valid(data) {
		return nil, cost, fmt.Errorf("%s answered with a body that is not JSON", url)
	}
	return data, cost, nil
}

// flight is an invocation running on a backend.
type flight struct {
	id, agent, tenant, action string
	started                   time.Time
	cancel                    context.CancelCauseFunc
}

func (g *Gateway) track(id string, a *api.Agent, action string, cancel context.CancelCauseFunc) *flight {
	f := &flight{id: id, agent: a.ID, tenant: a.Tenant, action: action, started: time.Now(), cancel: cancel}
	g.flightMu.Lock()
	g.flights[id] = f
	g.flightMu.Unlock()
	g.metrics.inFlight.Inc()
	return f
}

func (g *Gateway) untrack(id string) {
	g.flightMu.Lock()
	delete(g.flights, id)
	g.flightMu.Unlock()
	g.metrics.inFlight.Dec()
}

// InFlight is the number of invocations running on backends.
func (g *Gateway) InFlight() int {
	g.flightMu.Lock()
	defer g.flightMu.Unlock()
	return len(g.flights)
}
