package gateway

import (
	"encoding/json"
	"strings"
)

// Redacted replaces a redacted value.
const Redacted = "[redacted]"

// redactJSON applies the redact obligation to a JSON document, the input or
// the result of an invocation (which). A path "a.b" names field b of object
// a, at the top of the document; arrays on the way apply it to each item.
// A path may be qualified: "input.ssn" applies to the input only,
// "result.email" to the result only; an unqualified one applies to both.
// Documents that are not JSON objects or arrays are returned unchanged.
func redactJSON(doc json.RawMessage, paths []string, which string) json.RawMessage {
	if len(paths) == 0 || len(doc) == 0 {
		return doc
	}
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		return doc
	}
	changed := false
	for _, p := range paths {
		if rest, ok := strings.CutPrefix(p, "input."); ok {
			if which != "input" {
				continue
			}
			p = rest
		} else if rest, ok := strings.CutPrefix(p, "result."); ok {
			if which != "result" {
				continue
			}
			p = rest
		}
		if redactPath(v, strings.Split(p, ".")) {
			changed = true
		}
	}
	if !changed {
		return doc
	}
	b, err := json.Marshal(v)
	if err != nil {
		return doc
	}
	return b
}

func redactPath(v any, path []string) bool {
	switch t := v.(type) {
	case map[string]any:
		x, ok := t[path[0]]
		if !ok {
			return false
		}
		if len(path) == 1 {
			t[path[0]] = Redacted
			return true
		}
		return redactPath(x, path[1:])
	case []any:
		changed := false
		for _, x := range t {
			if redactPath(x, path) {
				changed = true
			}
		}
		return changed
	}
	return false
}
