package mcp

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
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

// FuzzResourceURI: any URI a client sends splits or is refused without
// panicking; a split one joins back to itself, and a URI prefixed with an
// orchestra name splits back to the two.
func FuzzResourceURI(f *testing.F) {
	for _, s := range []string{"everything+demo://resource/static/document/a.md", "+x", "x", "", "a+b+c://d", "o+{+base}/x"} {
		f.Add("o", s)
	}
	f.Fuzz(func(t *testing.T, orchestra, uri string) {
		if o, rest, err := SplitResourceURI(uri); err == nil && ResourceURI(o, rest) != uri {
			t.Fatalf("%q splits into %q %q, which join to %q", uri, o, rest, ResourceURI(o, rest))
		}
		if orchestra == "" || strings.Contains(orchestra, resourceSep) {
			return
		}
		o, rest, err := SplitResourceURI(ResourceURI(orchestra, uri))
		if err != nil || o != orchestra || rest != uri {
			t.Fatalf("ResourceURI(%q, %q) splits into %q %q %v", orchestra, uri, o, rest, err)
		}
	})
}

// FuzzListCursor: any cursor pages or is refused with invalid params; the
// page holds only items after the cursor's key, and the next cursor
// continues after the page's last item.
func FuzzListCursor(f *testing.F) {
	for _, s := range []string{"", "YQ", "not base64!", "Yg", "eg"} {
		f.Add(s, 2)
	}
	f.Fuzz(func(t *testing.T, cursor string, size int) {
		if size < 1 || size > 10 {
			return
		}
		items := []keyed[string]{{"c", "c"}, {"a", "a"}, {"e", "e"}, {"b", "b"}, {"d", "d"}}
		page, next, err := pageOf(items, cursor, size)
		if err != nil {
			var je *jsonrpc.Error
			if !errors.As(err, &je) || je.Code != jsonrpc.CodeInvalidParams {
				t.Fatalf("cursor %q: %v is not invalid params", cursor, err)
			}
			return
		}
		after, _ := base64.RawURLEncoding.DecodeString(cursor)
		for _, p := range page {
			if cursor != "" && p <= string(after) {
				t.Fatalf("cursor %q (after %q) gave %q", cursor, after, p)
			}
		}
		if len(page) > size || (next != "" && len(page) != size) {
			t.Fatalf("page %v of size %d, next %q", page, size, next)
		}
		if next != "" {
			more, _, err := pageOf(items, next, size)
			if err != nil || (len(more) > 0 && more[0] <= page[len(page)-1]) {
				t.Fatalf("next page %v after %v: %v", more, page, err)
			}
		}
	})
}
