package engine

import (
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/policy"
)

// Lint warning codes.
const (
	// WarnNeverHolds: the rule's condition is always false.
	WarnNeverHolds = "never-holds"
	// WarnDeadByDeny: an unconditional deny covers every action of an allow
	// or require_approval rule; deny wins across layers, so the rule never
	// takes effect.
	WarnDeadByDeny = "dead-by-deny"
	// WarnDuplicate: another rule of the layer has the same effect,
	// condition text and action set.
	WarnDuplicate = "duplicate"
	// WarnShadowed: an unconditional rule of the same effect covers every
	// action of the rule, which therefore never changes a decision.
	WarnShadowed = "shadowed"
)

// Warning is something suspicious in a bundle that does not make it
// invalid: a publish is never rejected for warnings.
type Warning struct {
	Pos     policy.Pos `json:"pos"`
	Code    string     `json:"code"`
	Message string     `json:"message"`
}

// String renders the warning as "file:line:col: message".
func (w Warning) String() string { return w.Pos.String() + ": " + w.Message }

// WarningStrings renders each warning with String.
func WarningStrings(ws []Warning) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.String()
	}
	return out
}

// lintRule is a rule of the source with what the checks need.
type lintRule struct {
	pol     *policy.Policy
	r       *policy.Rule
	layer   int
	ord     int
	actions []string // sorted, without duplicates
	always  bool     // no condition, or one that folds to true
	never   bool     // a condition that folds to false
}

func (lr *lintRule) id() string { return lr.pol.Name + "/" + lr.r.Name }

// Lint looks for rules that can never change a decision in a compiled
// bundle: conditions that are always false, allow and require_approval
// rules under an unconditional deny, duplicates, and rules shadowed by an
// unconditional rule of the same effect. Each rule gets at most one
// warning, the first that applies in that order. Warnings are sorted by
// position.
//
// Shadowing is checked within a layer, except for deny rules, which are
// shadowed by an unconditional deny of any layer (deny wins across all
// layers). A rule with obligations is not shadowed by a rule with other
// obligations: when both hold, its obligations are merged into the
// decision.
func Lint(b *Bundle) []Warning {
	src := b.Source()
	if src == nil {
		return nil
	}
	layerIdx := make(map[string]int, len(src.Layers))
	for i, l := range src.Layers {
		layerIdx[l] = i
	}
	consts := constConditions(src)
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

// shadows reports whether s makes r useless: s always holds, has r's
// effect, is in r's layer (any layer for deny) and covers r's actions, and r
// adds no obligations of its own. Of two rules that shadow each other, only
// the later is reported.
func shadows(s, r *lintRule) bool {
	if s == r || !s.always || s.r.Effect != r.r.Effect {
		return false
	}
	if s.layer != r.layer && r.r.Effect != api.Deny {
		return false
	}
	if !coversAll(s.actions, r.actions) {
		return false
	}
	if r.r.Obligations != nil && !reflect.DeepEqual(r.r.Obligations, s.r.Obligations) {
		return false
	}
	mutual := r.always && coversAll(r.actions, s.actions) &&
		(s.r.Obligations == nil || reflect.DeepEqual(r.r.Obligations, s.r.Obligations))
	return !mutual || s.ord < r.ord
}

func find(rules []*lintRule, f func(*lintRule) bool) *lintRule {
	for _, r := range rules {
		if f(r) {
			return r
		}
	}
	return nil
}

// coversAll reports whether every pattern of qs is covered by one of ps.
func coversAll(ps, qs []string) bool {
	for _, q := range qs {
		if !slices.ContainsFunc(ps, func(p string) bool { return PatternCovers(p, q) }) {
			return false
		}
	}
	return true
}

// PatternCovers reports whether pattern p matches every action that pattern
// q matches: "*" covers everything, "ns.*" covers "ns.x" and "ns.y.*", and a
// pattern covers itself.
func PatternCovers(p, q string) bool {
	if p == "*" || p == q {
		return true
	}
	prefix, glob := strings.CutSuffix(p, "*")
	return glob && q != "*" && strings.HasPrefix(q, prefix) && len(q) > len(prefix)
}

// constConditions maps each condition text of src that constant-folds to
// a bool literal to its value. Conditions that do not compile are left out
// (the bundle was compiled, so there are none).
func constConditions(src *policy.Bundle) map[string]bool {
	out := map[string]bool{}
	env, err := newEnv()
	if err != nil {
		return out
	}
	folder, err := cel.NewConstantFoldingOptimizer()
	if err != nil {
		return out
	}
	opt, err := cel.NewStaticOptimizer(folder)
	if err != nil {
		return out
	}
	seen := map[string]bool{}
	for _, p := range src.Policies {
		for _, r := range p.Rules {
			if r.When == "" || seen[r.When] {
				continue
			}
			seen[r.When] = true
			a, iss := env.Compile(r.When)
			if iss != nil && iss.Err() != nil {
				continue
			}
			folded, iss := opt.Optimize(env, a)
			if iss != nil && iss.Err() != nil {
				continue
			}
			e := folded.NativeRep().Expr()
			if e.Kind() != celast.LiteralKind {
				continue
			}
			if v, ok := e.AsLiteral().(types.Bool); ok {
				out[r.When] = bool(v)
			}
		}
	}
	return out
}
