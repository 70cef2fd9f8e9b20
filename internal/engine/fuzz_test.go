package engine

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/policy"
)

// fuzzBundle has rules of every effect in every layer, over exact names,
// globs and "*", with native and CEL-only conditions.
const fuzzBundle = `
kind: Policy
name: platform
layer: platform
rules:
  - {name: kill, effect: deny, actions: ["*"], when: "has(context.kill) && context.kill == true"}
  - {name: residency, effect: deny, actions: ["data.*"], when: 'resource.properties.classification == "pii" && resource.properties.region != context.region'}
  - {name: agents, effect: allow, actions: ["*"], when: 'subject.type == "agent" || subject.id.startsWith("svc-")', obligations: {audit: digest}}
---
kind: Policy
name: region
layer: region
rules:
  - {name: spend, effect: require_approval, actions: ["cost.*"], when: "context.amount > 1000", obligations: {approvers: [finance]}}
  - {name: cost, effect: allow, actions: ["cost.*"], when: "context.amount <= 5000"}
---
kind: Policy
name: tenant
layer: tenant
rules:
  - {name: roles, effect: allow, actions: ["data.*", "cost.*"], when: '"admin" in subject.properties.roles || subject.properties.roles.exists(r, r.startsWith("data-"))', obligations: {audit: full, redact: [ssn], rate_limit: {limit: 10, per: 1m, key: subject.id}}}
  - {name: owner, effect: allow, actions: [data.write], when: "resource.properties.owner == subject.id"}
  - {name: frozen, effect: deny, actions: [data.write], when: "now > timestamp(\"2030-01-01T00:00:00Z\") || size(resource.properties.tags) > 3"}
---
kind: Policy
name: agent
layer: agent
rules:
  - {name: self, effect: allow, actions: ["*"], when: "subject.properties.level >= 2.5 && action.properties.dry_run != true"}
`

func fuzzCompiled(tb testing.TB) *Bundle {
	tb.Helper()
	src, err := policy.Parse([]api.File{{Name: "fuzz.yaml", Data: []byte(fuzzBundle)}})
	if err != nil {
		tb.Fatal(err)
	}
	b, err := Compile(src, Options{Version: 1})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

var fuzzEntities = NewMapEntities([]api.Entity{
	{Type: "agent", ID: "a1", Properties: map[string]any{"roles": []any{"admin"}, "level": 3.0}},
	{Type: "table", ID: "t1", Properties: map[string]any{"region": "eu-west", "classification": "pii", "tags": []any{"a"}}},
})

// FuzzDecodeRequest decodes arbitrary bytes as a check request and, when
// that succeeds, decides it: neither may panic, every decision is one of
// the three effects with a reason, and explaining never changes it.
func FuzzDecodeRequest(f *testing.F) {
	b := fuzzCompiled(f)
	seeds := []string{
		`{"subject": {"type": "agent", "id": "a1"}, "action": {"name": "data.query"}, "resource": {"type": "table", "id": "t1"}, "context": {"region": "eu-west"}}`,
		`{"subject": {"type": "user", "id": "svc-1", "properties": {"roles": ["data-reader"], "level": 1}}, "action": {"name": "cost.purchase"}, "resource": {"type": "vendor", "id": "v"}, "context": {"amount": 2500}}`,
		`{"subject": {"type": "x", "id": "y", "properties": {"roles": "admin", "level": "high"}}, "action": {"name": "data.write", "properties": {"dry_run": 1}}, "resource": {"type": "t", "id": "r", "properties": {"owner": null, "tags": {"a": 1}}}, "context": {"kill": "yes", "amount": "7"}, "explain": true}`,
		`{"action": {"name": "*"}}`,
		`{"action": {"name": ""}}`,
		`{"action": {"name": "data."}, "context": {"amount": 1e308}}`,
		`{"action": {"name": "cost..x"}, "min_revision": 3}`,
		`[]`,
		`{"action": {"name": "x"}} trailing`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := api.DecodeCheckRequest(data)
		if err != nil {
			if req != nil {
				t.Fatal("a request returned with an error")
			}
			return
		}
		for _, ents := range []EntityLookup{nil, fuzzEntities} {
			req.Explain = false
			d := b.Decide(req, ents, now)
			if !d.Decision.Valid() || len(d.Reasons) == 0 {
				t.Fatalf("decision %q with reasons %v", d.Decision, d.Reasons)
			}
			req.Explain = true
			e := b.Decide(req, ents, now)
			if e.Decision != d.Decision || !reflect.DeepEqual(e.Reasons, d.Reasons) || !reflect.DeepEqual(e.Obligations, d.Obligations) {
				t.Fatalf("explain changed the decision: %+v vs %+v", e, d)
			}
			if _, err := json.Marshal(d); err != nil {
				t.Fatalf("decision does not encode: %v", err)
			}
		}
	})
}

// fuzzRequests are what FuzzCompileCondition evaluates a compiled
// condition on.
func fuzzRequests() []*api.CheckRequest {
	return append(nativeRequests(), &api.CheckRequest{
		Subject:  api.Entity{Type: "agent", ID: "a1"},
		Action:   api.Action{Name: "data.query"},
		Resource: api.Entity{Type: "table", ID: "t1"},
	})
}

// FuzzCompileCondition compiles arbitrary `when` text in a rule. Compiling
// never panics; a condition that compiles decides every request without
// panicking, and whenever the native evaluator answers, CEL agrees.
func FuzzCompileCondition(f *testing.F) {
	for _, c := range nativeConditions {
		f.Add(c)
	}
	for _, c := range []string{
		`subject.properties.roles.exists(r, resource.properties.tags.exists(t, t == r))`,
		`subject.propertys.x`, `1 +`, `"a"`, `[1, 2].map(x, x * 2).size() > 1`,
		`context.a.b.c.d == context["e"]["f"]`, `int(context.amount) % 2 == 0`,
		`subject.id.matches("^a[0-9]+$")`, `sets.contains(subject.properties.roles, ["admin"])`,
		`dyn(context.x) == dyn(1u)`, `context.amount / 0.0 > 1.0`, `1 / 0 == 1`,
		`has(context.x) ? context.x : false`, `!(!(!context.flag))`,
	} {
		f.Add(c)
	}
	env, err := newEnv()
	if err != nil {
		f.Fatal(err)
	}
	reqs := fuzzRequests()
	ents := NewMapEntities([]api.Entity{{Type: "agent", ID: "a1", Properties: map[string]any{"roles": []any{"admin"}, "level": 3}}})
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, when string) {
		src := &policy.Bundle{
			Layers: policy.DefaultLayers,
			Policies: []*policy.Policy{{Name: "p", Layer: "tenant", Rules: []*policy.Rule{
				{Name: "d", Effect: api.Deny, Actions: []string{"data.*"}, When: when},
				{Name: "a", Effect: api.Allow, Actions: []string{"*"}, When: when},
			}}},
		}
		b, err := Compile(src, Options{})
		if err != nil {
			if b != nil {
				t.Fatal("a bundle returned with an error")
			}
			return
		}
		for _, req := range reqs {
			if d := b.Decide(req, ents, now); !d.Decision.Valid() {
				t.Fatalf("decision %q", d.Decision)
			}
		}
		if when == "" || when == "true" {
			return // unconditional: no condition is compiled
		}
		// The differential check, on a condition compiled on its own.
		nc := newNativeCompiler()
		c, msgs := compileCondition(env, nc, when, DefaultMaxCost)
		if c == nil {
			t.Fatalf("Compile accepted %q but compileCondition did not: %v", when, msgs)
		}
		if c.native == nil {
			return
		}
		cb := &Bundle{conds: 1, slots: nc.slots}
		for i, req := range reqs {
			ev := cb.getEvaluator(req, ents, now)
			v, ok := c.native(ev)
			putEvaluator(ev)
			if !ok {
				continue
			}
			ev = cb.getEvaluator(req, ents, now)
			out, _, err := c.prg.Eval(ev)
			putEvaluator(ev)
			if err != nil {
				t.Fatalf("request %d: native says %t, CEL errs: %v", i, v, err)
			}
			if cv, isBool := out.Value().(bool); !isBool || cv != v {
				t.Fatalf("request %d: native says %t, CEL says %v", i, v, out)
			}
		}
	})
}
