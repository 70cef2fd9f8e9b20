package engine

import (
	"slices"
	"testing"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/policy"
)

func parseBundle(t *testing.T, src string) *policy.Bundle {
	t.Helper()
	b, err := policy.Parse([]api.File{{Name: "b.yaml", Data: []byte(src)}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const diffBase = `
kind: Policy
name: admins
layer: tenant
rules:
  - {name: only, effect: allow, actions: ["kernel.*"], when: "subject.properties.admin == true"}
  - {name: audit, effect: allow, actions: ["data.read", "data.list"], obligations: {audit: digest}}
---
kind: Policy
name: old
layer: agent
rules:
  - {name: rule-x, effect: deny, actions: ["x.y"]}
  - {name: rule-y, effect: deny, actions: ["x.z"], message: no}
---
kind: Policy
name: gone
layer: region
rules:
  - {name: r, effect: allow, actions: ["*"]}
`

func TestDiff(t *testing.T) {
	tests := []struct {
		name string
		b    string
		want []string
	}{
		{name: "identical", b: diffBase},
		{
			name: "reordered and reformatted",
			b: `
kind: Policy
name: gone
layer: region
rules:
  - {name: r, effect: allow, actions: ["*"], when: "true"}
---
kind: Policy
name: old
layer: agent
rules:
  - name: rule-y
    effect: deny
    actions: [x.z]
    message: "no"
  - {name: rule-x, effect: deny, actions: ["x.y"]}
---
kind: Policy
name: admins
layer: tenant
rules:
  - {name: audit, effect: allow, actions: ["data.list", "data.read"], obligations: {audit: digest}}
  - name: only
    effect: allow
    actions: ["kernel.*"]
    when: >
      subject.properties.admin == true
`,
		},
		{
			name: "everything changes",
			b: `
kind: Bundle
layers: [platform, region, tenant, agent]
---
kind: Policy
name: new-policy
layer: platform
rules:
  - {name: r, effect: deny, actions: ["*"], when: "context.x == 1"}
---
kind: Policy
name: admins
layer: tenant
description: who runs the kernel
rules:
  - {name: only, effect: require_approval, actions: ["kernel.agent.*"], when: "subject.properties.admin"}
  - {name: audit, effect: allow, actions: ["data.read", "data.list"], obligations: {audit: full}, message: logged}
  - {name: added, effect: allow, actions: ["y.z"]}
---
kind: Policy
name: old
layer: tenant
rules:
  - {name: rule-y, effect: deny, actions: ["x.z"], message: no}
`,
			want: []string{
				`+ platform/new-policy`,
				`- region/gone`,
				`~ tenant/admins: description: "" -> "who runs the kernel"`,
				`+ tenant/admins/added`,
				`~ tenant/admins/audit: message: "" -> "logged"`,
				`~ tenant/admins/audit: obligations: {"audit":"digest"} -> {"audit":"full"}`,
				`~ tenant/admins/only: effect: "allow" -> "require_approval"`,
				`~ tenant/admins/only: actions: ["kernel.*"] -> ["kernel.agent.*"]`,
				`~ tenant/admins/only: when: "subject.properties.admin == true" -> "subject.properties.admin"`,
				`~ tenant/old: layer: "agent" -> "tenant"`,
				`- tenant/old/rule-x`,
			},
		},
		{
			name: "layer list",
			b: `
kind: Bundle
layers: [platform, tenant, agent, region]
---
` + diffBase,
			want: []string{
				`~ (bundle): layers: ["platform","region","tenant","agent"] -> ["platform","tenant","agent","region"]`,
			},
		},
	}
	a := parseBundle(t, diffBase)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, c := range Diff(a, parseBundle(t, tt.b)) {
				got = append(got, c.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got:\n  %s\nwant:\n  %s", join(got), join(tt.want))
			}
		})
	}
}

func join(ss []string) string {
	out := ""
	for i, s := range ss {
		if i > 0 {
			out += "\n  "
		}
		out += s
	}
	return out
}
