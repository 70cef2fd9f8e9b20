package engine

import (
	"cmp"
	"context"
	"encoding/json"
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
//
// Lint is LintContext without a way to stop it.
func Lint(b *Bundle) []Warning {
	ws, _ := LintContext(context.Background(), b)
	return ws
}

// LintContext is Lint that gives up when ctx is done, with ctx's error and
// no warnings.
//
// Its cost grows about linearly with the rules: a rule is compared only with
// the unconditional rules that could cover it, found through an index by
// action pattern (as the decision index finds the rules of an action) and
// grouped by effect, layer and obligations. Of each rule's actions the one
// with the fewest such candidates is looked up, and at most
// maxLintCandidates candidates are examined per rule and check, so that no
// bundle makes it quadratic; a rule whose coverer is not among them gets no
// warning, which takes more than that many unconditional rules of one
// effect and layer, each overlapping every action of the rule without
// covering them all.
func LintContext(ctx context.Context, b *Bundle) ([]Warning, error) {
	src := b.Source()
	if src == nil {
		return nil, nil
	}
	layerIdx := make(map[string]int, len(src.Layers))
	for i, l := range src.Layers {
		layerIdx[l] = i
	}
	consts, err := constConditions(ctx, src)
	if err != nil {
		return nil, err
	}
	var rules []*lintRule
	coverers := map[coverKey]*coverIndex{}
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
			if lr.always {
				for _, k := range coverKeys(lr) {
					ix := coverers[k]
					if ix == nil {
						ix = &coverIndex{exact: map[string][]*lintRule{}, globs: map[string][]*lintRule{}}
						coverers[k] = ix
					}
					ix.add(lr)
				}
			}
		}
	}
	var ws []Warning
	warn := func(lr *lintRule, code, format string, args ...any) {
		ws = append(ws, Warning{Pos: lr.r.Pos, Code: code, Message: fmt.Sprintf(format, args...)})
	}
	denies := coverers[coverKey{effect: api.Deny, layer: anyLayer, obligations: anyObligations}]
	dups := map[dupKey]*lintRule{}
	var lists [][]*lintRule
	for i, r := range rules {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		if r.never {
			warn(r, WarnNeverHolds, "rule %q can never hold: its condition %q is always false", r.id(), r.r.When)
			continue
		}
		// The first rule of a kind is what later duplicates name, whatever
		// it is warned of itself.
		dk := dupKey{layer: r.layer, effect: r.r.Effect, when: r.r.When, actions: strings.Join(r.actions, "\x00")}
		dup, seen := dups[dk]
		if !seen {
			dups[dk] = r
		}
		if r.r.Effect != api.Deny {
			if d := denies.first(r, &lists, func(d *lintRule) bool { return coversAll(d.actions, r.actions) }); d != nil {
				warn(r, WarnDeadByDeny, "%s rule %q never takes effect: the unconditional deny rule %q (%s) covers all its actions",
					r.r.Effect, r.id(), d.id(), d.r.Pos)
				continue
			}
		}
		if seen {
			warn(r, WarnDuplicate, "rule %q duplicates rule %q (%s): same layer, effect, actions and condition",
				r.id(), dup.id(), dup.r.Pos)
			continue
		}
		if s := coverers[shadowKey(r)].first(r, &lists, func(s *lintRule) bool { return shadows(s, r) }); s != nil {
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
	return ws, nil
}

// dupKey is what makes two rules duplicates: layer, effect, condition text
// and action set (sorted, NUL-separated: no pattern holds a NUL).
type dupKey struct {
	layer         int
	effect        api.Effect
	when, actions string
}

// maxLintCandidates bounds the rules LintContext compares one rule with in
// one check.
const maxLintCandidates = 1000

// coverKey groups unconditional rules by what a rule they shadow must share
// with them: the effect, the layer (anyLayer for deny, which shadows across
// layers) and the obligations (their JSON, or anyObligations for the group
// of all; a rule without obligations may be shadowed by a rule with any).
type coverKey struct {
	effect      api.Effect
	layer       int
	obligations string
}

const (
	anyLayer       = -1
	anyObligations = "*"
)

// coverKeys are the groups an unconditional rule is indexed in.
func coverKeys(s *lintRule) []coverKey {
	layer := s.layer
	if s.r.Effect == api.Deny {
		layer = anyLayer
	}
	keys := []coverKey{{effect: s.r.Effect, layer: layer, obligations: anyObligations}}
	if s.r.Obligations != nil {
		keys = append(keys, coverKey{effect: s.r.Effect, layer: layer, obligations: obligationsKey(s.r.Obligations)})
	}
	return keys
}

// shadowKey is the group whose rules may shadow r (see shadows).
func shadowKey(r *lintRule) coverKey {
	k := coverKey{effect: r.r.Effect, layer: r.layer, obligations: anyObligations}
	if r.r.Effect == api.Deny {
		k.layer = anyLayer
	}
	if r.r.Obligations != nil {
		k.obligations = obligationsKey(r.r.Obligations)
	}
	return k
}

// obligationsKey is equal for obligations that are reflect.DeepEqual (and
// perhaps for a few that are not, which shadows tells apart).
func obligationsKey(o *api.Obligations) string {
	data, err := json.Marshal(o)
	if err != nil {
		return fmt.Sprintf("%#v", o)
	}
	return string(data)
}

// coverIndex finds the rules whose patterns may cover an action pattern,
// the way the decision index finds the rules of an action name.
type coverIndex struct {
	star  []*lintRule
	exact map[string][]*lintRule
	// globs is keyed by the prefix of a glob with its dot ("data." for
	// "data.*").
	globs map[string][]*lintRule
}

func (ix *coverIndex) add(lr *lintRule) {
	for _, p := range lr.actions {
		switch {
		case p == "*":
			ix.star = append(ix.star, lr)
		case strings.HasSuffix(p, ".*"):
			prefix := strings.TrimSuffix(p, "*")
			ix.globs[prefix] = append(ix.globs[prefix], lr)
		default:
			ix.exact[p] = append(ix.exact[p], lr)
		}
	}
}

// covering sets *lists to the rule lists that hold every rule with a
// pattern that covers q (see policy.PatternCovers), and perhaps others;
// each list is in bundle order. It returns their total length.
func (ix *coverIndex) covering(q string, lists *[][]*lintRule) int {
	*lists = append((*lists)[:0], ix.star)
	if q == "*" {
		return len(ix.star)
	}
	n := len(ix.star)
	add := func(l []*lintRule) {
		if len(l) > 0 {
			*lists = append(*lists, l)
			n += len(l)
		}
	}
	add(ix.exact[q])
	// A glob covers q if its prefix is a prefix of q ending at a dot before
	// q's last character; a glob q covers itself that way too.
	for i := 0; i < len(q)-1; i++ {
		if q[i] == '.' {
			add(ix.globs[q[:i+1]])
		}
	}
	return n
}

// first returns the rule of least bundle order, among the indexed rules
// that may cover r, for which ok holds, or nil. It looks up the action of r
// with the fewest candidates and examines at most maxLintCandidates of them.
// lists is scratch space.
func (ix *coverIndex) first(r *lintRule, lists *[][]*lintRule, ok func(*lintRule) bool) *lintRule {
	if ix == nil || len(r.actions) == 0 {
		return nil
	}
	best, fewest := "", -1
	for _, q := range r.actions {
		if n := ix.covering(q, lists); fewest < 0 || n < fewest {
			best, fewest = q, n
		}
	}
	if fewest == 0 {
		return nil
	}
	ix.covering(best, lists)
	var found *lintRule
	budget := maxLintCandidates
	for _, l := range *lists {
		for _, c := range l {
			if found != nil && c.ord >= found.ord {
				break
			}
			if budget == 0 {
				return found
			}
			budget--
			if ok(c) {
				found = c
				break
			}
		}
	}
	return found
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

// coversAll reports whether every pattern of qs is covered by one of ps.
func coversAll(ps, qs []string) bool {
	for _, q := range qs {
		if !slices.ContainsFunc(ps, func(p string) bool { return policy.PatternCovers(p, q) }) {
			return false
		}
	}
	return true
}

// constConditions maps each condition text of src that constant-folds to
// a bool literal to its value. Conditions that do not compile are left out
// (the bundle was compiled, so there are none). It stops with ctx's error
// when ctx is done.
func constConditions(ctx context.Context, src *policy.Bundle) (map[string]bool, error) {
	out := map[string]bool{}
	env, err := newEnv()
	if err != nil {
		return out, nil
	}
	folder, err := cel.NewConstantFoldingOptimizer()
	if err != nil {
		return out, nil
	}
	opt, err := cel.NewStaticOptimizer(folder)
	if err != nil {
		return out, nil
	}
	seen := map[string]bool{}
	for _, p := range src.Policies {
		for _, r := range p.Rules {
			if r.When == "" || seen[r.When] {
				continue
			}
			seen[r.When] = true
			if err := ctx.Err(); err != nil {
				return nil, err
			}
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
	return out, nil
}
