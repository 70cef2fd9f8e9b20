package mcp

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
)

// The catalog validates inputs with internal/jsonschema, a subset of JSON
// Schema that refuses keywords it does not know. An MCP tool's inputSchema
// may use more (format, $ref and $defs, dependentRequired, x-authzen-mapping,
// ...). The kernel keeps the server's schema whole in the tool's pinned
// definition (that is what agents see in tools/list and what the server
// validates against) and validates the input itself with the subset:
// keywords it does not support are dropped, which only ever loosens the
// kernel's check — except under "not" and "oneOf", where a loosened branch
// could refuse a valid input, so such a "not" or "oneOf" is dropped whole.
// The server still checks the full schema.

// supportedKeywords are the validation keywords internal/jsonschema knows.
var supportedKeywords = []string{
	"type", "enum", "const", "properties", "required", "additionalProperties", "items",
	"not", "allOf", "anyOf", "oneOf", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
	"minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties",
	"uniqueItems", "pattern", "title", "description", "$schema", "$id", "$comment", "default", "examples",
}

// SubsetSchema returns the part of an MCP inputSchema the kernel validates,
// and the JSON paths of the keywords it dropped (sorted). A schema that is
// not a JSON object is refused: MCP requires an object schema.
func SubsetSchema(schema json.RawMessage) (json.RawMessage, []string, error) {
	var v any
	if err := json.Unmarshal(schema, &v); err != nil {
		return nil, nil, fmt.Errorf("inputSchema is not JSON: %w", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, nil, fmt.Errorf("inputSchema is %T, want a JSON object", v)
	}
	var dropped []string
	out, _ := subset(m, "", &dropped, 0)
	b, err := json.Marshal(out)
	if err != nil {
		return nil, nil, err
	}
	sort.Strings(dropped)
	return b, dropped, nil
}

// maxSubsetDepth bounds the walk; deeper subschemas are dropped (the
// server validates them).
const maxSubsetDepth = 32

// subset prunes one subschema; pruned tells whether anything was dropped.
func subset(v any, path string, dropped *[]string, depth int) (any, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return v, false // a boolean schema, or a value the compiler will judge
	}
	if depth > maxSubsetDepth {
		*dropped = append(*dropped, path)
		return true, true
	}
	out := make(map[string]any, len(m))
	pruned := false
	at := func(k string) string {
		if path == "" {
			return k
		}
		return path + "." + k
	}
	for k, val := range m {
		if !slices.Contains(supportedKeywords, k) {
			*dropped = append(*dropped, at(k))
			pruned = true
			continue
		}
		switch k {
		case "properties":
			props, ok := val.(map[string]any)
			if !ok {
				out[k] = val
				continue
			}
			np := make(map[string]any, len(props))
			for name, s := range props {
				ns, p := subset(s, at(k)+"."+name, dropped, depth+1)
				np[name], pruned = ns, pruned || p
			}
			out[k] = np
		case "items", "additionalProperties":
			ns, p := subset(val, at(k), dropped, depth+1)
			out[k], pruned = ns, pruned || p
		case "allOf", "anyOf", "oneOf":
			list, ok := val.([]any)
			if !ok {
				out[k] = val
				continue
			}
			nl := make([]any, len(list))
			any := false
			for i, s := range list {
				ns, p := subset(s, fmt.Sprintf("%s[%d]", at(k), i), dropped, depth+1)
				nl[i], any = ns, any || p
			}
			if any && k == "oneOf" {
				*dropped = append(*dropped, at(k))
				pruned = true
				continue
			}
			out[k], pruned = nl, pruned || any
		case "not":
			ns, p := subset(val, at(k), dropped, depth+1)
			if p {
				*dropped = append(*dropped, at(k))
				pruned = true
				continue
			}
			out[k] = ns
		default:
			out[k] = val
		}
	}
	return out, pruned
}
