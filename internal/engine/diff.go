package engine

import (
	"cmp"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/aibos/kernel/internal/policy"
)

// ChangeKind says what happened to a policy, a rule or the layer list.
type ChangeKind string

// Kinds of change.
const (
	Added   ChangeKind = "added"
	Removed ChangeKind = "removed"
	Changed ChangeKind = "changed"
)

// Change is one semantic difference between two bundles: a policy or rule
// added or removed, or one field of a policy or rule changed. Policies and
// rules are matched by name; formatting, file layout, rule order and test
// documents are not compared.
type Change struct {
	Kind ChangeKind `json:"kind"`
	// Layer is the policy's layer in the new bundle (in the old one for a
	// removed policy); empty for a change of the layer list.
	Layer  string `json:"layer,omitempty"`
	Policy string `json:"policy,omitempty"`
	// Rule is empty for a change of the policy itself.
	Rule string `json:"rule,omitempty"`
	// Field names what changed: "layers" (of the bundle), "layer" and
	// "description" (of a policy), "effect", "actions", "when", "message" or
	// "obligations" (of a rule). Empty for additions and removals.
	Field string `json:"field,omitempty"`
	From  any    `json:"from,omitempty"`
	To    any    `json:"to,omitempty"`
}

// Path names what changed as "layer/policy" or "layer/policy/rule".
func (c Change) Path() string {
	if c.Policy == "" {
		return "(bundle)"
	}
	p := c.Layer + "/" + c.Policy
	if c.Rule != "" {
		p += "/" + c.Rule
	}
	return p
}

// String renders the change on one line: "+ platform/new-policy",
// "- agent/old/rule-x", `~ tenant/admins/only: when: "a" -> "b"`.
func (c Change) String() string {
	switch c.Kind {
	case Added:
		return "+ " + c.Path()
	case Removed:
		return "- " + c.Path()
	}
	return fmt.Sprintf("~ %s: %s: %s -> %s", c.Path(), c.Field, render(c.From), render(c.To))
}

func render(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// Diff lists the semantic changes from bundle a to bundle b, sorted by
// layer (in b's precedence order), then policy and rule name; a change of
// the layer list comes first.
func Diff(a, b *policy.Bundle) []Change {
	var out []Change
	if !slices.Equal(a.Layers, b.Layers) {
		out = append(out, Change{Kind: Changed, Field: "layers", From: a.Layers, To: b.Layers})
	}
	oldPols := byName(a.Policies, func(p *policy.Policy) string { return p.Name })
	newPols := byName(b.Policies, func(p *policy.Policy) string { return p.Name })
	for _, p := range a.Policies {
		if _, ok := newPols[p.Name]; !ok {
			out = append(out, Change{Kind: Removed, Layer: p.Layer, Policy: p.Name})
		}
	}
	for _, np := range b.Policies {
		op, ok := oldPols[np.Name]
		if !ok {
			out = append(out, Change{Kind: Added, Layer: np.Layer, Policy: np.Name})
			continue
		}
		out = append(out, diffPolicy(op, np)...)
	}
	rank := layerRank(a.Layers, b.Layers)
	slices.SortStableFunc(out, func(x, y Change) int {
		return cmp.Or(
			cmp.Compare(bundleLevel(y), bundleLevel(x)),
			cmp.Compare(rank(x.Layer), rank(y.Layer)),
			cmp.Compare(x.Layer, y.Layer),
			cmp.Compare(x.Policy, y.Policy),
			cmp.Compare(x.Rule, y.Rule),
		)
	})
	return out
}

func diffPolicy(op, np *policy.Policy) []Change {
	var out []Change
	pc := func(field string, from, to any) Change {
		return Change{Kind: Changed, Layer: np.Layer, Policy: np.Name, Field: field, From: from, To: to}
	}
	if op.Layer != np.Layer {
		out = append(out, pc("layer", op.Layer, np.Layer))
	}
	if op.Description != np.Description {
		out = append(out, pc("description", op.Description, np.Description))
	}
	oldRules := byName(op.Rules, func(r *policy.Rule) string { return r.Name })
	newRules := byName(np.Rules, func(r *policy.Rule) string { return r.Name })
	for _, r := range op.Rules {
		if _, ok := newRules[r.Name]; !ok {
			out = append(out, Change{Kind: Removed, Layer: np.Layer, Policy: np.Name, Rule: r.Name})
		}
	}
	for _, nr := range np.Rules {
		or, ok := oldRules[nr.Name]
		if !ok {
			out = append(out, Change{Kind: Added, Layer: np.Layer, Policy: np.Name, Rule: nr.Name})
			continue
		}
		rc := func(field string, from, to any) {
			out = append(out, Change{Kind: Changed, Layer: np.Layer, Policy: np.Name, Rule: nr.Name, Field: field, From: from, To: to})
		}
		if or.Effect != nr.Effect {
			rc("effect", or.Effect, nr.Effect)
		}
		if !sameSet(or.Actions, nr.Actions) {
			rc("actions", or.Actions, nr.Actions)
		}
		if normWhen(or.When) != normWhen(nr.When) {
			rc("when", or.When, nr.When)
		}
		if or.Message != nr.Message {
			rc("message", or.Message, nr.Message)
		}
		if !reflect.DeepEqual(or.Obligations, nr.Obligations) {
			rc("obligations", or.Obligations, nr.Obligations)
		}
	}
	return out
}

// normWhen treats an absent condition and "true" alike (both always hold),
// and ignores surrounding whitespace (YAML folded scalars add a newline).
func normWhen(s string) string {
	s = strings.TrimSpace(s)
	if s == "true" {
		return ""
	}
	return s
}

// bundleLevel is 1 for a change of the bundle itself, which sorts first.
func bundleLevel(c Change) int {
	if c.Policy == "" {
		return 1
	}
	return 0
}

func byName[T any](xs []T, name func(T) string) map[string]T {
	m := make(map[string]T, len(xs))
	for _, x := range xs {
		m[name(x)] = x
	}
	return m
}

// layerRank orders layers by b's precedence, then those only in a by a's.
func layerRank(a, b []string) func(string) int {
	return func(l string) int {
		if i := slices.Index(b, l); i >= 0 {
			return i
		}
		if i := slices.Index(a, l); i >= 0 {
			return len(b) + i
		}
		return len(a) + len(b)
	}
}
