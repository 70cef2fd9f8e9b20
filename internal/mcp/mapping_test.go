package mcp

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/aibos/kernel/api"
)

func TestToolActionRoundTrip(t *testing.T) {
	for _, tc := range []struct{ tool, action string }{
		{"echo", "o.echo"},
		{"get-sum", "o.get-sum"},
		{"read_file", "o.read_file"},
		{"a.b", "o.a.b"},
		{"get weather", "o.x--6765742077656174686572"},
		{"x--y", "o.x--782d2d79"},
		{"a..b", "o.x--612e2e62"},
		{"ünïcode", "o.x--c3bc6ec3af636f6465"},
		{"slash/name", "o.x--736c6173682f6e616d65"},
	} {
		t.Run(tc.tool, func(t *testing.T) {
			got, err := ToolAction("o", tc.tool)
			if err != nil || got != tc.action {
				t.Fatalf("ToolAction(%q) = %q, %v; want %q", tc.tool, got, err, tc.action)
			}
			back, err := ToolName("o", got)
			if err != nil || back != tc.tool {
				t.Fatalf("ToolName(%q) = %q, %v; want %q", got, back, err, tc.tool)
			}
		})
	}
}

func TestSubsetSchema(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		dropped        []string
	}{
		{"kept", `{"type":"object","properties":{"a":{"type":"string","minLength":1}},"required":["a"]}`, `{"properties":{"a":{"minLength":1,"type":"string"}},"required":["a"],"type":"object"}`, nil},
		{"format and mapping dropped", `{"type":"object","x-authzen-mapping":{},"properties":{"u":{"type":"string","format":"uri"}}}`, `{"properties":{"u":{"type":"string"}},"type":"object"}`, []string{"properties.u.format", "x-authzen-mapping"}},
		{"not with a dropped keyword goes whole", `{"type":"object","not":{"format":"email"}}`, `{"type":"object"}`, []string{"not", "not.format"}},
		{"oneOf with a dropped keyword goes whole", `{"oneOf":[{"type":"string","format":"date"},{"type":"string"}]}`, `{}`, []string{"oneOf", "oneOf[0].format"}},
		{"anyOf loosened", `{"anyOf":[{"type":"string","format":"date"},{"type":"number"}]}`, `{"anyOf":[{"type":"string"},{"type":"number"}]}`, []string{"anyOf[0].format"}},
		{"refs dropped", `{"type":"object","$defs":{"a":{}},"properties":{"b":{"$ref":"#/$defs/a"}}}`, `{"properties":{"b":{}},"type":"object"}`, []string{"$defs", "properties.b.$ref"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, dropped, err := SubsetSchema(json.RawMessage(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want || !reflect.DeepEqual(dropped, tc.dropped) {
				t.Fatalf("got %s dropped %v; want %s dropped %v", got, dropped, tc.want, tc.dropped)
			}
		})
	}
	if _, _, err := SubsetSchema(json.RawMessage(`[1]`)); err == nil {
		t.Fatal("an array schema was accepted")
	}
}

func TestRiskOf(t *testing.T) {
	f, tr := false, true
	for _, tc := range []struct {
		name string
		a    *mcp.ToolAnnotations
		want string
	}{
		{"none", nil, api.RiskDestructive},
		{"read-only", &mcp.ToolAnnotations{ReadOnlyHint: true}, api.RiskRead},
		{"destructive by default", &mcp.ToolAnnotations{}, api.RiskDestructive},
		{"not destructive, open world by default", &mcp.ToolAnnotations{DestructiveHint: &f}, api.RiskExternal},
		{"not destructive, closed world", &mcp.ToolAnnotations{DestructiveHint: &f, OpenWorldHint: &f}, api.RiskWrite},
		{"destructive", &mcp.ToolAnnotations{DestructiveHint: &tr, OpenWorldHint: &f}, api.RiskDestructive},
	} {
		if got := RiskOf(tc.a); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestDeclaredMappings(t *testing.T) {
	in := MappingInput{
		Token:  map[string]any{"sub": "bot", "client_id": "bot", "aud": "mcp:kernel"},
		Params: map[string]any{"name": "crm.get_customer", "arguments": map[string]any{"id": "c-7", "case": "k1", "owner": "mallory"}},
	}
	for _, tc := range []struct {
		name    string
		mapping string
		want    Mapped
		err     bool // a mapping error, at compile or evaluation
	}{
		{"resource and context from arguments",
			`{"evaluation":{"subject":{"type":"identity","id":"$token.sub"},"action":{"name":"get_customer"},"resource":{"type":"customer","id":"$params.arguments.id"},"context":{"agent":"$token.?client_id","case":"$params.arguments.case"}}}`,
			Mapped{Resource: &api.Entity{Type: "customer", ID: "c-7"}, Context: map[string]any{"agent": "bot", "case": "k1", "mcp_action": "get_customer"}}, false},
		{"subject omitted is the token's",
			`{"evaluation":{"resource":{"type":"customer","id":"$params.arguments.id"}}}`,
			Mapped{Resource: &api.Entity{Type: "customer", ID: "c-7"}}, false},
		{"literal with $$ escape",
			`{"evaluation":{"resource":{"type":"$$price","id":"fixed"}}}`,
			Mapped{Resource: &api.Entity{Type: "$price", ID: "fixed"}}, false},
		{"optional absent is left out",
			`{"evaluation":{"resource":{"type":"t","id":"i"},"context":{"x":"$params.arguments.?missing"}}}`,
			Mapped{Resource: &api.Entity{Type: "t", ID: "i"}, Context: map[string]any{}}, false},
		{"subject from a caller-supplied argument is refused",
			`{"evaluation":{"subject":{"id":"$params.arguments.owner"},"resource":{"type":"t","id":"i"}}}`, Mapped{}, true},
		{"subject as a literal is refused",
			`{"evaluation":{"subject":{"id":"admin"},"resource":{"type":"t","id":"i"}}}`, Mapped{}, true},
		{"subject from another claim that differs is refused",
			`{"evaluation":{"subject":{"id":"$token.aud"},"resource":{"type":"t","id":"i"}}}`, Mapped{}, true},
		{"evaluations envelope", `{"evaluations":[]}`, Mapped{}, true},
		{"two envelopes", `{"evaluation":{},"x":1}`, Mapped{}, true},
		{"unknown key", `{"evaluation":{"resourc":{}}}`, Mapped{}, true},
		{"bad CEL", `{"evaluation":{"resource":{"type":"t","id":"$params.("}}}`, Mapped{}, true},
		{"resource id not a string", `{"evaluation":{"resource":{"type":"t","id":"$1 + 1"}}}`, Mapped{}, true},
		{"missing field", `{"evaluation":{"resource":{"type":"t","id":"$params.arguments.nope"}}}`, Mapped{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseMapping([]byte(tc.mapping))
			var got Mapped
			if err == nil {
				got, err = m.Eval(in)
			}
			if tc.err {
				if err == nil || !errors.Is(err, ErrMapping) {
					t.Fatalf("want a mapping error, got %+v, %v", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v %v, want %+v %v", got.Resource, got.Context, tc.want.Resource, tc.want.Context)
			}
		})
	}
}

func TestDefaultMappings(t *testing.T) {
	for _, tc := range []struct {
		method string
		params mcp.Params
		action string
		res    api.Entity
	}{
		{"initialize", &mcp.InitializeParams{ProtocolVersion: "2025-11-25"}, "mcp.initialize", api.Entity{Type: "mcp_server"}},
		{"tools/list", &mcp.ListToolsParams{}, "mcp.tools.list", api.Entity{Type: "mcp_server"}},
		{"resources/list", &mcp.ListResourcesParams{}, "mcp.resources.list", api.Entity{Type: "mcp_server"}},
		{"resources/read", &mcp.ReadResourceParams{URI: "file:///a"}, "mcp.resources.read", api.Entity{Type: "resource", ID: "file:///a"}},
		{"resources/subscribe", &mcp.SubscribeParams{URI: "file:///b"}, "mcp.resources.subscribe", api.Entity{Type: "resource", ID: "file:///b"}},
		{"prompts/list", &mcp.ListPromptsParams{}, "mcp.prompts.list", api.Entity{Type: "mcp_server"}},
		{"prompts/get", &mcp.GetPromptParams{Name: "p1"}, "mcp.prompts.get", api.Entity{Type: "prompt", ID: "p1"}},
		{"completion/complete", &mcp.CompleteParams{Ref: &mcp.CompleteReference{Type: "ref/prompt", Name: "p2"}}, "mcp.completion.complete", api.Entity{Type: "prompt", ID: "p2"}},
		{"completion/complete", &mcp.CompleteParams{Ref: &mcp.CompleteReference{Type: "ref/resource", URI: "u"}}, "mcp.completion.complete", api.Entity{Type: "resource", ID: "u"}},
		{"logging/setLevel", &mcp.SetLoggingLevelParams{Level: "info"}, "mcp.logging.setLevel", api.Entity{Type: "mcp_server"}},
		{"server/discover", nil, "mcp.server.discover", api.Entity{Type: "mcp_server"}},
		{"subscriptions/listen", nil, "mcp.subscriptions.listen", api.Entity{Type: "mcp_server"}},
	} {
		t.Run(tc.method, func(t *testing.T) {
			d, ok := defaultMapping(tc.method, tc.params)
			if !ok || d.action != tc.action || !reflect.DeepEqual(d.resource, tc.res) {
				t.Fatalf("got %+v %v, want %s %+v", d, ok, tc.action, tc.res)
			}
		})
	}
	for _, m := range []string{"sampling/createMessage", "aibos/anything", "tools/delete"} {
		if _, ok := defaultMapping(m, nil); ok {
			t.Errorf("%s has a default mapping; unknown methods must be denied", m)
		}
	}
}

func TestPinToolDigestIgnoresKeyOrder(t *testing.T) {
	a := &mcp.Tool{Name: "t", Description: "d", InputSchema: map[string]any{"type": "object", "properties": map[string]any{"x": map[string]any{"type": "number"}}}}
	_, d1, err := PinTool(a)
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	json.Unmarshal([]byte(`{"properties":{"x":{"type":"number"}},"type":"object"}`), &schema)
	_, d2, _ := PinTool(&mcp.Tool{Name: "t", Description: "d", InputSchema: schema})
	_, d3, _ := PinTool(&mcp.Tool{Name: "t", Description: "d!", InputSchema: schema})
	if d1 != d2 || d1 == d3 {
		t.Fatalf("digests %s %s %s: want equal for equal definitions, different for a changed description", d1, d2, d3)
	}
}

func TestBuildActions(t *testing.T) {
	ro := &mcp.ToolAnnotations{ReadOnlyHint: true}
	tools := []*mcp.Tool{
		{Name: "echo", Description: "Echoes", Annotations: ro, InputSchema: map[string]any{"type": "object", "properties": map[string]any{"m": map[string]any{"type": "string", "format": "x"}}}},
		{Name: "wipe", InputSchema: map[string]any{"type": "object"}},
		{Name: "get weather", InputSchema: map[string]any{"type": "object"}},
	}
	acts, err := BuildActions("o", tools, []api.ActionDef{{Name: "o.wipe", Risk: api.RiskWrite, Description: "wipes, carefully"}})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]api.ActionDef{}
	for _, a := range acts {
		byName[a.Name] = a
	}
	if a := byName["o.echo"]; a.Risk != api.RiskRead || a.Description != "Echoes" || a.MCP == nil || a.MCP.Tool != "echo" || string(a.InputSchema) != `{"properties":{"m":{"type":"string"}},"type":"object"}` {
		t.Errorf("o.echo: %+v %s", a, a.InputSchema)
	}
	if a := byName["o.wipe"]; a.Risk != api.RiskWrite || a.Description != "wipes, carefully" {
		t.Errorf("o.wipe keeps the override: %+v", a)
	}
	if a := byName["o.x--676574207765617468657"+"2"]; a.MCP == nil || a.MCP.Tool != "get weather" || a.Risk != api.RiskDestructive {
		t.Errorf("encoded name: %+v", byName)
	}
	if _, err := BuildActions("o", tools, []api.ActionDef{{Name: "o.echoo", Risk: api.RiskRead}}); err == nil || !strings.Contains(err.Error(), "o.echoo") {
		t.Errorf("an override naming no tool: %v", err)
	}
	bad := []*mcp.Tool{{Name: "m", InputSchema: map[string]any{"type": "object", "x-authzen-mapping": map[string]any{"evaluation": map[string]any{"subject": map[string]any{"id": "root"}}}}}}
	if _, err := BuildActions("o", bad, nil); err == nil || !errors.Is(err, ErrMapping) {
		t.Errorf("a literal subject in a declared mapping: %v", err)
	}
}
