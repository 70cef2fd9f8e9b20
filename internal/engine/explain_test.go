package engine

import (
	"reflect"
	"strings"
	"testing"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/policy"
)

const explainBundle = `
kind: Policy
name: platform-guard
layer: platform
rules:
  - name: kill-switch
    effect: deny
    actions: ["*"]
    when: context.kill == true
  - name: reads
    effect: allow
    actions: ["data.*"]
    when: action.name.endsWith(".read") || action.name == "data.export"
---
kind: Policy
name: region-approvals
layer: region
rules:
  - name: exports
    effect: require_approval
    actions: [data.export]
---
kind: Policy
name: tenant-data
layer: tenant
rules:
  - name: members
    effect: allow
    actions: ["data.*"]
    when: subject.properties.member == true
  - name: free-tier
    effect: deny
    actions: [data.delete]
    when: subject.properties.tier == "free"
`

// TestExplain checks the per-layer outcomes that explain reports, and that
// explaining does not change the decision.
func TestExplain(t *testing.T) {
	src, err := policy.Parse([]api.File{{Name: "explain.yaml", Data: []byte(explainBundle)}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Compile(src, Options{Version: 3})
	if err != nil {
		t.Fatal(err)
	}
	type outcome struct{ layer, outcome, rules string }
	tests := []struct {
		name     string
		action   string
		member   bool
		tier     string
		kill     bool
		decision api.Effect
		reason   string // substring of the first reason's rule or message
		want     []outcome
	}{
		{"allowed by two layers", "data.read", true, "pro", false, api.Allow, "reads", []outcome{
			{"platform", OutcomeAllow, "reads"},
			{"region", OutcomeAbstain, ""},
			{"tenant", OutcomeAllow, "members"},
			{"agent", OutcomeAbstain, ""},
		}},
		{"implicit deny by the platform", "data.write", true, "pro", false, api.Deny, "not permitted by layer platform", []outcome{
			{"platform", OutcomeImplicitDeny, ""},
			{"region", OutcomeAbstain, ""},
			{"tenant", OutcomeAllow, "members"},
			{"agent", OutcomeAbstain, ""},
		}},
		{"explicit deny in a lower layer, implicit deny above", "data.delete", false, "free", false, api.Deny, "free-tier", []outcome{
			{"platform", OutcomeImplicitDeny, ""},
			{"region", OutcomeAbstain, ""},
			{"tenant", OutcomeDeny, "free-tier"},
			{"agent", OutcomeAbstain, ""},
		}},
		{"require approval over allow", "data.export", true, "pro", false, api.RequireApproval, "exports", []outcome{
			{"platform", OutcomeAllow, "reads"},
			{"region", OutcomeRequireApproval, "exports"},
			{"tenant", OutcomeAllow, "members"},
			{"agent", OutcomeAbstain, ""},
		}},
		{"a deeper name is not the exact name", "data.export.read", true, "pro", false, api.Allow, "reads", []outcome{
			{"platform", OutcomeAllow, "reads"},
			{"region", OutcomeAbstain, ""},
			{"tenant", OutcomeAllow, "members"},
			{"agent", OutcomeAbstain, ""},
		}},
		{"kill switch on everything", "mail.send", true, "pro", true, api.Deny, "kill-switch", []outcome{
			{"platform", OutcomeDeny, "kill-switch"},
			{"region", OutcomeAbstain, ""},
			{"tenant", OutcomeAbstain, ""},
			{"agent", OutcomeAbstain, ""},
		}},
		{"nothing permits", "mail.send", true, "pro", false, api.Deny, "nothing permits", []outcome{
			{"platform", OutcomeAbstain, ""},
			{"region", OutcomeAbstain, ""},
			{"tenant", OutcomeAbstain, ""},
			{"agent", OutcomeAbstain, ""},
		}},
		{"deny and allow in one layer", "data.delete.read", false, "free", true, api.Deny, "kill-switch", []outcome{
			{"platform", OutcomeDeny, "kill-switch reads"},
			{"region", OutcomeAbstain, ""},
			{"tenant", OutcomeImplicitDeny, ""},
			{"agent", OutcomeAbstain, ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := &api.CheckRequest{
				Subject:  api.Entity{Type: "agent", ID: "a1", Properties: map[string]any{"member": tt.member, "tier": tt.tier}},
				Action:   api.Action{Name: tt.action},
				Resource: api.Entity{Type: "table", ID: "t1"},
				Context:  map[string]any{"kill": tt.kill},
			}
			plain := b.Decide(req, nil, corpusNow)
			if plain.Explain != nil {
				t.Errorf("explain reported without being asked for")
			}
			req.Explain = true
			d := b.Decide(req, nil, corpusNow)
			if d.Decision != tt.decision || plain.Decision != tt.decision {
				t.Fatalf("decision %s (plain %s), want %s: %s", d.Decision, plain.Decision, tt.decision, DescribeReasons(d.Reasons))
			}
			if !reflect.DeepEqual(d.Reasons, plain.Reasons) {
				t.Errorf("explain changed the reasons: %s vs %s", DescribeReasons(d.Reasons), DescribeReasons(plain.Reasons))
			}
			if r := d.Reasons[0]; !strings.Contains(r.Rule+" "+r.Message, tt.reason) {
				t.Errorf("first reason %+v, want one about %q", r, tt.reason)
			}
			if d.Version != 3 {
				t.Errorf("version %d, want 3", d.Version)
			}
			var got []outcome
			for _, o := range d.Explain {
				var rules []string
				for _, r := range o.Rules {
					rules = append(rules, r.Rule)
				}
				got = append(got, outcome{o.Layer, o.Outcome, strings.Join(rules, " ")})
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("explain:\n\tgot  %v\n\twant %v", got, tt.want)
			}
		})
	}
}
