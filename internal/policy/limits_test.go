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

// TestBundleLimits makes sure a bundle over its rule or policy limit is
// refused with one error that names the limit, what was sent and where the
// first one over it is, and that no bundle comes back to be compiled. The
// parser counts against the Limits it is given, so small ones prove the
// same as the defaults without building 50,000 rules.
func TestBundleLimits(t *testing.T) {
	lim := Limits{Policies: 20, Rules: 200}
	manyPolicies := func(n int) []api.File {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "---\nkind: Policy\nname: p%d\nlayer: tenant\nrules:\n  - {name: r, effect: allow, actions: [a.b]}\n", i)
		}
		return []api.File{{Name: "policies.yaml", Data: []byte(b.String())}}
	}
	// Ten rules to a policy: 207 rules are 21 policies, over both limits
	// with policies allowed to spare, so only the rule limit is hit.
	rules := enginetest.GenerateRules(lim.Rules+7, 10)
	policies := manyPolicies(lim.Policies + 2)
	tests := []struct {
		name  string
		lim   Limits
		files []api.File
		want  string
	}{
		{
			name:  "rules",
			lim:   Limits{Policies: 100, Rules: lim.Rules},
			files: rules,
			want: fmt.Sprintf("rules.yaml:%d:5: the bundle has 207 rules; at most 200 are allowed (this is rule 201): remove rules, or give one rule several actions instead of repeating it",
				lineOf(t, rules[0].Data, "  - name: g200\n")),
		},
		{
			name:  "policies",
			lim:   lim,
			files: policies,
			want: fmt.Sprintf("policies.yaml:%d:1: the bundle has 22 policies; at most 20 are allowed (this is policy 21): merge policies of the same layer",
				lineOf(t, policies[0].Data, "kind: Policy\nname: p20\n")),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := ParsePartial(tt.files, WithLimits(tt.lim))
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
		if _, err := Parse(enginetest.GenerateRules(lim.Rules, 10), WithLimits(lim)); err != nil {
			t.Errorf("%d rules in %d policies: %v", lim.Rules, lim.Rules/10, err)
		}
	})
	t.Run("unset limits are the defaults", func(t *testing.T) {
		// A zero field is no limit of zero but the default, and leaves
		// the other field in force.
		files := manyPolicies(2)
		if _, err := Parse(files, WithLimits(Limits{Policies: 1})); err == nil {
			t.Error("2 policies with a limit of 1: no error")
		}
		if _, err := Parse(files, WithLimits(Limits{Rules: 1})); err == nil {
			t.Error("2 rules with a limit of 1: no error")
		}
		if _, err := Parse(files, WithLimits(Limits{})); err != nil {
			t.Errorf("2 policies with the default limits: %v", err)
		}
	})
}

// TestDefaultLimits makes sure the limits a bundle gets when none are
// configured are those the README promises: 10,000 policies and 50,000
// rules.
func TestDefaultLimits(t *testing.T) {
	want := Limits{Policies: 10_000, Rules: 50_000}
	for _, l := range []Limits{{}, {Policies: -1, Rules: -1}} {
		if got := l.OrDefaults(); got != want {
			t.Errorf("%+v.OrDefaults() = %+v, want %+v", l, got, want)
		}
	}
	if got := (Limits{Policies: 3, Rules: 4}).OrDefaults(); got != (Limits{Policies: 3, Rules: 4}) {
		t.Errorf("set limits changed to %+v", got)
	}
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
