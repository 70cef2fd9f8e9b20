package mcp

import (
	"encoding/json"
	"testing"
)

// FuzzParseMapping: a declared mapping document from an MCP server never
// panics the kernel, and a compiled one evaluates without panicking.
func FuzzParseMapping(f *testing.F) {
	for _, s := range []string{
		`{"evaluation":{"subject":{"id":"$token.sub"},"resource":{"type":"c","id":"$params.arguments.id"},"context":{"a":"$token.?client_id"}}}`,
		`{"evaluations":[]}`, `{"evaluation":{"resource":{"type":"$$x","id":{"a":[1,2]}}}}`, `{}`, `[]`, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMapping(b)
		if err != nil {
			return
		}
		_, _ = m.Eval(MappingInput{Token: map[string]any{"sub": "a"}, Params: map[string]any{"name": "n", "arguments": map[string]any{"id": "x"}}})
	})
}

// FuzzDecodeDefinition: a pinned tool definition decodes or is refused;
// one that decodes pins again to the same digest.
func FuzzDecodeDefinition(f *testing.F) {
	for _, s := range []string{
		`{"name":"echo","description":"Echoes","inputSchema":{"type":"object","properties":{"message":{"type":"string"}}},"annotations":{"readOnlyHint":true}}`,
		`{"name":"x","inputSchema":{}}`, `{"name":""}`, `{}`, `1`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tool, digest, err := DecodeDefinition(b)
		if err != nil {
			return
		}
		_, again, err := PinTool(tool)
		if err != nil || again != digest {
			t.Fatalf("pinning a decoded definition again: %s vs %s, %v", again, digest, err)
		}
	})
}

// FuzzSubsetSchema: any inputSchema subsets without panicking, and the
// subset is JSON.
func FuzzSubsetSchema(f *testing.F) {
	for _, s := range []string{`{"type":"object","properties":{"a":{"format":"x","not":{"pattern":"["}}}}`, `{"oneOf":[{"$ref":"#"}]}`, `true`, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		out, _, err := SubsetSchema(b)
		if err == nil && !json.Valid(out) {
			t.Fatalf("subset of %s is not JSON: %s", b, out)
		}
	})
}
