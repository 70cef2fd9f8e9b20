package policy

import (
	"testing"

	"github.com/aibos/kernel/api"
)

// yaml.v3 reports parser errors with a 0-based line and scanner errors with
// a 1-based one; positions must be 1-based either way.
func TestYAMLSyntaxErrorLines(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"unclosed flow sequence", "kind: Policy\nname: p\nrules: [1, 2\n", "f.yaml:3: invalid YAML/JSON: did not find expected ',' or ']'"},
		{"unclosed flow mapping", "kind: Policy\nname: {a: 1\n\nlayer: x\n", "f.yaml:2: invalid YAML/JSON: did not find expected ',' or '}'"},
		{"bad indentation", "kind: Policy\nname: p\n  layer: x\n", "f.yaml:3: invalid YAML/JSON: mapping values are not allowed in this context"},
		{"unterminated string", "kind: Policy\nname: \"p\n", "f.yaml:2: invalid YAML/JSON: found unexpected end of stream"},
		{"tab", "kind: Policy\nrules:\n\t- x\n", "f.yaml:3: invalid YAML/JSON: found character that cannot start any token"},
		{"first line", "[1, 2\n", "f.yaml:2: invalid YAML/JSON: did not find expected ',' or ']'"},
		{"block sequence", "kind: Policy\nrules:\n  - a\n  b: c\n", "f.yaml:3: invalid YAML/JSON: did not find expected '-' indicator"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]api.File{{Name: "f.yaml", Data: []byte(tt.src)}})
			if err == nil || err.Error() != tt.want {
				t.Errorf("got  %v\nwant %s", err, tt.want)
			}
		})
	}
}
