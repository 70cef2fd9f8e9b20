package engine

import (
	"fmt"
	"maps"
	"strconv"
	"sync"
	"time"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/interpreter"

	"github.com/aibos/kernel/api"
)

// EntityLookup finds the stored properties of an entity. The engine never
// modifies what it returns.
type EntityLookup interface {
	Entity(typ, id string) (map[string]any, bool)
}

// NoEntities is an EntityLookup that knows no entity.
type NoEntities struct{}

// Entity always reports false.
func (NoEntities) Entity(string, string) (map[string]any, bool) { return nil, false }

// Layer outcomes reported by explain.
const (
	OutcomeDeny            = "deny"
	OutcomeRequireApproval = "require_approval"
	OutcomeAllow           = "allow"
	OutcomeImplicitDeny    = "implicit_deny"
	OutcomeAbstain         = "abstain"
)

// Decide answers req with the combining algorithm of DESIGN.md section 2.
// Stored properties of the subject and resource (from ents) are merged over
// what the caller sent. now is the value of the CEL variable `now`. When
// req.Explain is set every matching rule is evaluated and each layer's outcome
// is reported; otherwise evaluation stops as soon as the outcome is certain.
// Decide never modifies req and never panics on any request.
//
// A decision is read-only: its Reasons and Obligations may be shared with
// the compiled bundle and with other decisions (the common outcomes are
// built once, at compile time, so that deciding them allocates nothing).
// Copy them before modifying; appending to Reasons copies by itself.
func (b *Bundle) Decide(req *api.CheckRequest, ents EntityLookup, now time.Time) api.Decision {
	d := api.Decision{Version: b.version}
	if req.Action.Name == "" {
		d.Decision = api.Deny
		d.Reasons = []api.Reason{{Effect: api.Deny, Message: "the request has no action name"}}
		d.Errors = []string{"request: action.name is empty"}
		return d
	}
	rs := b.index.lookup(req.Action.Name)
	if len(rs.layers) == 0 {
		d.Decision = api.Deny
		d.Reasons = []api.Reason{{Effect: api.Deny, Message: "no policy governs action " + strconv.Quote(req.Action.Name)}}
		if req.Explain {
			d.Explain = b.abstaining()
		}
		return d
	}
	ev := b.getEvaluator(req, ents, now)
	defer putEvaluator(ev)
	if req.Explain {
		return b.explain(ev, rs, d)
	}

	// Deny rules first, across all layers: any that holds decides, and every
	// one that holds is a reason.
	for i := range rs.layers {
		for _, r := range rs.layers[i].deny {
			if ev.holds(r, true, &d) {
				ev.held = append(ev.held, r)
			}
		}
	}
	if len(ev.held) > 0 {
		return denyDecision(ev, d)
	}

	// Then layer by layer, highest first; the first layer that governs the
	// action but permits nothing decides (implicit deny).
	for i := range rs.layers {
		lr := &rs.layers[i]
		before := len(ev.held)
		for _, r := range lr.approval {
			if ev.holds(r, true, &d) {
				ev.permit(r)
				ev.approvals++
			}
			ev.pos++
		}
		for _, r := range lr.allow {
			if ev.holds(r, false, &d) {
				ev.permit(r)
			}
			ev.pos++
		}
		if len(ev.held) == before && lr.governs() {
			d.Decision = api.Deny
			d.Reasons = lr.implicit
			if d.Reasons == nil {
				d.Reasons = []api.Reason{implicitDeny(b.layers[lr.layer], req.Action.Name)}
			}
			return d
		}
	}
	return permitDecision(ev, rs, d)
}

// abstaining is the explanation of a decision no rule matched: every layer
// abstains.
func (b *Bundle) abstaining() []api.LayerOutcome {
	outcomes := make([]api.LayerOutcome, len(b.layers))
	for i, l := range b.layers {
		outcomes[i] = api.LayerOutcome{Layer: l, Outcome: OutcomeAbstain}
	}
	return outcomes
}

// explain is Decide with every matching rule evaluated and the outcome of
// every layer of the bundle reported, in precedence order (a layer with no
// matching rule abstains). Its decision is always the one Decide makes.
func (b *Bundle) explain(ev *evaluator, rs *ruleSet, d api.Decision) api.Decision {
	outcomes := b.abstaining()
	var denies []*rule
	var implicit *api.Reason
	for i := range rs.layers {
		lr := &rs.layers[i]
		o := &outcomes[lr.layer]
		var layerDenies, layerApprovals, layerAllows int
		for _, r := range lr.deny {
			if ev.holds(r, true, &d) {
				denies = append(denies, r)
				o.Rules = append(o.Rules, r.reason)
				layerDenies++
			}
		}
		for _, r := range lr.approval {
			if ev.holds(r, true, &d) {
				ev.permit(r)
				ev.approvals++
				o.Rules = append(o.Rules, r.reason)
				layerApprovals++
			}
			ev.pos++
		}
		for _, r := range lr.allow {
			if ev.holds(r, false, &d) {
				ev.permit(r)
				o.Rules = append(o.Rules, r.reason)
				layerAllows++
			}
			ev.pos++
		}
		switch {
		case layerDenies > 0:
			o.Outcome = OutcomeDeny
		case layerApprovals > 0:
			o.Outcome = OutcomeRequireApproval
		case layerAllows > 0:
			o.Outcome = OutcomeAllow
		case lr.governs():
			o.Outcome = OutcomeImplicitDeny
			if implicit == nil {
				r := implicitDeny(b.layers[lr.layer], ev.req.Action.Name)
				implicit = &r
			}
		default:
			o.Outcome = OutcomeAbstain
		}
	}
	switch {
	case len(denies) > 0:
		ev.held = append(ev.held[:0], denies...)
		d = denyDecision(ev, d)
	case implicit != nil:
		d.Decision = api.Deny
		d.Reasons = []api.Reason{*implicit}
	default:
		d = permitDecision(ev, rs, d)
	}
	d.Explain = outcomes
	return d
}

func implicitDeny(name, action string) api.Reason {
	return api.Reason{Layer: name, Effect: api.Deny,
		Message: "not permitted by layer " + name + ": no allow rule of the layer holds for " + strconv.Quote(action)}
}

// denyDecision is the decision of the deny rules in ev.held.
func denyDecision(ev *evaluator, d api.Decision) api.Decision {
	d.Decision = api.Deny
	if len(ev.held) == 1 {
		d.Reasons, d.Obligations = ev.held[0].solo, ev.held[0].soloObl
		return d
	}
	d.Reasons = make([]api.Reason, len(ev.held))
	for i, r := range ev.held {
		d.Reasons[i] = r.reason
		ev.obl.merge(r)
	}
	d.Obligations = ev.obl.obligations()
	return d
}

// permitDecision is the decision of the approval and allow rules in
// ev.held: require_approval if an approval rule held, allow if only allow
// rules held, and the default deny if nothing held.
func permitDecision(ev *evaluator, rs *ruleSet, d api.Decision) api.Decision {
	if len(ev.held) == 0 {
		d.Decision = api.Deny
		d.Reasons = []api.Reason{{Effect: api.Deny, Message: "nothing permits action " + strconv.Quote(ev.req.Action.Name)}}
		return d
	}
	d.Decision = api.Allow
	if ev.approvals > 0 {
		d.Decision = api.RequireApproval
	}
	if ev.approvals == 0 && len(ev.held) == rs.allows {
		// Every allow rule held: the reasons and obligations are the
		// rule set's own.
		d.Reasons, d.Obligations = rs.allowReasons, rs.allowObl
		return d
	}
	// The outcome depends only on which permit rules held: one seen before
	// is shared.
	cacheable := ev.pos <= 64
	if cacheable {
		if o := rs.outcome(ev.mask); o != nil {
			d.Reasons, d.Obligations = o.reasons, o.obligations
			return d
		}
	}
	// The reasons are the rules of the decisive effect; the obligations are
	// those of every rule that held.
	n := len(ev.held)
	if ev.approvals > 0 {
		n = ev.approvals
	}
	d.Reasons = make([]api.Reason, 0, n)
	for _, r := range ev.held {
		if ev.approvals == 0 || r.effect == api.RequireApproval {
			d.Reasons = append(d.Reasons, r.reason)
		}
		ev.obl.merge(r)
	}
	d.Obligations = ev.obl.obligations()
	if cacheable {
		rs.remember(ev.mask, &outcome{reasons: d.Reasons, obligations: d.Obligations})
	}
	return d
}

// evaluator holds the state of one decision: the request, the stored
// properties of its subject and resource (looked up at most once), the CEL
// values built for conditions that need CEL, the rules that held, and the
// obligations merged so far. Evaluators are pooled; nothing of one escapes
// into a decision.
type evaluator struct {
	req  *api.CheckRequest
	ents EntityLookup
	now  time.Time

	looked [2]bool
	stored [2]map[string]any

	// gen numbers the decisions of this evaluator; a cache slot holds a
	// value of the current decision only if its gen matches.
	gen   uint32
	slots []valueSlot
	conds []condSlot

	// CEL values, built on first use.
	subject, resource, action map[string]any

	held      []*rule
	approvals int
	obl       merger

	// pos counts the permit rules (approval and allow) evaluated so far,
	// in rule set order; mask has bit pos set for each that held, and
	// identifies the outcome while pos <= 64.
	pos  int
	mask uint64
}

// permit records an approval or allow rule that held.
func (ev *evaluator) permit(r *rule) {
	ev.held = append(ev.held, r)
	if ev.pos < 64 {
		ev.mask |= 1 << ev.pos
	}
}

var evaluatorPool = sync.Pool{New: func() any { return new(evaluator) }}

// condSlot caches the result of one condition for the current decision.
type condSlot struct {
	gen uint32
	v   bool
}

func (b *Bundle) getEvaluator(req *api.CheckRequest, ents EntityLookup, now time.Time) *evaluator {
	ev := evaluatorPool.Get().(*evaluator)
	if ents == nil {
		ents = NoEntities{}
	}
	ev.req, ev.ents, ev.now = req, ents, now
	ev.obl.reset()
	if len(ev.slots) < b.slots {
		ev.slots = make([]valueSlot, b.slots)
	}
	if len(ev.conds) < b.conds {
		ev.conds = make([]condSlot, b.conds)
	}
	ev.gen++
	if ev.gen == 0 {
		clear(ev.slots)
		clear(ev.conds)
		ev.gen = 1
	}
	return ev
}

func putEvaluator(ev *evaluator) {
	clear(ev.held)
	// Stale path slots may still point into the last request until they
	// are overwritten; the pool drops idle evaluators at garbage collection,
	// and clearing every slot would cost each decision O(paths).
	*ev = evaluator{gen: ev.gen, slots: ev.slots, conds: ev.conds, held: ev.held[:0], obl: ev.obl}
	evaluatorPool.Put(ev)
}

// entity returns the subject (0) or resource (1) of the request.
func (ev *evaluator) entity(who int) *api.Entity {
	if who == 0 {
		return &ev.req.Subject
	}
	return &ev.req.Resource
}

func (ev *evaluator) storedProps(who int) map[string]any {
	if !ev.looked[who] {
		e := ev.entity(who)
		ev.stored[who], _ = ev.ents.Entity(e.Type, e.ID)
		ev.looked[who] = true
	}
	return ev.stored[who]
}

// prop is one property of the subject or resource: the stored value wins
// over the caller's, so a caller cannot claim a role it does not have.
func (ev *evaluator) prop(who int, key string) (any, bool) {
	if v, ok := ev.storedProps(who)[key]; ok {
		return v, true
	}
	v, ok := ev.entity(who).Properties[key]
	return v, ok
}

var emptyMap = map[string]any{}

// ResolveName implements interpreter.Activation for conditions that CEL
// evaluates.
func (ev *evaluator) ResolveName(name string) (any, bool) {
	switch name {
	case "subject":
		if ev.subject == nil {
			ev.subject = ev.entityValue(0)
		}
		return ev.subject, true
	case "resource":
		if ev.resource == nil {
			ev.resource = ev.entityValue(1)
		}
		return ev.resource, true
	case "action":
		if ev.action == nil {
			props := ev.req.Action.Properties
			if props == nil {
				props = emptyMap
			}
			ev.action = map[string]any{"name": ev.req.Action.Name, "properties": props}
		}
		return ev.action, true
	case "context":
		if ev.req.Context == nil {
			return emptyMap, true
		}
		return ev.req.Context, true
	case "now":
		return types.Timestamp{Time: ev.now}, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (ev *evaluator) Parent() interpreter.Activation { return nil }

// entityValue is the CEL value of the subject or resource, with stored
// properties merged over the caller's.
func (ev *evaluator) entityValue(who int) map[string]any {
	e := ev.entity(who)
	props := e.Properties
	if stored := ev.storedProps(who); len(stored) > 0 {
		if len(props) == 0 {
			props = stored
		} else {
			merged := make(map[string]any, len(props)+len(stored))
			maps.Copy(merged, props)
			maps.Copy(merged, stored)
			props = merged
		}
	}
	if props == nil {
		props = emptyMap
	}
	return map[string]any{"type": e.Type, "id": e.ID, "properties": props}
}

// holds evaluates a rule's condition, natively when it can and with CEL
// otherwise. An error or a non-bool result counts as onError (true for deny
// and require_approval, false for allow: fail closed) and is reported in the
// decision.
func (ev *evaluator) holds(r *rule, onError bool, d *api.Decision) bool {
	c := r.cond
	if c == nil {
		return true
	}
	// A condition shared by several rules is evaluated once per decision;
	// only successful results are cached, so that every rule reports its
	// own error.
	cs := &ev.conds[c.id]
	if cs.gen == ev.gen {
		return cs.v
	}
	if c.native != nil {
		if v, ok := c.native(ev); ok {
			cs.gen, cs.v = ev.gen, v
			return v
		}
	}
	out, _, err := c.prg.Eval(ev)
	if err == nil {
		if v, ok := out.Value().(bool); ok {
			cs.gen, cs.v = ev.gen, v
			return v
		}
		err = fmt.Errorf("condition returned %s, not a bool", out.Type().TypeName())
	}
	d.Errors = append(d.Errors, fmt.Sprintf("%s: %v (counted as %t)", r.id(), err, onError))
	return onError
}
