package engine

import (
	"fmt"
	"maps"
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
func (b *Bundle) Decide(req *api.CheckRequest, ents EntityLookup, now time.Time) api.Decision {
	d := api.Decision{Version: b.version}
	rs := b.index.lookup(req.Action.Name)
	if len(rs.layers) == 0 {
		d.Decision = api.Deny
		d.Reasons = []api.Reason{{Effect: api.Deny, Message: fmt.Sprintf("no policy governs action %q", req.Action.Name)}}
		return d
	}
	if ents == nil {
		ents = NoEntities{}
	}
	act := getActivation(req, ents, now)
	defer putActivation(act)

	explain := req.Explain
	var outcomes []api.LayerOutcome
	if explain {
		outcomes = make([]api.LayerOutcome, len(rs.layers))
		for i, lr := range rs.layers {
			outcomes[i].Layer = b.layers[lr.layer]
		}
	}

	// Deny rules first, across all layers: any that holds decides.
	for i, lr := range rs.layers {
		for _, r := range lr.deny {
			if act.holds(r, true, &d) {
				d.Reasons = append(d.Reasons, r.reason)
				if explain {
					outcomes[i].Outcome = OutcomeDeny
					outcomes[i].Rules = append(outcomes[i].Rules, r.reason)
				}
			}
		}
	}
	if len(d.Reasons) > 0 && !explain {
		d.Decision = api.Deny
		return d
	}
	denied := len(d.Reasons) > 0

	var approvals, allows []api.Reason
	var obl *api.Obligations
	var implicit *api.Reason
	for i, lr := range rs.layers {
		var layerApprovals, layerAllows int
		for _, r := range lr.approval {
			if act.holds(r, true, &d) {
				layerApprovals++
				approvals = append(approvals, r.reason)
				obl = mergeObligations(obl, r.obligations)
				if explain {
					outcomes[i].Rules = append(outcomes[i].Rules, r.reason)
				}
			}
		}
		for _, r := range lr.allow {
			if act.holds(r, false, &d) {
				layerAllows++
				allows = append(allows, r.reason)
				obl = mergeObligations(obl, r.obligations)
				if explain {
					outcomes[i].Rules = append(outcomes[i].Rules, r.reason)
				}
			}
		}
		governs := len(lr.approval)+len(lr.allow) > 0
		var outcome string
		switch {
		case explain && outcomes[i].Outcome == OutcomeDeny:
			outcome = OutcomeDeny
		case layerApprovals > 0:
			outcome = OutcomeRequireApproval
		case layerAllows > 0:
			outcome = OutcomeAllow
		case governs:
			outcome = OutcomeImplicitDeny
		default:
			outcome = OutcomeAbstain
		}
		if explain {
			outcomes[i].Outcome = outcome
		}
		if outcome == OutcomeImplicitDeny && implicit == nil {
			layer := b.layers[lr.layer]
			implicit = &api.Reason{Layer: layer, Effect: api.Deny,
				Message: fmt.Sprintf("not permitted by layer %s: no allow rule of the layer holds for %q", layer, req.Action.Name)}
			if !explain {
				break
			}
		}
	}
	d.Explain = outcomes
	switch {
	case denied:
		d.Decision = api.Deny
	case implicit != nil:
		d.Decision = api.Deny
		d.Reasons = append(d.Reasons, *implicit)
	case len(approvals) > 0:
		d.Decision = api.RequireApproval
		d.Reasons = approvals
		d.Obligations = obl
	case len(allows) > 0:
		d.Decision = api.Allow
		d.Reasons = allows
		d.Obligations = obl
	default:
		d.Decision = api.Deny
		d.Reasons = append(d.Reasons, api.Reason{Effect: api.Deny,
			Message: fmt.Sprintf("nothing permits action %q", req.Action.Name)})
	}
	return d
}

// activation resolves the CEL variables of one decision. Subject and
// resource are built only if a condition reads them, with stored properties
// merged over the caller's.
type activation struct {
	req      *api.CheckRequest
	ents     EntityLookup
	now      time.Time
	subject  map[string]any
	resource map[string]any
	action   map[string]any
}

var activationPool = sync.Pool{New: func() any { return new(activation) }}

func getActivation(req *api.CheckRequest, ents EntityLookup, now time.Time) *activation {
	a := activationPool.Get().(*activation)
	a.req, a.ents, a.now = req, ents, now
	return a
}

func putActivation(a *activation) {
	*a = activation{}
	activationPool.Put(a)
}

var emptyMap = map[string]any{}

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "subject":
		if a.subject == nil {
			a.subject = entityValue(&a.req.Subject, a.ents)
		}
		return a.subject, true
	case "resource":
		if a.resource == nil {
			a.resource = entityValue(&a.req.Resource, a.ents)
		}
		return a.resource, true
	case "action":
		if a.action == nil {
			props := a.req.Action.Properties
			if props == nil {
				props = emptyMap
			}
			a.action = map[string]any{"name": a.req.Action.Name, "properties": props}
		}
		return a.action, true
	case "context":
		if a.req.Context == nil {
			return emptyMap, true
		}
		return a.req.Context, true
	case "now":
		return types.Timestamp{Time: a.now}, true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }

// entityValue is the CEL value of an entity: stored properties win over the
// caller's, so a caller cannot claim a role it does not have.
func entityValue(e *api.Entity, ents EntityLookup) map[string]any {
	props := e.Properties
	if stored, ok := ents.Entity(e.Type, e.ID); ok {
		switch {
		case len(props) == 0:
			props = stored
		case len(stored) > 0:
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

// holds evaluates a rule's condition. An error or a non-bool result counts
// as onError (true for deny and require_approval, false for allow: fail
// closed) and is reported in the decision.
func (a *activation) holds(r *rule, onError bool, d *api.Decision) bool {
	if r.cond == nil {
		return true
	}
	out, _, err := r.cond.prg.Eval(a)
	if err == nil {
		if v, ok := out.Value().(bool); ok {
			return v
		}
		err = fmt.Errorf("condition returned %s, not a bool", out.Type().TypeName())
	}
	d.Errors = append(d.Errors, fmt.Sprintf("%s: %v (counted as %t)", r.id(), err, onError))
	return onError
}
