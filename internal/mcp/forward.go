package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/gateway"
)

// forward sends an invocation that needs the leader (it holds or redeems
// an approval) to the leader's invoke endpoint, with the agent's own token,
// and answers what the leader answered. The leader decides it again: the
// follower's view is not trusted. Progress notifications of a forwarded
// call do not reach the client; a kill switch cancels it on the leader.
func (e *Endpoint) forward(ctx context.Context, c *caller, action string, body []byte) (gateway.Reply, error) {
	if c.user != "" {
		return gateway.Reply{}, fmt.Errorf("this call needs the cluster's leader (it holds or redeems an approval), and a session with an OIDC access token cannot be forwarded (the leader's invoke endpoint takes agent tokens): connect this agent to the leader's /mcp, or use its aibos_ token")
	}
	leader := e.store.LeaderHTTP()
	if leader == "" {
		return gateway.Reply{}, fmt.Errorf("this call needs the cluster's leader (it holds or redeems an approval) and none is known right now: retry shortly")
	}
	u := url.URL{Scheme: "http", Host: leader, Path: "/v1/actions/" + url.PathEscape(action) + "/invoke"}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return gateway.Reply{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("X-Aibos-Forwarded", e.node) // the leader must not forward it again
	resp, err := e.m.cfg.HTTPClient.Do(req)
	if err != nil {
		return gateway.Reply{}, fmt.Errorf("forwarding to the leader at %s: %w", leader, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return gateway.Reply{}, fmt.Errorf("reading the leader's answer: %w", err)
	}
	var out api.InvokeResponse
	if err := json.Unmarshal(data, &out); err != nil {
		return gateway.Reply{}, fmt.Errorf("the leader answered %s with a body that is not an invocation: %.200s", resp.Status, data)
	}
	if out.InvocationID == "" {
		// An API error before the pipeline (bad credential, bad input).
		if out.Error == nil {
			out.Error = &api.ErrorDetail{Code: gateway.CodeUnavailable, Message: "the leader answered " + resp.Status}
		}
		return gateway.Reply{Status: resp.StatusCode, Err: out.Error}, nil
	}
	return gateway.Reply{Status: resp.StatusCode, Resp: &out}, nil
}
