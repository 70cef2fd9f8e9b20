// Package enginetest generates policy bundles and requests of a realistic
// shape for benchmarks and load tests of the engine and of the server. It
// depends only on the api wire types, so any package may use it.
package enginetest

import (
	"fmt"
	"strings"

	"github.com/aibos/kernel/api"
)

// Layers are the layers of generated bundles, highest first (the default
// order of DESIGN.md).
var Layers = []string{"platform", "region", "tenant", "agent"}

// Generated policies follow a fixed plan so that the bundle of n policies is
// the first n policies of any larger one. Policy i belongs to namespace
// i % nNamespaces and is that namespace's k-th policy, k = i / nNamespaces:
//
//   - every 250th policy (i % 250 == 7) is a guardrail on "*";
//   - every 10th policy of a namespace (k % 10 == 3) covers "nsNN.*";
//   - all others govern one exact action, "nsNN.vKKK", so each exact action
//     name is governed by one exact policy plus its namespace's globs and
//     the "*" guardrails.
//
// The layer of policy i is (i + k) % 4. Every policy has a deny rule that
// does not hold for Request, and an allow rule that does, so Request on any
// governed action is allowed after every matching deny rule was checked.
const (
	starEvery = 250
	globEvery = 10
)

// GenerateBundle returns a bundle of nPolicies policies over nNamespaces
// namespaces (ns00, ns01, ...) as one YAML file, with no tests.
func GenerateBundle(nPolicies, nNamespaces int) []api.File {
	if nNamespaces < 1 {
		nNamespaces = 1
	}
	var b strings.Builder
	for i := range nPolicies {
		if i > 0 {
			b.WriteString("---\n")
		}
		writePolicy(&b, i, nNamespaces)
	}
	return []api.File{{Name: "generated.yaml", Data: []byte(b.String())}}
}

// Action is the exact action name governed by the k-th policy of namespace
// ns (for k not a glob policy).
func Action(ns, k int) string { return fmt.Sprintf("ns%02d.v%03d", ns, k) }

func writePolicy(b *strings.Builder, i, nNamespaces int) {
	ns, k := i%nNamespaces, i/nNamespaces
	layer := Layers[(i+k)%len(Layers)]
	fmt.Fprintf(b, "kind: Policy\nname: p%04d\nlayer: %s\nrules:\n", i, layer)
	switch {
	case i%starEvery == 7:
		// A platform-wide guardrail: quarantine, residency, and an audited
		// allow for registered agents.
		fmt.Fprintf(b, `  - name: quarantined
    effect: deny
    actions: ["*"]
    when: has(subject.properties.quarantined) && subject.properties.quarantined == true
    message: the agent is quarantined
  - name: pii-residency
    effect: deny
    actions: ["*"]
    when: resource.properties.classification == "pii" && resource.properties.region != context.region
  - name: registered-agents
    effect: allow
    actions: ["*"]
    when: subject.type == "agent" && subject.id.startsWith("agent-")
    obligations: {audit: digest}
`)
	case k%globEvery == 3:
		// A namespace-wide rule: spend thresholds and tenant isolation.
		fmt.Fprintf(b, `  - name: spend-cap
    effect: deny
    actions: ["ns%02[1]d.*"]
    when: context.amount > %[2]d
  - name: large-spend
    effect: require_approval
    actions: ["ns%02[1]d.*"]
    when: context.amount > %[3]d && subject.properties.tier == "free"
    obligations: {approvers: ["finance"]}
  - name: same-tenant
    effect: allow
    actions: ["ns%02[1]d.*"]
    when: subject.properties.tenant == resource.properties.tenant
    obligations: {audit: full, rate_limit: {limit: %[4]d, per: 1m, key: subject.id}}
`, ns, 10_000+k*100, 1_000+k*10, 100+k)
	default:
		fmt.Fprintf(b, `  - name: no-secrets
    effect: deny
    actions: ["%[1]s"]
    when: resource.properties.classification == "secret" && !("admin" in subject.properties.roles)
    message: secret data needs an admin
  - name: role-%[2]d
    effect: allow
    actions: ["%[1]s"]
    when: >
      ("role-%[2]d" in subject.properties.roles || "admin" in subject.properties.roles) &&
      resource.properties.region == context.region
`, Action(ns, k), k%8)
	}
}

// Request returns a request that every generated bundle allows for
// action: an agent of tenant t1 with admin rights acting in its region, all
// of it sent by the caller.
func Request(action string) *api.CheckRequest {
	return &api.CheckRequest{
		Subject: api.Entity{Type: "agent", ID: "agent-42", Properties: map[string]any{
			"roles":  []any{"reader", "role-3", "admin"},
			"tenant": "t1",
			"tier":   "pro",
		}},
		Action: api.Action{Name: action},
		Resource: api.Entity{Type: "table", ID: "orders", Properties: map[string]any{
			"region":         "eu-west",
			"classification": "internal",
			"tenant":         "t1",
		}},
		Context: map[string]any{"region": "eu-west", "amount": 250.0},
	}
}

// Entities are the stored subject and resource of StoredRequest: what
// Request sends, kept in the entity store instead.
func Entities() []api.Entity {
	r := Request("")
	return []api.Entity{
		{Type: r.Subject.Type, ID: r.Subject.ID, Properties: r.Subject.Properties},
		{Type: r.Resource.Type, ID: r.Resource.ID, Properties: r.Resource.Properties},
	}
}

// StoredRequest is Request with the subject's and resource's properties
// left to the entity store (see Entities), and a forged role the stored
// ones override.
func StoredRequest(action string) *api.CheckRequest {
	r := Request(action)
	r.Subject.Properties = map[string]any{"roles": []any{"forged"}, "session": "s-1"}
	r.Resource.Properties = nil
	return r
}

// GenerateRules returns a bundle of nRules rules, rulesPerPolicy to a
// policy, as one YAML file: the large flat bundles that lint and the bundle
// limits are measured with. Rules spread over 20 namespaces of up to 1,000
// exact actions each; one in 50 is on a namespace glob and one in 1,000 on
// "*" (all three conditional), one in 7 exact rules has no condition, and
// conditions repeat every 500 rules, so some rules shadow or duplicate
// others as in a real bundle that grew by copy and paste.
func GenerateRules(nRules, rulesPerPolicy int) []api.File {
	if rulesPerPolicy < 1 {
		rulesPerPolicy = 1
	}
	effects := []string{"deny", "allow", "require_approval", "allow"}
	var b strings.Builder
	for g := range nRules {
		if g%rulesPerPolicy == 0 {
			if g > 0 {
				b.WriteString("---\n")
			}
			i := g / rulesPerPolicy
			fmt.Fprintf(&b, "kind: Policy\nname: r%05d\nlayer: %s\nrules:\n", i, Layers[i%len(Layers)])
		}
		ns, k := g%20, (g/20)%1000
		action, when := fmt.Sprintf("%q", Action(ns, k)), fmt.Sprintf("context.amount > %d", g%500)
		switch {
		case g%1000 == 999:
			action = `"*"`
		case g%50 == 49:
			action = fmt.Sprintf(`"ns%02d.*"`, ns)
		case g%7 == 0:
			when = ""
		}
		fmt.Fprintf(&b, "  - name: g%d\n    effect: %s\n    actions: [%s]\n", g, effects[g%len(effects)], action)
		if when != "" {
			fmt.Fprintf(&b, "    when: %s\n", when)
		}
	}
	return []api.File{{Name: "rules.yaml", Data: []byte(b.String())}}
}
