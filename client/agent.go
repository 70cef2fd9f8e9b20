package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/aibos/kernel/api"
)

// AgentFilter narrows ListAgents; empty fields do not filter.
type AgentFilter struct {
	Capability string // agents with a capability pattern covering this action
	Skill      string // agents with a skill of this id or tag
	Label      string // "key=value"
	Tenant     string
	State      string // api.AgentActive or api.AgentRetired
}

// RegisterAgent registers a manifest. The answer's Token is the agent's
// credential, shown only now (empty when the same manifest was registered
// already).
func (c *Client) RegisterAgent(ctx context.Context, m api.AgentManifest) (api.AgentRegistration, error) {
	var reg api.AgentRegistration
	err := c.doJSON(ctx, http.MethodPost, "/v1/agents", m, &reg)
	return reg, err
}

// ListAgents lists registered agents matching f.
func (c *Client) ListAgents(ctx context.Context, f AgentFilter) ([]api.Agent, error) {
	q := url.Values{}
	for k, v := range map[string]string{"capability": f.Capability, "skill": f.Skill, "label": f.Label, "tenant": f.Tenant, "state": f.State} {
		if v != "" {
			q.Set(k, v)
		}
	}
	p := "/v1/agents"
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	var l api.AgentList
	err := c.doJSON(ctx, http.MethodGet, p, nil, &l)
	return l.Agents, err
}

// Agent reads one registered agent.
func (c *Client) Agent(ctx context.Context, id string) (api.Agent, error) {
	var a api.Agent
	err := c.doJSON(ctx, http.MethodGet, "/v1/agents/"+url.PathEscape(id), nil, &a)
	return a, err
}

// UpdateAgent changes an agent's mutable fields.
func (c *Client) UpdateAgent(ctx context.Context, id string, u api.AgentUpdate) (api.Agent, error) {
	var a api.Agent
	err := c.doJSON(ctx, http.MethodPatch, "/v1/agents/"+url.PathEscape(id), u, &a)
	return a, err
}

// RetireAgent retires an agent and revokes its credential.
func (c *Client) RetireAgent(ctx context.Context, id string) (api.Agent, error) {
	var a api.Agent
	err := c.doJSON(ctx, http.MethodPost, "/v1/agents/"+url.PathEscape(id)+"/retire", nil, &a)
	return a, err
}

// RotateAgentCredential issues a new token for an agent; the old one stops
// working.
func (c *Client) RotateAgentCredential(ctx context.Context, id string) (api.AgentCredential, error) {
	var cr api.AgentCredential
	err := c.doJSON(ctx, http.MethodPost, "/v1/agents/"+url.PathEscape(id)+"/credentials/rotate", nil, &cr)
	return cr, err
}

// RevokeAgentCredential removes an agent's credential.
func (c *Client) RevokeAgentCredential(ctx context.Context, id string) (api.Agent, error) {
	var a api.Agent
	err := c.doJSON(ctx, http.MethodDelete, "/v1/agents/"+url.PathEscape(id)+"/credentials", nil, &a)
	return a, err
}
