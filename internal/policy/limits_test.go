package policy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/engine/enginetest"
)

// lineOf is the 1-based line of the first occurrence of s in data.
func lineOf(t *testing.T, data []byte, s string) int {
	t.Helper()
	i := bytes.Index(data, []byte(s))
	if i < 0 {
		t.Fatalf("%q not in the source", s)
	}
	return bytes.Count(data[:i], []byte("\n")) + 1
}

// TestBundleLimits makes sure a bundle over MaxRules or MaxPolicies is
// refused with one error that names the limit, what was sent and where the
// first one over it is, and that no bundle comes back to be compiled.
func TestBundleLimits(t *testing.T) {
	manyPolicies := func(n int) []api.File {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "---\nkind: Policy\nname: p%d\nlayer: tenant\nrules:\n  - {name: r, effect: allow, actions: [a.b]}\n", i)
		}
		return []api.File{{Name: "policies.yaml", Data: []byte(b.String())}}
	}
	rules := enginetest.GenerateRules(MaxRules+7, 10)
	policies := manyPolicies(MaxPolicies + 2)
	tests := []struct {
		name  string
		files []api.File
		want  string
	}{
		{
			name:  "rules",
			files: rules,
			want: fmt.Sprintf("rules.yaml:%d:5: the bundle has 50007 rules; at most 50000 are allowed (this is rule 50001): remove rules, or give one rule several actions instead of repeating it",
				lineOf(t, rules[0].Data, "  - name: g50000\n")),
		},
		{
			name:  "policies",
			files: policies,
			want: fmt.Sprintf("policies.yaml:%d:1: the bundle has 10002 policies; at most 10000 are allowed (this is policy 10001): merge policies of the same layer",
				lineOf(t, policies[0].Data, "kind: Policy\nname: p10000\n")),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := ParsePartial(tt.files)
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("got %v, want an ErrorList", err)
			}
			if got := list.Strings(); len(got) != 1 || got[0] != tt.want {
				t.Errorf("got errors\n  %q\nwant\n  %q", got, tt.want)
			}
			if b != nil {
				t.Errorf("got a partial bundle of %d policies; want none, so that nobody compiles it", len(b.Policies))
			}
		})
	}
	t.Run("at the limits", func(t *testing.T) {
		if _, err := Parse(enginetest.GenerateRules(MaxRules, 5)); err != nil {
			t.Errorf("%d rules in %d policies: %v", MaxRules, MaxRules/5, err)
		}
	})
}

// TestParseCancelled makes sure a cancelled parse stops with the context's
// error.
func TestParseCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ParsePartialContext(ctx, enginetest.GenerateRules(100, 10)); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}
