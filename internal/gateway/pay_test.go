package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/node"
)

// The "pay" orchestra tests how obligations meet approvals and echoing
// backends: a shared tenant budget on plain spends and on payouts that
// need approval, and an action whose card number is redacted.
const payPolicy = `
kind: Policy
name: pay
layer: platform
rules:
  - name: spend
    effect: allow
    actions: ["pay.spend", "pay.slow"]
    obligations: {budget: {limit: 100, per: 24h, key: subject.properties.tenant}}
  - name: payouts-need-approval
    effect: require_approval
    actions: ["pay.payout"]
    obligations: {approvers: ["alice"], budget: {limit: 100, per: 24h, key: subject.properties.tenant}}
  - name: charges
    effect: allow
    actions: ["pay.charge", "pay.decline"]
  - name: refunds-need-approval
    effect: require_approval
    actions: ["pay.refund"]
    obligations: {approvers: ["alice"]}
`

// payBackend is a real HTTP backend that echoes what it receives: the
// result carries the input as sent and the card number inside a sentence,
// and pay.decline fails with the card number in its error body. pay.slow
// waits until release is closed, then fails (so its reservation settles
// to 0).
type payBackend struct {
	srv     *httptest.Server
	entered chan struct{}
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	calls   map[string]int
}

func newPayBackend(t *testing.T) *payBackend {
	b := &payBackend{entered: make(chan struct{}, 16), release: make(chan struct{}), calls: map[string]int{}}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var call api.ActionCall
		if err := json.NewDecoder(r.Body).Decode(&call); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		b.mu.Lock()
		b.calls[call.Action]++
		b.mu.Unlock()
		var in struct {
			Card json.RawMessage `json:"card_number"`
		}
		_ = json.Unmarshal(call.Input, &in)
		card := string(in.Card)
		if s, err := jsonString(in.Card); err == nil {
			card = s
		}
		switch call.Action {
		case "pay.slow":
			b.entered <- struct{}{}
			select {
			case <-b.release:
			case <-r.Context().Done():
			}
			http.Error(w, "upstream gave up", http.StatusServiceUnavailable)
			return
		case "pay.decline":
			http.Error(w, fmt.Sprintf("card %s declined; request was %s", card, call.Input), http.StatusPaymentRequired)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"ok":true,"action":%q,"note":%q,"echo":%s}`, call.Action, "charged card "+card, call.Input)
	}))
	t.Cleanup(b.srv.Close)
	t.Cleanup(b.unblock) // before Close: a failed test may leave pay.slow waiting
	return b
}

// unblock lets every pay.slow call answer.
func (b *payBackend) unblock() { b.once.Do(func() { close(b.release) }) }

func jsonString(raw json.RawMessage) (string, error) {
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err
}

func (b *payBackend) count(action string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls[action]
}

func payOrchestra(url string) api.Orchestra {
	return api.Orchestra{
		Name: "pay", Description: "payments", Backend: api.Backend{Type: api.BackendHTTP, URL: url},
		Actions: []api.ActionDef{
			{Name: "pay.spend", Risk: api.RiskExternal, Cost: &api.CostModel{Field: "amount"}},
			{Name: "pay.slow", Risk: api.RiskExternal, Cost: &api.CostModel{Field: "amount"}},
			{Name: "pay.payout", Risk: api.RiskExternal, Cost: &api.CostModel{Field: "amount"}},
			// As in the README: the action itself asks for full records
			// without the card number.
			{Name: "pay.charge", Risk: api.RiskExternal, Obligations: &api.Obligations{Audit: "full", Redact: []string{"input.card_number"}}},
			{Name: "pay.decline", Risk: api.RiskExternal, Obligations: &api.Obligations{Audit: "full", Redact: []string{"input.card_number"}}},
			{Name: "pay.refund", Risk: api.RiskExternal, Obligations: &api.Obligations{Audit: "full", Redact: []string{"input.card_number"}}},
		},
	}
}

// startPay starts one node with the gateway test setup plus the pay
// orchestra, and registers "cashier" (acme, pay.*).
func startPay(t *testing.T, mod func(*node.Config)) (*env, *payBackend) {
	t.Helper()
	e := startOne(t, mod)
	pb := newPayBackend(t)
	ctx := context.Background()
	if _, err := e.c.Publish(ctx, []api.File{
		{Name: "gateway.yaml", Data: []byte(gatewayPolicy)},
		{Name: "pay.yaml", Data: []byte(payPolicy)},
	}, client.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.PutOrchestra(ctx, payOrchestra(pb.srv.URL)); err != nil {
		t.Fatal(err)
	}
	reg, err := e.c.RegisterAgent(ctx, api.AgentManifest{ID: "cashier", Version: "1.0.0", Name: "cashier", Tenant: "acme", Capabilities: []string{"pay.*"}})
	if err != nil {
		t.Fatal(err)
	}
	e.tokens["cashier"] = reg.Token
	e.sync()
	return e, pb
}
