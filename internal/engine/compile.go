// Package engine compiles policy bundles into an immutable, indexed form and
// decides requests against it with the combining algorithm of DESIGN.md
// section 2: deny wins, layers are guardrails, errors fail closed. It also
// explains decisions and runs a bundle's own tests. It knows nothing of the
// store, the server or Raft: stored entities arrive through EntityLookup.
package engine

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/policy"
)

// Options tune compilation.
type Options struct {
	// Version stamps every decision made with the compiled bundle.
	Version uint64
	// MaxCost bounds each condition's statically estimated cost;
	// zero means DefaultMaxCost.
	MaxCost uint64
	// Limits bound the policies and rules of the source Load and Prepare
	// parse; a zero field means its default (policy.Limits).
	Limits policy.Limits
}

// Bundle is a compiled policy bundle. It is immutable (but for a memo of
// decision outcomes, filled atomically) and safe for concurrent use; swapping bundles is the caller's atomic pointer store.
type Bundle struct {
	version uint64
	layers  []string
	index   index
	src     *policy.Bundle
	rules   int
	// conds and slots count the distinct conditions and the value slots of
	// native conditions: the sizes of an evaluator's per-decision caches.
	conds int
	slots int
}

// rule is a compiled rule with its reason prebuilt, so that a decision only
// copies it.
type rule struct {
	reason      api.Reason
	cond        *condition // nil: always holds
	obligations *api.Obligations
	auditRank   int // policy.AuditRank of obligations.Audit, -1 if none
	layer       int
	patterns    []string
	effect      api.Effect
	policyName  string
	// ord is the rule's place in the bundle.
	ord int
	// solo and soloObl are the reasons and obligations of a decision that
	// this rule alone determines (a single deny that held), built once.
	solo    []api.Reason
	soloObl *api.Obligations
}

func (r *rule) id() string { return r.policyName + "/" + r.reason.Rule }

// Compile type-checks, bounds and indexes every rule of src. All problems
// are returned together as a sorted policy.ErrorList; on error there is no
// bundle.
func Compile(src *policy.Bundle, opts Options) (*Bundle, error) {
	return CompileContext(context.Background(), src, opts)
}

// CompileContext is Compile that gives up, with ctx's error, when ctx is
// done.
func CompileContext(ctx context.Context, src *policy.Bundle, opts Options) (*Bundle, error) {
	c, err := compileRules(ctx, src, opts, false)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &Bundle{
		version: opts.Version,
		layers:  slices.Clone(src.Layers),
		src:     src,
		index:   buildIndex(c.rules, src.Layers),
		rules:   len(c.rules),
		conds:   c.conds,
		slots:   c.slots,
	}, nil
}

// compiled is what compileRules produces for a bundle.
type compiled struct {
	rules        []*rule
	conds, slots int
}

// compileRules compiles the rules of src. With partial set, src is the
// incomplete result of policy.ParsePartial: problems the parser has
// reported (unknown layers) are skipped silently, so that only the
// conditions' problems are added to the parser's. It stops with ctx's
// error when ctx is done.
func compileRules(ctx context.Context, src *policy.Bundle, opts Options, partial bool) (*compiled, error) {
	if opts.MaxCost == 0 {
		opts.MaxCost = DefaultMaxCost
	}
	env, err := newEnv()
	if err != nil {
		return nil, fmt.Errorf("engine: build CEL environment: %w", err)
	}
	layerIdx := make(map[string]int, len(src.Layers))
	for i, l := range src.Layers {
		layerIdx[l] = i
	}
	var errs policy.ErrorList
	conds := map[string]*condition{}
	condErrs := map[string][]string{}
	nc := newNativeCompiler()
	var rules []*rule
	for _, p := range src.Policies {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		li, ok := layerIdx[p.Layer]
		if !ok && !partial {
			errs.Add(p.Pos, "policy %q has unknown layer %q", p.Name, p.Layer)
			continue
		}
		for _, r := range p.Rules {
			cr := &rule{
				reason: api.Reason{
					Policy: p.Name, Rule: r.Name, Layer: p.Layer,
					Effect: r.Effect, Message: r.Message,
				},
				obligations: r.Obligations,
				auditRank:   -1,
				layer:       li,
				patterns:    r.Actions,
				effect:      r.Effect,
				policyName:  p.Name,
			}
			if r.Obligations != nil {
				cr.auditRank = policy.AuditRank(r.Obligations.Audit)
			}
			if r.When != "" && r.When != "true" {
				c, seen := conds[r.When]
				if !seen {
					if err := ctx.Err(); err != nil {
						return nil, err
					}
					var msgs []string
					c, msgs = compileCondition(env, nc, r.When, opts.MaxCost)
					if c != nil {
						c.id = len(conds)
					}
					conds[r.When], condErrs[r.When] = c, msgs
				}
				// A condition shared by several rules is compiled once but
				// its problems are reported at every rule.
				for _, m := range condErrs[r.When] {
					errs.Add(r.WhenPos, "policy %q rule %q: %s", p.Name, r.Name, m)
				}
				if c == nil {
					continue
				}
				cr.cond = c
			}
			cr.ord = len(rules)
			cr.solo = []api.Reason{cr.reason}
			var m merger
			m.reset()
			m.merge(cr)
			cr.soloObl = m.obligations()
			rules = append(rules, cr)
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return &compiled{rules: rules, conds: len(conds), slots: nc.slots}, nil
}

// Version is the bundle version stamped on decisions.
func (b *Bundle) Version() uint64 { return b.version }

// Layers returns the layer order, highest precedence first.
func (b *Bundle) Layers() []string { return slices.Clone(b.layers) }

// Source is the parsed bundle this was compiled from.
func (b *Bundle) Source() *policy.Bundle { return b.src }

// Stats describes the size of a compiled bundle.
type Stats struct {
	Policies, Rules, Conditions, IndexedActions, IndexedGlobs int
}

// Stats reports the size of the bundle and its index.
func (b *Bundle) Stats() Stats {
	return Stats{
		Policies:       len(b.src.Policies),
		Rules:          b.rules,
		Conditions:     b.conds,
		IndexedActions: len(b.index.exact),
		IndexedGlobs:   len(b.index.globs),
	}
}

// index maps an action name to the rules that can match it, grouped by
// layer in precedence order and by effect, so a decision touches nothing else.
type index struct {
	exact map[string]*ruleSet
	// globs maps a namespace prefix with its trailing dot ("data.") to the
	// rules of every glob that covers it, including "*".
	globs map[string]*ruleSet
	star  *ruleSet
}

// ruleSet is every rule that matches one action (or one glob prefix).
type ruleSet struct {
	layers []layerRules
	// allows is the number of allow rules; allowReasons and allowObl are
	// the reasons and merged obligations of a decision in which every one
	// of them held and no approval rule did, the common case of an allow,
	// built once so that such a decision allocates nothing.
	allows       int
	allowReasons []api.Reason
	allowObl     *api.Obligations
	// outcomes remembers the reasons and obligations of other permit
	// outcomes, by the mask of the permit rules that held (see
	// evaluator.mask), up to maxOutcomes of them: a memo filled by
	// decisions, copied on write, safe for concurrent use.
	outcomes atomic.Pointer[map[uint64]*outcome]
}

// outcome is the shared result of a permit decision.
type outcome struct {
	reasons     []api.Reason
	obligations *api.Obligations
}

// maxOutcomes bounds the outcomes a rule set remembers: the few that recur
// are what matters, and memory stays in proportion to the index.
const maxOutcomes = 8

func (rs *ruleSet) outcome(mask uint64) *outcome {
	if m := rs.outcomes.Load(); m != nil {
		return (*m)[mask]
	}
	return nil
}

// remember adds an outcome unless the memo is full; losing a race with
// another decision only loses a memo entry.
func (rs *ruleSet) remember(mask uint64, o *outcome) {
	o.reasons = slices.Clip(o.reasons)
	old := rs.outcomes.Load()
	if old != nil && len(*old) >= maxOutcomes {
		return
	}
	m := make(map[uint64]*outcome, 1)
	if old != nil {
		m = make(map[uint64]*outcome, len(*old)+1)
		maps.Copy(m, *old)
	}
	m[mask] = o
	rs.outcomes.CompareAndSwap(old, &m)
}

type layerRules struct {
	layer    int
	deny     []*rule
	approval []*rule
	allow    []*rule
	// implicit is the reason of this layer's implicit denial, built once
	// for the rule set of an exact name (nil for globs: the reason names
	// the action asked for).
	implicit []api.Reason
}

// governs reports whether the layer has a rule that could permit the
// action; if none holds, the layer denies implicitly.
func (lr *layerRules) governs() bool { return len(lr.approval)+len(lr.allow) > 0 }

// buildIndex indexes rules by the exact names and glob prefixes their
// patterns mention. Its cost is proportional to the size of the index, not
// to names times rules.
func buildIndex(rules []*rule, layerNames []string) index {
	nlayers := len(layerNames)
	var star []*rule
	exact := map[string][]*rule{}
	globs := map[string][]*rule{}
	for _, r := range rules {
		for _, p := range r.patterns {
			switch {
			case p == "*":
				star = append(star, r)
			case strings.HasSuffix(p, ".*"):
				prefix := strings.TrimSuffix(p, "*")
				globs[prefix] = append(globs[prefix], r)
			default:
				exact[p] = append(exact[p], r)
			}
		}
	}
	// covering returns the rules of name's own list and of every glob
	// prefix of name ending at a dot before its last character.
	covering := func(name string, own []*rule) []*rule {
		out := own[:len(own):len(own)]
		for i := 0; i < len(name)-1; i++ {
			if name[i] == '.' {
				out = append(out, globs[name[:i+1]]...)
			}
		}
		return append(out, star...)
	}
	ix := index{exact: map[string]*ruleSet{}, globs: map[string]*ruleSet{}, star: collect(star, nlayers)}
	for prefix, own := range globs {
		// Everything under prefix is matched by its own glob, every shorter
		// glob that covers it, and "*".
		ix.globs[prefix] = collect(covering(prefix, own), nlayers)
	}
	for name, own := range exact {
		rs := collect(covering(name, own), nlayers)
		for i := range rs.layers {
			if lr := &rs.layers[i]; lr.governs() {
				lr.implicit = []api.Reason{implicitDeny(layerNames[lr.layer], name)}
			}
		}
		ix.exact[name] = rs
	}
	return ix
}

// collect builds the rule set of rules: grouped by layer in precedence
// order and, within a layer, by effect in bundle order, each rule once.
func collect(rules []*rule, nlayers int) *ruleSet {
	rules = slices.Clone(rules) // sorted and compacted here: the caller's stays as is
	slices.SortFunc(rules, func(a, b *rule) int { return a.ord - b.ord })
	rules = slices.Compact(rules)
	byLayer := make([]layerRules, nlayers)
	for _, r := range rules {
		lr := &byLayer[r.layer]
		switch r.effect {
		case api.Deny:
			lr.deny = append(lr.deny, r)
		case api.RequireApproval:
			lr.approval = append(lr.approval, r)
		default:
			lr.allow = append(lr.allow, r)
		}
	}
	rs := &ruleSet{}
	var allows []*rule
	for i, lr := range byLayer {
		if len(lr.deny)+len(lr.approval)+len(lr.allow) > 0 {
			lr.layer = i
			rs.layers = append(rs.layers, lr)
			allows = append(allows, lr.allow...)
		}
	}
	if len(allows) > 0 {
		rs.allows = len(allows)
		rs.allowReasons = make([]api.Reason, len(allows))
		var m merger
		m.reset()
		for i, r := range allows {
			rs.allowReasons[i] = r.reason
			m.merge(r)
		}
		rs.allowObl = m.obligations()
	}
	return rs
}

// lookup returns the rules that can match action name. It allocates nothing.
func (ix *index) lookup(name string) *ruleSet {
	if rs, ok := ix.exact[name]; ok {
		return rs
	}
	// The longest covering glob prefix holds the rules of all shorter ones.
	for i := len(name) - 2; i > 0; i-- {
		if name[i] == '.' {
			if rs, ok := ix.globs[name[:i+1]]; ok {
				return rs
			}
		}
	}
	return ix.star
}
