package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/aibos/kernel/api"
)

// DeployModule stores a WebAssembly module for the agent's current
// version; the kernel validates it first.
func (c *Client) DeployModule(ctx context.Context, id string, wasm []byte) (api.AgentModule, error) {
	var m api.AgentModule
	err := c.do(ctx, http.MethodPut, "/v1/agents/"+url.PathEscape(id)+"/module", "application/wasm", wasm, &m)
	return m, err
}

// StartAgent asks the kernel to run a sandboxed agent; StopAgent to stop
// it. Both answer the agent's runtime state.
func (c *Client) StartAgent(ctx context.Context, id string) (api.AgentRuntime, error) {
	var r api.AgentRuntime
	err := c.doJSON(ctx, http.MethodPost, "/v1/agents/"+url.PathEscape(id)+"/start", nil, &r)
	return r, err
}

// StopAgent stops a sandboxed agent (its state is kept).
func (c *Client) StopAgent(ctx context.Context, id string) (api.AgentRuntime, error) {
	var r api.AgentRuntime
	err := c.doJSON(ctx, http.MethodPost, "/v1/agents/"+url.PathEscape(id)+"/stop", nil, &r)
	return r, err
}

// AgentRuntime reads a sandboxed agent's runtime state.
func (c *Client) AgentRuntime(ctx context.Context, id string) (api.AgentRuntime, error) {
	var r api.AgentRuntime
	err := c.doJSON(ctx, http.MethodGet, "/v1/agents/"+url.PathEscape(id)+"/runtime", nil, &r)
	return r, err
}

// UpgradeAgent moves a running sandboxed agent to a registered version
// with a module, on probation (rolled back automatically if it fails).
func (c *Client) UpgradeAgent(ctx context.Context, id, version string) (api.AgentRuntime, error) {
	var r api.AgentRuntime
	err := c.doJSON(ctx, http.MethodPost, "/v1/agents/"+url.PathEscape(id)+"/upgrade", map[string]string{"version": version}, &r)
	return r, err
}
