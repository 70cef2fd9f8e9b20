package engine

import (
	"slices"
	"testing"

	"github.com/aibos/kernel/api"
)

func TestLint(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{
			name: "clean",
			yaml: `
kind: Policy
name: p
layer: tenant
rules:
  - {name: read, effect: allow, actions: ["data.read"]}
  - {name: big, effect: deny, actions: ["data.*"], when: "context.amount > 10"}
  - {name: write, effect: allow, actions: ["data.write"], when: "subject.id == 'a'"}
`,
		},
		{
			name: "constant false conditions",
			yaml: `
kind: Policy
name: p
layer: tenant
rules:
  - {name: f, effect: allow, actions: ["a.b"], when: "false"}
  - {name: folded, effect: deny, actions: ["a.c"], when: "1 > 2"}
  - {name: and, effect: allow, actions: ["a.d"], when: "false && subject.id == 'x'"}
  - {name: ok, effect: allow, actions: ["a.e"], when: "subject.id == 'x'"}
`,
			want: []string{
				`b.yaml:6:5: rule "p/f" can never hold: its condition "false" is always false`,
				`b.yaml:7:5: rule "p/folded" can never hold: its condition "1 > 2" is always false`,
				`b.yaml:8:5: rule "p/and" can never hold: its condition "false && subject.id == 'x'" is always false`,
			},
		},
		{
			name: "dead under an unconditional deny in a lower layer",
			yaml: `
kind: Policy
name: guard
layer: agent
rules:
  - {name: no-kernel, effect: deny, actions: ["kernel.*"]}
---
kind: Policy
name: ops
layer: platform
rules:
  - {name: quarantine, effect: allow, actions: ["kernel.agent.quarantine", "kernel.x.*"]}
  - {name: approve, effect: require_approval, actions: ["kernel.y"], when: "subject.id == 'a'"}
  - {name: partly, effect: allow, actions: ["kernel.z", "data.read"]}
`,
			want: []string{
				`b.yaml:12:5: allow rule "ops/quarantine" never takes effect: the unconditional deny rule "guard/no-kernel" (b.yaml:6:5) covers all its actions`,
				`b.yaml:13:5: require_approval rule "ops/approve" never takes effect: the unconditional deny rule "guard/no-kernel" (b.yaml:6:5) covers all its actions`,
			},
		},
		{
			name: "conditional deny kills nothing",
			yaml: `
kind: Policy
name: p
layer: tenant
rules:
  - {name: d, effect: deny, actions: ["*"], when: "context.x == 1"}
  - {name: a, effect: allow, actions: ["data.read"]}
  - {name: t, effect: deny, actions: ["*"], when: "true || context.x == 1"}
  - {name: b, effect: allow, actions: ["data.write"]}
`,
			// t folds to true, so it is unconditional and it kills a and b
			// (it also shadows d, a deny of the same layer).
			want: []string{
				`b.yaml:6:5: rule "p/d" never changes a decision: the unconditional deny rule "p/t" (b.yaml:8:5) covers all its actions`,
				`b.yaml:7:5: allow rule "p/a" never takes effect: the unconditional deny rule "p/t" (b.yaml:8:5) covers all its actions`,
				`b.yaml:9:5: allow rule "p/b" never takes effect: the unconditional deny rule "p/t" (b.yaml:8:5) covers all its actions`,
			},
		},
		{
			name: "duplicates",
			yaml: `
kind: Policy
name: p
layer: tenant
rules:
  - {name: one, effect: allow, actions: ["a.x", "a.y"], when: "subject.id == 'a'"}
---
kind: Policy
name: q
layer: tenant
rules:
  - {name: two, effect: allow, actions: ["a.y", "a.x"], when: "subject.id == 'a'"}
  - {name: other-effect, effect: require_approval, actions: ["a.x", "a.y"], when: "subject.id == 'a'"}
---
kind: Policy
name: r
layer: agent
rules:
  - {name: other-layer, effect: allow, actions: ["a.x", "a.y"], when: "subject.id == 'a'"}
`,
			want: []string{
				`b.yaml:12:5: rule "q/two" duplicates rule "p/one" (b.yaml:6:5): same layer, effect, actions and condition`,
			},
		},
		{
			name: "shadowed in the same layer",
			yaml: `
kind: Policy
name: p
layer: tenant
rules:
  - {name: reads, effect: allow, actions: ["data.*"]}
  - {name: one-read, effect: allow, actions: ["data.query"], when: "subject.id == 'a'"}
  - {name: deep, effect: allow, actions: ["data.x.*"]}
  - {name: audited, effect: allow, actions: ["data.query"], obligations: {audit: full}}
  - {name: outside, effect: allow, actions: ["database.x"]}
---
kind: Policy
name: q
layer: agent
rules:
  - {name: other-layer, effect: allow, actions: ["data.query"]}
`,
			want: []string{
				`b.yaml:7:5: rule "p/one-read" never changes a decision: the unconditional allow rule "p/reads" (b.yaml:6:5) covers all its actions`,
				`b.yaml:8:5: rule "p/deep" never changes a decision: the unconditional allow rule "p/reads" (b.yaml:6:5) covers all its actions`,
			},
		},
		{
			name: "same obligations shadow, mutual shadowing reports the later",
			yaml: `
kind: Policy
name: p
layer: tenant
rules:
  - {name: a, effect: allow, actions: ["x.*"], obligations: {audit: full}}
  - {name: b, effect: allow, actions: ["x.y"], obligations: {audit: full}}
  - {name: c, effect: allow, actions: ["x.*", "x.z"], obligations: {audit: full}}
`,
			want: []string{
				`b.yaml:7:5: rule "p/b" never changes a decision: the unconditional allow rule "p/a" (b.yaml:6:5) covers all its actions`,
				`b.yaml:8:5: rule "p/c" never changes a decision: the unconditional allow rule "p/a" (b.yaml:6:5) covers all its actions`,
			},
		},
		{
			name: "deny shadowed across layers",
			yaml: `
kind: Policy
name: p
layer: platform
rules:
  - {name: all, effect: deny, actions: ["*"]}
---
kind: Policy
name: q
layer: agent
rules:
  - {name: some, effect: deny, actions: ["x.y"], when: "context.a == 1"}
`,
			want: []string{
				`b.yaml:12:5: rule "q/some" never changes a decision: the unconditional deny rule "p/all" (b.yaml:6:5) covers all its actions`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Load([]api.File{{Name: "b.yaml", Data: []byte(tt.yaml)}}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			got := WarningStrings(Lint(b))
			if !slices.Equal(got, tt.want) && len(got)+len(tt.want) > 0 {
				t.Errorf("got warnings:\n  %q\nwant:\n  %q", got, tt.want)
			}
		})
	}
}
