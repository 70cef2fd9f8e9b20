package engine

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/engine/enginetest"
	"github.com/aibos/kernel/internal/policy"
)

var benchNow = time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)

// benchAction is governed in the generated bundles by one exact policy, the
// five glob policies of ns00 and the four "*" guardrails: 10 policies, 29
// rules.
var benchAction = enginetest.Action(0, 0)

func compileFiles(tb testing.TB, files []api.File) *Bundle {
	tb.Helper()
	src, err := policy.Parse(files)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := Compile(src, Options{Version: 1})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// governing keeps the policies of src with a rule that matches action.
func governing(src *policy.Bundle, action string) *policy.Bundle {
	out := *src
	out.Policies = nil
	for _, p := range src.Policies {
		if slices.ContainsFunc(p.Rules, func(r *policy.Rule) bool {
			return slices.ContainsFunc(r.Actions, func(a string) bool { return policy.MatchPattern(a, action) })
		}) {
			out.Policies = append(out.Policies, p)
		}
	}
	return &out
}

// benchDecide measures Decide one decision at a time and reports the
// median and 99th percentile latency next to the mean, the rules that match
// the action and the bundle's size. Each sample includes part of the clock
// reads around it; clock-ns is the median sample of an empty interval.
func benchDecide(b *testing.B, bundle *Bundle, req *api.CheckRequest, ents EntityLookup, want api.Effect) {
	if d := bundle.Decide(req, ents, benchNow); d.Decision != want {
		b.Fatalf("decision %s, want %s: %s %v", d.Decision, want, DescribeReasons(d.Reasons), d.Errors)
	}
	var matched int
	for _, lr := range bundle.index.lookup(req.Action.Name).layers {
		matched += len(lr.deny) + len(lr.approval) + len(lr.allow)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		d := bundle.Decide(req, ents, benchNow)
		lat = append(lat, time.Since(t0))
		if d.Decision != want {
			b.Fatal(d.Decision)
		}
	}
	b.StopTimer()
	// What a sample costs without a decision: the clock reads themselves.
	clock := make([]time.Duration, 10_000)
	for i := range clock {
		t0 := time.Now()
		clock[i] = time.Since(t0)
	}
	slices.Sort(clock)
	b.ReportMetric(float64(clock[len(clock)/2]), "clock-ns")
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2]), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100]), "p99-ns")
	b.ReportMetric(float64(matched), "rules")
	b.ReportMetric(float64(bundle.Stats().Policies), "policies")
}

// BenchmarkDecide decides the same request on the generated 1,000-policy
// bundle and on the 10 of its policies that govern the action: the cost
// depends on the rules that match, not on the size of the bundle.
func BenchmarkDecide(b *testing.B) {
	big := compileFiles(b, enginetest.GenerateBundle(1000, 20))
	small, err := Compile(governing(big.Source(), benchAction), Options{Version: 1})
	if err != nil {
		b.Fatal(err)
	}
	req := enginetest.Request(benchAction)
	b.Run("policies=1000", func(b *testing.B) { benchDecide(b, big, req, nil, api.Allow) })
	b.Run("policies=10", func(b *testing.B) { benchDecide(b, small, req, nil, api.Allow) })
	// Without the admin role one allow rule of the 10 fails: the decision
	// builds its own reasons and obligations instead of the rule set's.
	partial := enginetest.Request(benchAction)
	partial.Subject.Properties["roles"] = []any{"reader"}
	b.Run("policies=1000/one-allow-fails", func(b *testing.B) { benchDecide(b, big, partial, nil, api.Allow) })
	// A user without roles: the platform layer permits nothing.
	denied := enginetest.Request(benchAction)
	denied.Subject.Type = "user"
	denied.Subject.Properties["roles"] = []any{"reader"}
	b.Run("policies=1000/implicit-deny", func(b *testing.B) { benchDecide(b, big, denied, nil, api.Deny) })
}

// BenchmarkDecideStoredEntities is BenchmarkDecide/policies=1000 with the
// subject's and resource's properties in the entity store and a forged role
// in the request: every property read goes through the stored-over-sent
// merge.
func BenchmarkDecideStoredEntities(b *testing.B) {
	big := compileFiles(b, enginetest.GenerateBundle(1000, 20))
	ents := NewMapEntities(enginetest.Entities())
	benchDecide(b, big, enginetest.StoredRequest(benchAction), ents, api.Allow)
}

// BenchmarkDecideCEL measures a condition outside the native evaluator's
// subset (a comprehension), which CEL evaluates on merged entity maps.
func BenchmarkDecideCEL(b *testing.B) {
	const src = `
kind: Policy
name: p
layer: tenant
rules:
  - name: data-roles
    effect: allow
    actions: ["data.*"]
    when: subject.properties.roles.exists(r, r.startsWith("data-")) && resource.properties.region == context.region
`
	bundle := compileFiles(b, []api.File{{Name: "cel.yaml", Data: []byte(src)}})
	ents := NewMapEntities([]api.Entity{{Type: "agent", ID: "a1", Properties: map[string]any{"roles": []any{"reader", "data-writer"}}}})
	req := &api.CheckRequest{
		Subject:  api.Entity{Type: "agent", ID: "a1", Properties: map[string]any{"session": "s1"}},
		Action:   api.Action{Name: "data.write"},
		Resource: api.Entity{Type: "table", ID: "t1", Properties: map[string]any{"region": "eu-west"}},
		Context:  map[string]any{"region": "eu-west"},
	}
	benchDecide(b, bundle, req, ents, api.Allow)
}

// BenchmarkPrepare parses and compiles the generated 1,000-policy bundle,
// which every node does on every publish.
func BenchmarkPrepare(b *testing.B) {
	files := enginetest.GenerateBundle(1000, 20)
	b.ReportAllocs()
	for range b.N {
		if _, err := Prepare(files, Options{Version: 1}, benchNow); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLint lints bundles of 1,000 to 20,000 rules (GenerateRules, 10
// to a policy). The cost should grow about linearly with the rules.
func BenchmarkLint(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 20_000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			bundle := compileFiles(b, enginetest.GenerateRules(n, 10))
			b.ReportAllocs()
			b.ResetTimer()
			var ws []Warning
			for range b.N {
				ws = Lint(bundle)
			}
			b.ReportMetric(float64(len(ws)), "warnings")
		})
	}
}
