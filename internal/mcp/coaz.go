package mcp

import (
	"encoding/json"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/aibos/kernel/api"
)

// mapped is the AuthZEN request of a method other than tools/call, by the
// COAZ-MCP binding's default mappings. The action is the kernel action
// "mcp.<method>" with '/' as '.' (tools/list → mcp.tools.list), so policies
// govern it like any other; the subject is the agent; resource.id "" means
// this server (the token's audience).
type mapped struct {
	action   string
	resource api.Entity
	context  map[string]any
}

// serverMethods are the methods whose resource is the MCP server itself.
var serverMethods = map[string]bool{
	"initialize": true, "tools/list": true, "resources/list": true, "resources/templates/list": true,
	"prompts/list": true, "logging/setLevel": true, "tasks/list": true,
	// Protocol 2026-07-28's replacements of initialize and of the session's
	// notification stream, which COAZ-MCP predates: mapped as initialize.
	"server/discover": true, "subscriptions/listen": true,
}

// defaultMapping maps a method (not ping, not a notification, not
// tools/call) to its request; false for a method the binding does not map,
// which is denied.
func defaultMapping(method string, params mcp.Params) (mapped, bool) {
	d := mapped{action: "mcp." + strings.ReplaceAll(method, "/", "."), resource: api.Entity{Type: "mcp_server"}}
	p := paramsMap(params)
	str := func(k string) string { s, _ := p[k].(string); return s }
	switch {
	case serverMethods[method]:
		switch method {
		case "initialize":
			d.context = map[string]any{"protocol_version": str("protocolVersion")}
		case "logging/setLevel":
			d.context = map[string]any{"level": str("level")}
		}
	case method == "resources/read" || method == "resources/subscribe" || method == "resources/unsubscribe":
		d.resource = api.Entity{Type: "resource", ID: str("uri")}
	case method == "prompts/get":
		d.resource = api.Entity{Type: "prompt", ID: str("name")}
	case method == "completion/complete":
		ref, _ := p["ref"].(map[string]any)
		typ, _ := ref["type"].(string)
		if typ == "ref/prompt" {
			name, _ := ref["name"].(string)
			d.resource = api.Entity{Type: "prompt", ID: name}
		} else {
			uri, _ := ref["uri"].(string)
			d.resource = api.Entity{Type: "resource", ID: uri}
		}
	case method == "tasks/get" || method == "tasks/result" || method == "tasks/cancel":
		d.resource = api.Entity{Type: "task", ID: str("taskId")}
	default:
		return mapped{}, false
	}
	if d.resource.Type != "mcp_server" && d.resource.ID == "" {
		d.resource.ID = "-" // a missing id still names the kind; policy sees "-"
	}
	return d, true
}

func paramsMap(p mcp.Params) map[string]any {
	if p == nil {
		return nil
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}
