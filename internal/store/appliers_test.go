package store

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestEveryCommandHasAnApplier: a command type without an entry in
// appliers is rejected as unknown on every replica, so every cmd* constant
// of the package needs one, and the table holds nothing else. The
// constants are read from the source, so a new one is checked without
// being listed here.
func TestEveryCommandHasAnApplier(t *testing.T) {
	declared := commandTypes(t)
	if len(declared) == 0 {
		t.Fatal("found no cmd* constants in the package source")
	}
	for name, typ := range declared {
		if appliers[typ] == nil {
			t.Errorf("%s (%q) has no entry in appliers", name, typ)
		}
	}
	consts := make(map[string]bool, len(declared))
	for _, typ := range declared {
		consts[typ] = true
	}
	for typ := range appliers {
		if !consts[typ] {
			t.Errorf("appliers has %q, which no cmd* constant declares", typ)
		}
	}
}

// TestAppliersDecodeFirst: every applier rejects a missing payload the
// way decodePayload says, before looking at the state; an unknown type
// keeps its message.
func TestAppliersDecodeFirst(t *testing.T) {
	for typ := range appliers {
		f := seededFSM(t)
		err, _ := applyRaw(f, []byte(`{"type":"`+typ+`"}`)).(error)
		if want := "store: bad command: " + typ + ": missing payload"; !errors.Is(err, ErrBadCommand) || err.Error() != want {
			t.Errorf("%s without payload: %v, want %q", typ, err, want)
		}
	}
	err, _ := applyRaw(newFSM(nil), []byte(`{"type":"no.such","payload":{}}`)).(error)
	if want := `store: bad command: unknown type "no.such"`; !errors.Is(err, ErrBadCommand) || err.Error() != want {
		t.Errorf("unknown type: %v, want %q", err, want)
	}
}

// commandTypes maps the name of every cmd* string constant declared in the
// package's non-test files to its value.
func commandTypes(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	fset := token.NewFileSet()
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		src, err := parser.ParseFile(fset, file, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range src.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, s := range g.Specs {
				v := s.(*ast.ValueSpec)
				for i, n := range v.Names {
					if !strings.HasPrefix(n.Name, "cmd") || i >= len(v.Values) {
						continue
					}
					lit, ok := v.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						t.Fatalf("%s: %s is not a string literal; the test cannot read it", file, n.Name)
					}
					typ, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatal(err)
					}
					out[n.Name] = typ
				}
			}
		}
	}
	return out
}
