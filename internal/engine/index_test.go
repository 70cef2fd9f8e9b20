package engine

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/policy"
)

// TestIndexMatchesPatterns compares every lookup with a brute-force match
// of every rule's patterns, on random bundles: the same rules, grouped by
// layer in precedence order and by effect in bundle order.
func TestIndexMatchesPatterns(t *testing.T) {
	patterns := []string{"*", "a", "a.b", "a.b.c", "a.*", "a.b.*", "a.b.c.*", "ab.*", "b", "b.*", "b.a", "c.d.*"}
	names := []string{"a", "a.b", "a.b.c", "a.b.c.d", "a.x", "ab", "ab.c", "b", "b.a", "b.a.x", "c", "c.d", "c.d.e", "c.d.e.f", "z"}
	effects := []api.Effect{api.Allow, api.Deny, api.RequireApproval}
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		var rules []*rule
		for i := range rng.IntN(12) {
			var ps []string
			for range 1 + rng.IntN(3) {
				ps = append(ps, patterns[rng.IntN(len(patterns))])
			}
			rules = append(rules, &rule{ord: i, layer: rng.IntN(4), effect: effects[rng.IntN(3)], patterns: ps})
		}
		ix := buildIndex(rules, []string{"l0", "l1", "l2", "l3"})
		for _, name := range names {
			var want []*rule
			for layer := range 4 {
				for _, eff := range effects {
					for _, r := range rules {
						if r.layer == layer && r.effect == eff && slices.ContainsFunc(r.patterns, func(p string) bool { return policy.MatchPattern(p, name) }) {
							want = append(want, r)
						}
					}
				}
			}
			var got []*rule
			for _, lr := range ix.lookup(name).layers {
				// Effects in the order Decide reads them: deny, approval, allow.
				byEffect := map[api.Effect][]*rule{api.Deny: lr.deny, api.RequireApproval: lr.approval, api.Allow: lr.allow}
				for _, eff := range effects {
					got = append(got, byEffect[eff]...)
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("round %d, %q: index gives %v, patterns give %v", round, name, ords(got), ords(want))
			}
		}
	}
}

func ords(rs []*rule) []int {
	out := make([]int, len(rs))
	for i, r := range rs {
		out[i] = r.ord
	}
	return out
}
