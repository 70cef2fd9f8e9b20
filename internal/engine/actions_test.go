package engine

import (
	"slices"
	"testing"

	"github.com/aibos/kernel/api"
)

func TestActionNames(t *testing.T) {
	src := `kind: Policy
name: a
layer: platform
rules:
  - {name: r1, effect: deny, actions: ["data.*", "data.drop"]}
  - {name: r2, effect: allow, actions: ["data.query", "*"]}
---
kind: Policy
name: b
layer: tenant
rules:
  - {name: r3, effect: require_approval, actions: [cost.purchase, data.query]}
`
	b, err := Load([]api.File{{Name: "b.yaml", Data: []byte(src)}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := b.ActionNames(), []string{"cost.purchase", "data.drop", "data.query"}; !slices.Equal(got, want) {
		t.Fatalf("ActionNames: %v, want %v (patterns left out, each name once, sorted)", got, want)
	}
}
