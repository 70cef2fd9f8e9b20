package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"slices"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/policy"
)

// MCPCaller performs the action of an mcp orchestra: a tools/call on its
// upstream server. The result is the MCP CallToolResult as JSON (a tool
// that answers isError ran: it is a result, not a failure). The context
// carries what the downstream session attached (progress, cancellation).
type MCPCaller interface {
	CallTool(ctx context.Context, c MCPCall) (json.RawMessage, error)
}

// MCPCall is one tools/call for an MCPCaller.
type MCPCall struct {
	Orchestra, Action, Tool, Digest string
	InvocationID                    string
	Input                           json.RawMessage
}

var errNoMCP = errors.New("this node has no MCP client: mcp orchestras cannot run here")

func (in *invocation) callMCP(ctx context.Context) (json.RawMessage, error) {
	if in.g.cfg.MCP == nil || in.entry.def.MCP == nil {
		return nil, errNoMCP
	}
	return in.g.cfg.MCP.CallTool(ctx, MCPCall{
		Orchestra: in.entry.orchestra, Action: in.entry.def.Name, Tool: in.entry.def.MCP.Tool,
		Digest: in.entry.def.MCP.Digest, InvocationID: in.resp.InvocationID, Input: in.req.Input,
	})
}

// Screen is what the gateway would say about an agent's action before any
// input is known: why it cannot run at all ("" if it may), the MCP
// endpoint's filter for tools/list. A decision is taken with an empty input;
// only a deny that held without an evaluation error (one that does not
// hinge on the missing input) screens the action out.
func (g *Gateway) Screen(agent api.Agent, action string) (code string) {
	e := g.catalog().actions[action]
	switch {
	case e == nil:
		return CodeUnknownAction
	case !slices.ContainsFunc(agent.Capabilities, func(p string) bool { return policy.MatchPattern(p, action) }):
		return CodeCapability
	case g.killFor(&agent, action) != nil:
		return CodeKilled
	}
	d := g.DecideFor(agent, action, api.Entity{Type: "action", ID: action}, map[string]any{
		"input":  map[string]any{},
		"action": map[string]any{"risk": e.def.Risk, "cost": 0, "orchestra": e.orchestra},
	})
	if DeniedOutright(d) {
		return CodeDenied
	}
	return ""
}

// DeniedOutright reports whether a decision taken before the input is
// known screens its action out of a list: a deny that held without an
// evaluation error (one that does not hinge on what is missing). Screen
// and the MCP endpoint's resource and prompt lists filter by it.
func DeniedOutright(d api.Decision) bool { return d.Decision == api.Deny && len(d.Errors) == 0 }

// DecideFor decides an action of the agent that is not an invocation (the
// MCP endpoint's other methods): the subject is the registered agent, as
// for Invoke.
func (g *Gateway) DecideFor(agent api.Agent, action string, resource api.Entity, ctx map[string]any) api.Decision {
	b, err := json.Marshal(map[string]any{
		"subject":  api.Entity{Type: api.EntityTypeAgent, ID: agent.ID},
		"action":   api.Action{Name: action},
		"resource": resource,
		"context":  ctx,
	})
	if err != nil {
		return api.Decision{Decision: api.Deny, Errors: []string{err.Error()}}
	}
	req, err := api.DecodeCheckRequest(b)
	if err != nil {
		return api.Decision{Decision: api.Deny, Errors: []string{err.Error()}}
	}
	return g.cfg.Decide(req)
}

// KillFor is the active kill switch that stops the agent's action, if any.
func (g *Gateway) KillFor(agent api.Agent, action string) *api.KillSwitch {
	return g.killFor(&agent, action)
}

// DenyMessage says why a decision denied, naming the rules.
func DenyMessage(d api.Decision) string { return denyMessage(d) }

// Action is one action of the catalog.
func (g *Gateway) Action(name string) (api.CatalogAction, bool) {
	e := g.catalog().actions[name]
	if e == nil {
		return api.CatalogAction{}, false
	}
	return api.CatalogAction{ActionDef: e.def, Orchestra: e.orchestra, Backend: e.backend.Type}, true
}
