package policy

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/aibos/kernel/api"
)

// FuzzParse feeds arbitrary bytes to the parser as one bundle file. It
// must never panic, and it keeps its promises: a bundle xor an error from
// Parse, a sorted ErrorList positioned in the file, and a partial bundle
// from ParsePartial.
func FuzzParse(f *testing.F) {
	for _, pattern := range []string{
		"../../testdata/decisions/*.yaml",
		"../../testdata/invalid/*.yaml",
		"../../testdata/invalid/*/*.yaml",
		"../../examples/*/*.yaml",
	} {
		paths, _ := filepath.Glob(pattern)
		for _, p := range paths {
			if data, err := os.ReadFile(p); err == nil {
				f.Add(data)
			}
		}
	}
	f.Add([]byte(`{"kind": "Policy", "name": "p", "layer": "tenant", "rules": [{"name": "r", "effect": "allow", "actions": ["*"]}]}`))
	f.Add([]byte("a: &a [*a, *a]\nb: *a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		files := []api.File{{Name: "f.yaml", Data: data}}
		b, err := Parse(files)
		if (b == nil) == (err == nil) {
			t.Fatalf("Parse returned bundle %v and error %v", b != nil, err)
		}
		partial, perr := ParsePartial(files)
		if partial == nil || (perr == nil) != (err == nil) {
			t.Fatalf("ParsePartial returned bundle %v and error %v; Parse error %v", partial != nil, perr, err)
		}
		if err == nil {
			if len(b.Layers) == 0 {
				t.Fatal("a parsed bundle has no layers")
			}
			return
		}
		var list ErrorList
		if !errors.As(err, &list) || len(list) == 0 {
			t.Fatalf("want a non-empty ErrorList, got %T %v", err, err)
		}
		if !slices.IsSortedFunc(list, func(a, b Error) int {
			if a.Pos.Line != b.Pos.Line {
				return a.Pos.Line - b.Pos.Line
			}
			return a.Pos.Col - b.Pos.Col
		}) {
			t.Fatalf("errors not sorted:\n%v", list)
		}
		for _, e := range list {
			if e.Pos.File != "f.yaml" || e.Msg == "" || e.Pos.Line < 0 {
				t.Fatalf("badly positioned error %q", e.Error())
			}
		}
	})
}
