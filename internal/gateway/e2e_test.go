package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/audit"
	"github.com/aibos/kernel/internal/node"
	"github.com/aibos/kernel/internal/node/nodetest"
)

// End-to-end tests of the gateway: real nodes (Raft, HTTP, audit log on
// disk), a real HTTP backend on loopback, and the SDK as the agent.

const gatewayPolicy = `
kind: Policy
name: gateway
layer: platform
rules:
  - name: tenant-only
    effect: deny
    actions: ["crm.*"]
    when: subject.properties.tenant != "acme"
    message: only acme agents use the CRM
  - name: reads
    effect: allow
    actions: ["crm.read", "crm.slow", "crm.broken"]
    obligations: {audit: full, redact: ["result.ssn", "input.secret"]}
  - name: limited
    effect: allow
    actions: ["crm.ping"]
    obligations: {rate_limit: {limit: 5, per: 1h, key: subject.id}}
  - name: spend
    effect: allow
    actions: ["crm.spend"]
    obligations: {budget: {limit: 100, per: 24h, key: subject.properties.tenant}}
  - name: big-refunds-need-approval
    effect: require_approval
    actions: ["crm.refund"]
    when: context.input.amount > 100.0
    obligations: {approvers: ["alice"]}
  - name: refunds
    effect: allow
    actions: ["crm.refund"]
  - name: users-are-the-kernels
    effect: deny
    actions: ["crm.read"]
    when: has(context.user)
    message: only the kernel names a user
  - name: nobody-deletes
    effect: deny
    actions: ["crm.delete"]
    message: nobody deletes customers
  - name: kernel
    effect: allow
    actions: ["kernel.*"]
`

// backend is a real HTTP backend for the crm orchestra. It counts calls
// per action; crm.slow blocks until its request is cancelled (or 30 s).
type backend struct {
	srv     *httptest.Server
	mu      sync.Mutex
	calls   map[string]int
	slowIn  chan struct{}
	slowOut chan error
}

func newBackend(t *testing.T) *backend {
	b := &backend{calls: map[string]int{}, slowIn: make(chan struct{}, 16), slowOut: make(chan error, 16)}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var call api.ActionCall
		if err := json.NewDecoder(r.Body).Decode(&call); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		b.mu.Lock()
		b.calls[call.Action]++
		b.mu.Unlock()
		switch call.Action {
		case "crm.slow":
			b.slowIn <- struct{}{}
			select {
			case <-r.Context().Done():
				b.slowOut <- r.Context().Err()
				return
			case <-time.After(30 * time.Second):
				b.slowOut <- nil
			}
		case "crm.spend":
			var in struct{ Amount, Actual float64 }
			_ = json.Unmarshal(call.Input, &in)
			if in.Actual > 0 {
				w.Header().Set("Aibos-Cost", strconv.FormatFloat(in.Actual, 'g', -1, 64))
			}
		case "crm.broken":
			http.Error(w, "database on fire", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"ok":true,"action":%q,"agent":%q,"ssn":"123-45-6789","input":%s}`, call.Action, call.Agent, call.Input)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) count(action string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls[action]
}

func crmOrchestra(url string) api.Orchestra {
	obj := func(s string) json.RawMessage { return json.RawMessage(s) }
	return api.Orchestra{
		Name: "crm", Description: "customer records", Backend: api.Backend{Type: api.BackendHTTP, URL: url},
		Actions: []api.ActionDef{
			{Name: "crm.read", Risk: api.RiskRead, InputSchema: obj(`{"type":"object","properties":{"id":{"type":"string","minLength":1},"secret":{"type":"string"}},"required":["id"],"additionalProperties":false}`)},
			{Name: "crm.slow", Risk: api.RiskRead, Timeout: api.Duration(30 * time.Second)},
			{Name: "crm.ping", Risk: api.RiskRead},
			{Name: "crm.spend", Risk: api.RiskExternal, Cost: &api.CostModel{Field: "amount"}},
			{Name: "crm.refund", Risk: api.RiskWrite, InputSchema: obj(`{"type":"object","properties":{"amount":{"type":"number","minimum":0}},"required":["amount"]}`)},
			{Name: "crm.delete", Risk: api.RiskDestructive},
			{Name: "crm.broken", Risk: api.RiskWrite},
		},
	}
}

type env struct {
	t      *testing.T
	nodes  []*node.Node
	c      *client.Client
	be     *backend
	tokens map[string]string
	// people are clients authenticated as operators, by principal.
	mu     sync.Mutex
	people map[string]*client.Client // guarded by mu
}

// as is a client authenticated as the operator principal name (an admin,
// so that only the approval's own rules can refuse it).
func (e *env) as(name string) *client.Client {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if c, ok := e.people[name]; ok {
		return c
	}
	if e.people == nil {
		e.people = map[string]*client.Client{}
	}
	e.people[name] = nodetest.ClientAs(e.t, name, []string{"admin"}, e.nodes...)
	return e.people[name]
}

// setup publishes the policy, the crm orchestra and registers agents:
// "clerk" (acme, crm.*), "outsider" (globex, crm.*), "narrow" (acme,
// crm.read only), "warden" (acme, kernel.*).
func setup(t *testing.T, nodes []*node.Node) *env {
	t.Helper()
	e := &env{t: t, nodes: nodes, c: nodetest.Client(t, nodes...), be: newBackend(t), tokens: map[string]string{}}
	ctx := context.Background()
	if _, err := e.c.Publish(ctx, []api.File{{Name: "gateway.yaml", Data: []byte(gatewayPolicy)}}, client.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.PutOrchestra(ctx, crmOrchestra(e.be.srv.URL)); err != nil {
		t.Fatal(err)
	}
	for id, m := range map[string]api.AgentManifest{
		"clerk":    {Tenant: "acme", Capabilities: []string{"crm.*"}},
		"outsider": {Tenant: "globex", Capabilities: []string{"crm.*"}},
		"narrow":   {Tenant: "acme", Capabilities: []string{"crm.read"}},
		"warden":   {Tenant: "acme", Capabilities: []string{"kernel.*"}},
	} {
		m.ID, m.Version, m.Name = id, "1.0.0", id
		reg, err := e.c.RegisterAgent(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		e.tokens[id] = reg.Token
	}
	e.sync()
	return e
}

// sync waits until every node has applied what the leader has.
func (e *env) sync() {
	var rev uint64
	for _, n := range e.nodes {
		rev = max(rev, n.Store.AppliedRevision())
	}
	for _, n := range e.nodes {
		ctx, cancel := context.WithTimeout(context.Background(), nodetest.WaitLong)
		if err := n.Store.WaitForRevision(ctx, rev); err != nil {
			e.t.Fatal(err)
		}
		cancel()
	}
}

// invoke calls an action as agent on the node at index i and returns the
// status, the answer (if the kernel decided) and the error code.
func (e *env) invoke(i int, agent, action, input string, opts client.InvokeOptions, approval string) (int, api.InvokeResponse, string) {
	e.t.Helper()
	c, err := client.New([]string{e.nodes[i].URL()}, client.Options{RetryFor: -1, HTTPClient: &http.Client{Timeout: time.Minute}})
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := c.Invoke(context.Background(), e.tokens[agent], action, api.InvokeRequest{Input: json.RawMessage(input), ApprovalID: approval}, opts)
	if err == nil {
		if resp.Status == api.InvocationPendingApproval {
			return http.StatusAccepted, resp, ""
		}
		return http.StatusOK, resp, ""
	}
	var apiErr *client.Error
	if !errors.As(err, &apiErr) {
		e.t.Fatalf("invoke %s as %s: %v", action, agent, err)
	}
	return apiErr.Status, resp, apiErr.Code
}

func startOne(t *testing.T, mod func(*node.Config)) *env {
	cfg := nodetest.Config(t, "n1")
	if mod != nil {
		mod(&cfg)
	}
	return setup(t, []*node.Node{nodetest.Start(t, cfg)})
}

func TestInvokeAllowDenyAndRefusals(t *testing.T) {
	e := startOne(t, nil)

	st, resp, _ := e.invoke(0, "clerk", "crm.read", `{"id":"c1","secret":"hunter2"}`, client.InvokeOptions{}, "")
	if st != http.StatusOK || resp.Status != api.InvocationCompleted || resp.Decision != api.Allow {
		t.Fatalf("allowed read: %d %+v", st, resp)
	}
	var result map[string]any
	if err := json.Unmarshal(resp.Result, &result); err != nil || result["ok"] != true || result["agent"] != "clerk" {
		t.Fatalf("result %s: %v", resp.Result, err)
	}
	if result["ssn"] != "[redacted]" {
		t.Errorf("ssn not redacted from the result: %s", resp.Result)
	}
	if !strings.HasPrefix(resp.ArgsDigest, "sha256:") {
		t.Errorf("args digest %q", resp.ArgsDigest)
	}
	// The audit log has the invocation with its (redacted) arguments: the
	// policy asked for full records.
	recs, err := e.nodes[0].Audit.Query(audit.Filter{InvocationID: resp.InvocationID})
	if err != nil || len(recs) != 1 {
		t.Fatalf("audit records of %s: %v %v", resp.InvocationID, recs, err)
	}
	if r := recs[0]; r.Kind != "invocation" || r.Agent != "clerk" || r.Status != api.InvocationCompleted || r.ArgsDigest != resp.ArgsDigest ||
		!strings.Contains(string(r.Args), `"[redacted]"`) || strings.Contains(string(r.Args), "hunter2") || strings.Contains(string(r.Result), "123-45") {
		t.Errorf("audit record %+v (args %s, result %s)", r, r.Args, r.Result)
	}

	for _, tc := range []struct {
		name, agent, action, input string
		status                     int
		code                       string
	}{
		{"policy deny", "clerk", "crm.delete", `{}`, http.StatusForbidden, "denied"},
		{"other tenant", "outsider", "crm.read", `{"id":"c1"}`, http.StatusForbidden, "denied"},
		{"capability not declared", "narrow", "crm.ping", `{}`, http.StatusForbidden, "capability_not_declared"},
		{"schema: missing field", "clerk", "crm.read", `{}`, http.StatusUnprocessableEntity, "invalid_input"},
		{"schema: extra field", "clerk", "crm.read", `{"id":"c1","x":1}`, http.StatusUnprocessableEntity, "invalid_input"},
		{"schema: wrong type", "clerk", "crm.refund", `{"amount":"ten"}`, http.StatusUnprocessableEntity, "invalid_input"},
		{"input not an object", "clerk", "crm.ping", `[1]`, http.StatusUnprocessableEntity, "invalid_input"},
		{"unknown action", "clerk", "crm.nope", `{}`, http.StatusNotFound, "unknown_action"},
		{"cost field missing", "clerk", "crm.spend", `{}`, http.StatusUnprocessableEntity, "invalid_input"},
		{"backend failure", "clerk", "crm.broken", `{}`, http.StatusBadGateway, "backend_error"},
	} {
		st, resp, code := e.invoke(0, tc.agent, tc.action, tc.input, client.InvokeOptions{}, "")
		if st != tc.status || code != tc.code {
			t.Errorf("%s: got %d %s, want %d %s (%+v)", tc.name, st, code, tc.status, tc.code, resp)
		}
	}
	if n := e.be.count("crm.delete"); n != 0 {
		t.Errorf("a denied action reached the backend %d times", n)
	}

	// A bad credential.
	e.tokens["ghost"] = "aibos_not-a-token"
	if st, _, code := e.invoke(0, "ghost", "crm.read", `{"id":"c1"}`, client.InvokeOptions{}, ""); st != http.StatusUnauthorized || code != "unauthenticated" {
		t.Errorf("bad token: %d %s", st, code)
	}
}

// The subject is the registered agent: a caller cannot claim another
// identity or tenant, neither in the body nor as an entity.
func TestForgedSubjectIgnored(t *testing.T) {
	e := startOne(t, nil)
	ctx := context.Background()
	// Overwrite the outsider's entity properties through the entity API:
	// the registry's properties win.
	if _, err := e.c.PutEntities(ctx, []api.Entity{{Type: "agent", ID: "outsider", Properties: map[string]any{"tenant": "acme"}}}); err != nil {
		t.Fatal(err)
	}
	e.sync()
	// Claims in the context do not change the subject either.
	st, resp, code := e.invoke(0, "outsider", "crm.read", `{"id":"c1"}`, client.InvokeOptions{}, "")
	if st != http.StatusForbidden || code != "denied" || len(resp.Reasons) == 0 || resp.Reasons[0].Rule != "tenant-only" {
		t.Fatalf("outsider with forged tenant: %d %s %+v", st, code, resp)
	}
	// A body naming a subject is refused, not obeyed.
	req, _ := http.NewRequest(http.MethodPost, e.nodes[0].URL()+"/v1/actions/crm.read/invoke",
		strings.NewReader(`{"subject":{"type":"agent","id":"clerk","properties":{"tenant":"acme"}},"input":{"id":"c1"}}`))
	req.Header.Set("Authorization", "Bearer "+e.tokens["outsider"])
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "subject") {
		t.Fatalf("body with a subject: %d %s", res.StatusCode, body)
	}
	if n := e.be.count("crm.read"); n != 0 {
		t.Fatalf("backend called %d times", n)
	}
}

// TestForgedUserIgnored: context.user is the kernel's (a user it verified,
// see Call.User): a caller's own is dropped before the decision.
func TestForgedUserIgnored(t *testing.T) {
	e := startOne(t, nil)
	c, err := client.New([]string{e.nodes[0].URL()}, client.Options{RetryFor: -1})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Invoke(context.Background(), e.tokens["clerk"], "crm.read", api.InvokeRequest{Input: json.RawMessage(`{"id":"c1"}`),
		Context: map[string]any{"user": map[string]any{"id": "ceo"}, "note": "kept"}}, client.InvokeOptions{})
	if err != nil || resp.Status != api.InvocationCompleted {
		t.Fatalf("invoke with a forged context.user: %+v %v", resp, err)
	}
}

func TestApprovals(t *testing.T) {
	e := startOne(t, func(c *node.Config) { c.Gateway.ApprovalTTL = time.Minute })
	ctx := context.Background()
	hold := func(amount int) api.InvokeResponse {
		t.Helper()
		st, resp, code := e.invoke(0, "clerk", "crm.refund", fmt.Sprintf(`{"amount":%d}`, amount), client.InvokeOptions{}, "")
		if st != http.StatusAccepted || resp.ApprovalID == "" || resp.Decision != api.RequireApproval {
			t.Fatalf("refund of %d: %d %s %+v", amount, st, code, resp)
		}
		return resp
	}

	t.Run("approve then run once", func(t *testing.T) {
		h := hold(500)
		if n := e.be.count("crm.refund"); n != 0 {
			t.Fatalf("held call reached the backend")
		}
		// Not approved yet.
		if st, _, code := e.invoke(0, "clerk", "crm.refund", `{"amount":500}`, client.InvokeOptions{}, h.ApprovalID); st != http.StatusConflict || code != "approval_invalid" {
			t.Fatalf("redeem before approval: %d %s", st, code)
		}
		// Only a listed approver may decide; an agent credential never.
		if _, err := e.as("mallory").Approve(ctx, h.ApprovalID, "mallory", "sure"); !isStatus(err, http.StatusForbidden) {
			t.Fatalf("approval by a non-approver: %v", err)
		}
		a, err := e.as("alice").Approve(ctx, h.ApprovalID, "alice", "customer called")
		if err != nil || a.State != api.ApprovalApproved || a.DecidedBy != "alice" {
			t.Fatalf("approve: %+v %v", a, err)
		}
		// Key order and spacing do not change the digest (RFC 8785).
		st, resp, code := e.invoke(0, "clerk", "crm.refund", `{ "amount" : 500.0 }`, client.InvokeOptions{}, h.ApprovalID)
		if st != http.StatusOK || resp.Status != api.InvocationCompleted {
			t.Fatalf("redeem: %d %s %+v", st, code, resp)
		}
		if st, _, code := e.invoke(0, "clerk", "crm.refund", `{"amount":500}`, client.InvokeOptions{}, h.ApprovalID); st != http.StatusConflict || code != "approval_invalid" {
			t.Fatalf("second redeem: %d %s", st, code)
		}
		if n := e.be.count("crm.refund"); n != 1 {
			t.Fatalf("backend ran the approved refund %d times, want 1", n)
		}
		got, err := e.c.Approval(ctx, h.ApprovalID, 0)
		if err != nil || got.State != api.ApprovalConsumed || got.ConsumedBy != resp.InvocationID {
			t.Fatalf("approval after redeem: %+v %v", got, err)
		}
	})

	t.Run("deny", func(t *testing.T) {
		h := hold(600)
		if _, err := e.as("alice").DenyApproval(ctx, h.ApprovalID, "alice", "no"); err != nil {
			t.Fatal(err)
		}
		if st, _, code := e.invoke(0, "clerk", "crm.refund", `{"amount":600}`, client.InvokeOptions{}, h.ApprovalID); st != http.StatusConflict || code != "approval_invalid" {
			t.Fatalf("redeem of a denied approval: %d %s", st, code)
		}
	})

	t.Run("arguments changed after approval", func(t *testing.T) {
		h := hold(700)
		if _, err := e.as("alice").Approve(ctx, h.ApprovalID, "alice", "ok"); err != nil {
			t.Fatal(err)
		}
		if st, _, code := e.invoke(0, "clerk", "crm.refund", `{"amount":7000}`, client.InvokeOptions{}, h.ApprovalID); st != http.StatusConflict || code != "approval_voided" {
			t.Fatalf("redeem with other arguments: %d %s", st, code)
		}
		// Voided for good: the original arguments no longer redeem it.
		if st, _, code := e.invoke(0, "clerk", "crm.refund", `{"amount":700}`, client.InvokeOptions{}, h.ApprovalID); st != http.StatusConflict {
			t.Fatalf("redeem after void: %d %s", st, code)
		}
		if n := e.be.count("crm.refund"); n != 1 {
			t.Fatalf("backend ran %d refunds, want only the first subtest's", n)
		}
	})

	t.Run("wait for a decision", func(t *testing.T) {
		h := hold(800)
		go func() {
			time.Sleep(100 * time.Millisecond)
			e.as("alice").Approve(ctx, h.ApprovalID, "alice", "later")
		}()
		a, err := e.c.Approval(ctx, h.ApprovalID, 30*time.Second)
		if err != nil || a.State != api.ApprovalApproved {
			t.Fatalf("waited approval: %+v %v", a, err)
		}
	})
}

func TestApprovalExpires(t *testing.T) {
	e := startOne(t, func(c *node.Config) { c.Gateway.ApprovalTTL = 300 * time.Millisecond })
	ctx := context.Background()
	st, h, _ := e.invoke(0, "clerk", "crm.refund", `{"amount":900}`, client.InvokeOptions{}, "")
	if st != http.StatusAccepted {
		t.Fatalf("hold: %d", st)
	}
	// No answer means no: wait until the approval shows expired.
	deadline := time.Now().Add(nodetest.WaitLong)
	for {
		a, err := e.c.Approval(ctx, h.ApprovalID, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if a.State == api.ApprovalExpired {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("approval still %s", a.State)
		}
	}
	if _, err := e.as("alice").Approve(ctx, h.ApprovalID, "alice", "too late"); !isStatus(err, http.StatusGone) {
		t.Fatalf("approving an expired approval: %v", err)
	}
	if st, _, code := e.invoke(0, "clerk", "crm.refund", `{"amount":900}`, client.InvokeOptions{}, h.ApprovalID); st != http.StatusGone || code != "approval_expired" {
		t.Fatalf("redeem of an expired approval: %d %s", st, code)
	}
}

func TestIdempotentRetry(t *testing.T) {
	e := startOne(t, nil)
	key := client.InvokeOptions{IdempotencyKey: "refund-42"}
	st1, r1, _ := e.invoke(0, "clerk", "crm.refund", `{"amount":10}`, key, "")
	st2, r2, _ := e.invoke(0, "clerk", "crm.refund", `{"amount":10}`, key, "")
	if st1 != http.StatusOK || st2 != http.StatusOK || !r2.Replayed || r2.InvocationID != r1.InvocationID || string(r2.Result) != string(r1.Result) {
		t.Fatalf("retry: %d %+v / %d %+v", st1, r1, st2, r2)
	}
	if n := e.be.count("crm.refund"); n != 1 {
		t.Fatalf("backend called %d times for one idempotency key", n)
	}
	if st, _, code := e.invoke(0, "clerk", "crm.refund", `{"amount":11}`, key, ""); st != http.StatusUnprocessableEntity || code != "idempotency_key_reused" {
		t.Fatalf("key reused with other arguments: %d %s", st, code)
	}
	// Concurrent retries of one key: one runs, the others replay or are
	// told it is still running.
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.invoke(0, "clerk", "crm.refund", `{"amount":12}`, client.InvokeOptions{IdempotencyKey: "refund-43"}, "")
		}()
	}
	wg.Wait()
	if n := e.be.count("crm.refund"); n != 2 {
		t.Fatalf("backend called %d times, want 2", n)
	}
}

func TestBudgetAndRateLimit(t *testing.T) {
	e := startOne(t, nil)
	none := client.InvokeOptions{}
	// Budget 100 per day per tenant, cost from input.amount.
	if st, r, code := e.invoke(0, "clerk", "crm.spend", `{"amount":60}`, none, ""); st != http.StatusOK || r.Cost != 60 || len(r.Warnings) != 0 {
		t.Fatalf("spend 60: %d %s %+v", st, code, r)
	}
	// Estimated 25, actual 30 (reported by the backend): 90 used, past the
	// 80% soft threshold.
	if st, r, code := e.invoke(0, "clerk", "crm.spend", `{"amount":25,"actual":30}`, none, ""); st != http.StatusOK || r.Cost != 30 || len(r.Warnings) != 1 {
		t.Fatalf("spend 25 (30): %d %s %+v", st, code, r)
	}
	if st, r, code := e.invoke(0, "clerk", "crm.spend", `{"amount":20}`, none, ""); st != http.StatusTooManyRequests || code != "budget_exhausted" {
		t.Fatalf("spend past the budget: %d %s %+v", st, code, r)
	}
	if st, _, _ := e.invoke(0, "clerk", "crm.spend", `{"amount":10}`, none, ""); st != http.StatusOK {
		t.Fatalf("spend within what is left: %d", st)
	}
	if n := e.be.count("crm.spend"); n != 3 {
		t.Fatalf("backend called %d times, want 3", n)
	}
	// Rate limit 5 per hour per agent.
	for i := range 5 {
		if st, _, code := e.invoke(0, "clerk", "crm.ping", `{}`, none, ""); st != http.StatusOK {
			t.Fatalf("ping %d: %d %s", i, st, code)
		}
	}
	if st, _, code := e.invoke(0, "clerk", "crm.ping", `{}`, none, ""); st != http.StatusTooManyRequests || code != "rate_limited" {
		t.Fatalf("6th ping: %d %s", st, code)
	}
	// Per agent: another acme agent with the capability still has its own.
	stats, err := e.c.AgentStats(context.Background(), "clerk")
	if err != nil {
		t.Fatal(err)
	}
	if s := stats.Actions["crm.ping"]; s.Invocations != 6 || s.Allowed != 5 || s.Denied != 1 {
		t.Errorf("stats of crm.ping: %+v", s)
	}
	if s := stats.Actions["crm.spend"]; s.BudgetUsed != 100 {
		t.Errorf("budget used by crm.spend: %+v", s)
	}
	// Budgets survive a restart of the node (local counters are on disk).
	n := e.nodes[0]
	cfg := n.Config()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	e.nodes[0] = nodetest.Start(t, cfg)
	if st, _, code := e.invoke(0, "clerk", "crm.spend", `{"amount":1}`, none, ""); st != http.StatusTooManyRequests || code != "budget_exhausted" {
		t.Fatalf("spend after restart: %d %s", st, code)
	}
}

func TestKillSwitch(t *testing.T) {
	e := startOne(t, nil)
	ctx := context.Background()
	// A slow invocation is running when the agent is killed.
	type res struct {
		st   int
		resp api.InvokeResponse
		code string
	}
	done := make(chan res, 1)
	go func() {
		st, resp, code := e.invoke(0, "clerk", "crm.slow", `{}`, client.InvokeOptions{}, "")
		done <- res{st, resp, code}
	}()
	<-e.be.slowIn
	// And an approval is pending.
	_, held, _ := e.invoke(0, "clerk", "crm.refund", `{"amount":1000}`, client.InvokeOptions{}, "")

	k, err := e.as("oncall").Kill(ctx, api.KillRequest{Scope: api.KillAgent, Target: "clerk", Reason: "runaway loop", By: "oncall"})
	if err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.st != http.StatusConflict || r.code != "cancelled" || r.resp.Status != api.InvocationCancelled {
		t.Fatalf("in-flight invocation: %+v", r)
	}
	if err := <-e.be.slowOut; err == nil {
		t.Fatal("the backend call was not cancelled")
	}
	if st, _, code := e.invoke(0, "clerk", "crm.read", `{"id":"c1"}`, client.InvokeOptions{}, ""); st != http.StatusForbidden || code != "kill_switch" {
		t.Fatalf("new invocation under a kill switch: %d %s", st, code)
	}
	a, err := e.c.Approval(ctx, held.ApprovalID, 0)
	if err != nil || a.State != api.ApprovalVoided {
		t.Fatalf("pending approval after the kill switch: %+v %v", a, err)
	}
	// Other agents are not affected.
	if st, _, code := e.invoke(0, "narrow", "crm.read", `{"id":"c1"}`, client.InvokeOptions{}, ""); st != http.StatusOK {
		t.Fatalf("another agent: %d %s", st, code)
	}
	// Lifted explicitly.
	if _, err := e.as("oncall").LiftKill(ctx, k.ID, "oncall", "fixed"); err != nil {
		t.Fatal(err)
	}
	e.sync()
	if st, _, code := e.invoke(0, "clerk", "crm.read", `{"id":"c1"}`, client.InvokeOptions{}, ""); st != http.StatusOK {
		t.Fatalf("after lift: %d %s", st, code)
	}
	// The kill switch and its lifting are in the audit log.
	recs, err := e.nodes[0].Audit.Query(audit.Filter{Kind: "kill"})
	if err != nil || len(recs) != 2 {
		t.Fatalf("kill records: %+v %v", recs, err)
	}
}

func TestQuarantineBuiltin(t *testing.T) {
	e := startOne(t, nil)
	st, resp, code := e.invoke(0, "warden", "kernel.agent.quarantine", `{"agent":"clerk","reason":"exfiltration suspected"}`, client.InvokeOptions{}, "")
	if st != http.StatusOK {
		t.Fatalf("quarantine: %d %s %+v", st, code, resp)
	}
	e.sync()
	if st, _, code := e.invoke(0, "clerk", "crm.read", `{"id":"c1"}`, client.InvokeOptions{}, ""); st != http.StatusForbidden || code != "kill_switch" {
		t.Fatalf("quarantined agent: %d %s", st, code)
	}
	st, resp, _ = e.invoke(0, "warden", "kernel.audit.query", `{"agent":"clerk","limit":5}`, client.InvokeOptions{}, "")
	if st != http.StatusOK || !strings.Contains(string(resp.Result), "kill_switch") {
		t.Fatalf("audit query: %d %s", st, resp.Result)
	}
}

func isStatus(err error, status int) bool {
	var apiErr *client.Error
	return errors.As(err, &apiErr) && apiErr.Status == status
}

// An agent cannot pile up approvals: past the cap, holds are refused.
func TestPendingApprovalsCapped(t *testing.T) {
	e := startOne(t, func(c *node.Config) { c.Gateway.MaxPendingApprovals = 2 })
	for i := range 2 {
		if st, _, code := e.invoke(0, "clerk", "crm.refund", fmt.Sprintf(`{"amount":%d}`, 200+i), client.InvokeOptions{}, ""); st != http.StatusAccepted {
			t.Fatalf("hold %d: %d %s", i, st, code)
		}
	}
	if st, _, code := e.invoke(0, "clerk", "crm.refund", `{"amount":300}`, client.InvokeOptions{}, ""); st != http.StatusTooManyRequests || code != "too_many_pending_approvals" {
		t.Fatalf("third hold: %d %s", st, code)
	}
	if n := len(mustApprovals(t, e)); n != 2 {
		t.Fatalf("%d approvals, want 2", n)
	}
}

func mustApprovals(t *testing.T, e *env) []api.Approval {
	t.Helper()
	as, err := e.c.Approvals(context.Background(), client.ApprovalFilter{State: api.ApprovalPending})
	if err != nil {
		t.Fatal(err)
	}
	return as
}
