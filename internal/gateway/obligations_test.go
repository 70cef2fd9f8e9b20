package gateway_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/engine"
	"github.com/aibos/kernel/internal/node"
	"github.com/aibos/kernel/internal/node/nodetest"
)

// Equal-rate limits, the larger first: 6 per 2h and 3 per 1h allow the
// same rate, and strictest wins keeps the smaller limit (3 per 1h), on
// every path that merges obligations. Likewise budgets of 100 per 24h and
// 50 per 12h.
const tiePolicy = `
kind: Policy
name: tie
layer: platform
rules:
  - name: loose-rate
    effect: allow
    actions: ["tie.ping"]
    obligations: {rate_limit: {limit: 6, per: 2h, key: subject.id}}
  - name: tight-rate
    effect: allow
    actions: ["tie.ping"]
    obligations: {rate_limit: {limit: 3, per: 1h, key: subject.id}}
  - name: loose-budget
    effect: allow
    actions: ["tie.spend"]
    obligations: {budget: {limit: 100, per: 24h, key: subject.id}}
  - name: tight-budget
    effect: allow
    actions: ["tie.spend"]
    obligations: {budget: {limit: 50, per: 12h, key: subject.id}}
`

// The gateway's path: the decision carries the looser limit of an equal
// rate, the action's defaults the tighter.
const tieGatewayPolicy = `
kind: Policy
name: tie
layer: platform
rules:
  - name: loose-rate
    effect: allow
    actions: ["tie.ping"]
    obligations: {rate_limit: {limit: 6, per: 2h, key: subject.id}}
  - name: loose-budget
    effect: allow
    actions: ["tie.spend"]
    obligations: {budget: {limit: 100, per: 24h, key: subject.id}}
`

var (
	tightRate   = api.RateLimit{Limit: 3, Per: api.Duration(time.Hour), Key: "subject.id"}
	tightBudget = api.Budget{Limit: 50, Per: api.Duration(12 * time.Hour), Key: "subject.id"}
)

func TestStrictestWinsTieIsTheSameOnEveryPath(t *testing.T) {
	// The engine, merging the obligations of two rules that held.
	b, err := engine.Load([]api.File{{Name: "tie.yaml", Data: []byte(tiePolicy)}}, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for action, check := range map[string]func(*api.Obligations) bool{
		"tie.ping":  func(o *api.Obligations) bool { return o.RateLimit != nil && *o.RateLimit == tightRate },
		"tie.spend": func(o *api.Obligations) bool { return o.Budget != nil && *o.Budget == tightBudget },
	} {
		req := &api.CheckRequest{Subject: api.Entity{Type: "agent", ID: "a1"}, Action: api.Action{Name: action}}
		d := b.Decide(req, engine.NoEntities{}, time.Now())
		if d.Decision != api.Allow || d.Obligations == nil || !check(d.Obligations) {
			t.Errorf("engine, %s: decision %s, obligations %+v; want the smaller limit of the equal rate", action, d.Decision, d.Obligations)
		}
	}

	// The gateway, merging an action's defaults into the decision's:
	// enforced, so the smaller limit shows as the call it refuses.
	cfg := nodetest.Config(t, "n1")
	n := nodetest.Start(t, cfg)
	e := &env{t: t, nodes: []*node.Node{n}, c: nodetest.Client(t, n), tokens: map[string]string{}}
	ctx := context.Background()
	if _, err := e.c.Publish(ctx, []api.File{{Name: "tie.yaml", Data: []byte(tieGatewayPolicy)}}, client.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	be := newBackend(t)
	if _, err := e.c.PutOrchestra(ctx, api.Orchestra{
		Name: "tie", Description: "equal-rate limits", Backend: api.Backend{Type: api.BackendHTTP, URL: be.srv.URL},
		Actions: []api.ActionDef{
			{Name: "tie.ping", Risk: api.RiskRead, Obligations: &api.Obligations{RateLimit: &tightRate}},
			{Name: "tie.spend", Risk: api.RiskExternal, Cost: &api.CostModel{Field: "amount"}, Obligations: &api.Obligations{Budget: &tightBudget}},
		},
	}); err != nil {
		t.Fatal(err)
	}
	reg, err := e.c.RegisterAgent(ctx, api.AgentManifest{ID: "a1", Version: "1.0.0", Name: "a1", Tenant: "acme", Capabilities: []string{"tie.*"}})
	if err != nil {
		t.Fatal(err)
	}
	e.tokens["a1"] = reg.Token
	e.sync()

	none := client.InvokeOptions{}
	for i := range tightRate.Limit {
		if st, _, code := e.invoke(0, "a1", "tie.ping", `{}`, none, ""); st != http.StatusOK {
			t.Fatalf("gateway, ping %d: %d %s", i+1, st, code)
		}
	}
	if st, _, code := e.invoke(0, "a1", "tie.ping", `{}`, none, ""); st != http.StatusTooManyRequests || code != "rate_limited" {
		t.Errorf("gateway, ping %d: %d %s; want rate_limited by the smaller limit of the equal rate (%d per %v)",
			tightRate.Limit+1, st, code, tightRate.Limit, time.Duration(tightRate.Per))
	}
	if st, _, code := e.invoke(0, "a1", "tie.spend", `{"amount":60}`, none, ""); st != http.StatusTooManyRequests || code != "budget_exhausted" {
		t.Errorf("gateway, spend 60: %d %s; want budget_exhausted by the smaller limit of the equal rate (%g per %v)",
			st, code, tightBudget.Limit, time.Duration(tightBudget.Per))
	}
}
