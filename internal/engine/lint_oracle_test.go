package engine

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/engine/enginetest"
)

// TestLintMatchesQuadratic holds the indexed lint to the warnings of the
// plain one it replaced, which compares every rule with every other, on
// random bundles dense with overlapping patterns and on a generated one.
func TestLintMatchesQuadratic(t *testing.T) {
	patterns := []string{"*", "a.*", "a.b", "a.c", "a.b.*", "a.b.c", "b.*", "b.x", "ab.c", "a.b.c.*"}
	conds := []string{"", "", "true", "false", "1 > 2", "context.x == 1", "subject.id == 'a'"}
	obls := []string{"", "", "", "{audit: full}", "{audit: digest}", "{approvers: [a]}"}
	rng := rand.New(rand.NewPCG(9, 4))
	var bundles [][]api.File
	for range 300 {
		var b strings.Builder
		b.WriteString("kind: Bundle\nlayers: [platform, tenant, agent]\n")
		for p := range 1 + rng.IntN(4) {
			fmt.Fprintf(&b, "---\nkind: Policy\nname: p%d\nlayer: %s\nrules:\n", p, []string{"platform", "tenant", "agent"}[rng.IntN(3)])
			for r := range 1 + rng.IntN(6) {
				var acts []string
				for range 1 + rng.IntN(3) {
					acts = append(acts, fmt.Sprintf("%q", patterns[rng.IntN(len(patterns))]))
				}
				fmt.Fprintf(&b, "  - name: r%d\n    effect: %s\n    actions: [%s]\n", r,
					[]string{"allow", "deny", "require_approval"}[rng.IntN(3)], strings.Join(acts, ", "))
				if c := conds[rng.IntN(len(conds))]; c != "" {
					fmt.Fprintf(&b, "    when: %q\n", c)
				}
				if o := obls[rng.IntN(len(obls))]; o != "" {
					fmt.Fprintf(&b, "    obligations: %s\n", o)
				}
			}
		}
		bundles = append(bundles, []api.File{{Name: "b.yaml", Data: []byte(b.String())}})
	}
	bundles = append(bundles, enginetest.GenerateRules(2000, 10))
	codes := map[string]int{}
	for i, files := range bundles {
		b, err := Load(files, Options{})
		if err != nil {
			t.Fatalf("bundle %d: %v\n%s", i, err, files[0].Data)
		}
		ws := Lint(b)
		got, want := WarningStrings(ws), WarningStrings(lintQuadratic(b))
		if !slices.Equal(got, want) {
			t.Fatalf("bundle %d: got warnings\n  %q\nwant\n  %q\n%s", i, got, want, files[0].Data)
		}
		for _, w := range ws {
			codes[w.Code]++
		}
	}
	for _, c := range []string{WarnNeverHolds, WarnDeadByDeny, WarnDuplicate, WarnShadowed} {
		if codes[c] == 0 {
			t.Errorf("no bundle had a %s warning: the comparison does not cover it", c)
		}
	}
	t.Logf("warnings compared: %v", codes)
}

// lintQuadratic is Lint as it was before the index: every rule compared
// with every other.
func lintQuadratic(b *Bundle) []Warning {
	src := b.Source()
	if src == nil {
		return nil
	}
	layerIdx := make(map[string]int, len(src.Layers))
	for i, l := range src.Layers {
		layerIdx[l] = i
	}
	consts, _ := constConditions(context.Background(), src)
	var rules []*lintRule
	for _, p := range src.Policies {
		for _, r := range p.Rules {
			acts := slices.Clone(r.Actions)
			slices.Sort(acts)
			lr := &lintRule{pol: p, r: r, layer: layerIdx[p.Layer], ord: len(rules), actions: slices.Compact(acts)}
			if r.When == "" {
				lr.always = true
			} else if v, ok := consts[r.When]; ok {
				lr.always, lr.never = v, !v
			}
			rules = append(rules, lr)
		}
	}
	var ws []Warning
	warn := func(lr *lintRule, code, format string, args ...any) {
		ws = append(ws, Warning{Pos: lr.r.Pos, Code: code, Message: fmt.Sprintf(format, args...)})
	}
	for _, r := range rules {
		if r.never {
			warn(r, WarnNeverHolds, "rule %q can never hold: its condition %q is always false", r.id(), r.r.When)
			continue
		}
		if r.r.Effect != api.Deny {
			if d := find(rules, func(d *lintRule) bool {
				return d.r.Effect == api.Deny && d.always && coversAll(d.actions, r.actions)
			}); d != nil {
				warn(r, WarnDeadByDeny, "%s rule %q never takes effect: the unconditional deny rule %q (%s) covers all its actions",
					r.r.Effect, r.id(), d.id(), d.r.Pos)
				continue
			}
		}
		if d := find(rules[:r.ord], func(d *lintRule) bool {
			return !d.never && d.layer == r.layer && d.r.Effect == r.r.Effect &&
				d.r.When == r.r.When && slices.Equal(d.actions, r.actions)
		}); d != nil {
			warn(r, WarnDuplicate, "rule %q duplicates rule %q (%s): same layer, effect, actions and condition",
				r.id(), d.id(), d.r.Pos)
			continue
		}
		if s := find(rules, func(s *lintRule) bool { return shadows(s, r) }); s != nil {
			warn(r, WarnShadowed, "rule %q never changes a decision: the unconditional %s rule %q (%s) covers all its actions",
				r.id(), s.r.Effect, s.id(), s.r.Pos)
		}
	}
	slices.SortFunc(ws, func(a, b Warning) int {
		return cmp.Or(
			cmp.Compare(a.Pos.File, b.Pos.File),
			cmp.Compare(a.Pos.Line, b.Pos.Line),
			cmp.Compare(a.Pos.Col, b.Pos.Col),
			cmp.Compare(a.Code, b.Code),
			cmp.Compare(a.Message, b.Message),
		)
	})
	return ws
}

func find(rules []*lintRule, f func(*lintRule) bool) *lintRule {
	for _, r := range rules {
		if f(r) {
			return r
		}
	}
	return nil
}
