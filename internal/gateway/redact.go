package gateway

import (
	"encoding/json"
	"strings"

	"github.com/aibos/kernel/internal/audit"
)

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
	var mine []string
	for _, p := range paths {
		if rest, ok := strings.CutPrefix(p, "input."); ok {
			if which == "input" {
				mine = append(mine, rest)
			}
		} else if rest, ok := strings.CutPrefix(p, "result."); ok {
			if which == "result" {
				mine = append(mine, rest)
			}
		} else {
			mine = append(mine, p)
		}
	}
	return audit.Redact(doc, mine)
}
