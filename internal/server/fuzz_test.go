package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/node"
	"github.com/aibos/kernel/internal/node/nodetest"
)

// fuzzEndpoint is an endpoint that decodes a request body. agent: the
// request carries the fuzz agent's bearer token; bogus: a token that
// names no agent. In paths and bodies, $APPROVAL and $KILL stand for a
// pending approval and an active kill switch of the node under test.
type fuzzEndpoint struct {
	method, path string
	agent, bogus bool
}

// fuzzEndpoints are every endpoint that decodes a request body.
var fuzzEndpoints = []fuzzEndpoint{
	{method: "POST", path: "/v1/check"},
	{method: "POST", path: "/v1/check/batch"},
	{method: "POST", path: "/access/v1/evaluation"},
	{method: "POST", path: "/access/v1/evaluations"},
	{method: "POST", path: "/access/v1/search/subject"},
	{method: "POST", path: "/access/v1/search/resource"},
	{method: "POST", path: "/access/v1/search/action"},
	{method: "POST", path: "/access/v1/requests"},
	{method: "PUT", path: "/v1/policies"},
	{method: "POST", path: "/v1/policies/rollback"},
	{method: "PUT", path: "/v1/entities"},
	{method: "POST", path: "/v1/cluster/join"},
	{method: "POST", path: "/v1/cluster/remove"},
	{method: "POST", path: "/v1/rollouts"},
	{method: "POST", path: "/v1/rollouts/abort"},
	{method: "POST", path: "/v1/rollouts/promote"},
	{method: "POST", path: "/v1/policies/simulate?since=1h"},
	{method: "POST", path: "/v1/agents"},
	{method: "PATCH", path: "/v1/agents/a1"},
	{method: "POST", path: "/v1/agents/a1/retire"},
	{method: "POST", path: "/v1/agents/a1/credentials/rotate"},
	// The agent gateway.
	{method: "POST", path: "/v1/actions/crm.read/invoke", agent: true},
	{method: "POST", path: "/v1/actions/crm.refund/invoke", agent: true},
	{method: "POST", path: "/v1/actions/kernel.audit.query/invoke", agent: true},
	{method: "POST", path: "/v1/actions/crm.read/invoke"},
	{method: "POST", path: "/v1/actions/crm.refund/invoke", bogus: true},
	{method: "PUT", path: "/v1/orchestras/fuzz"},
	{method: "PUT", path: "/v1/orchestras/crm"},
	{method: "POST", path: "/v1/approvals/$APPROVAL/approve"},
	{method: "POST", path: "/v1/approvals/$APPROVAL/deny"},
	{method: "POST", path: "/v1/approvals/$APPROVAL/approve", agent: true},
	{method: "POST", path: "/v1/kill"},
	{method: "POST", path: "/v1/kill", agent: true},
	{method: "POST", path: "/v1/kill/$KILL/lift"},
	{method: "POST", path: "/v1/kill/$KILL/lift", agent: true},
}

// fuzzGatewayPolicy governs the fuzz agent's actions; it is published on
// top of whatever the fuzzed policy endpoints publish, so it is only the
// starting point.
const fuzzGatewayPolicy = `kind: Policy
name: fuzz-gateway
layer: platform
rules:
  - name: reads
    effect: allow
    actions: ["crm.read", "kernel.audit.*"]
    obligations: {audit: full, redact: ["input.secret", "result.ssn"]}
  - name: big-refunds
    effect: require_approval
    actions: ["crm.refund"]
    when: context.input.amount > 100.0
  - name: refunds
    effect: allow
    actions: ["crm.refund"]
`

// fuzzGateway is the gateway state a fuzz run works against: an agent, a
// backend, a pending approval and an active kill switch (replaced when a
// fuzzed call decides or lifts them).
type fuzzGateway struct {
	n        *node.Node
	token    string
	approval string
	kill     string
	crm      api.Orchestra
}

func setupFuzzGateway(f *testing.F, n *node.Node) *fuzzGateway {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"ok":true,"ssn":"123-45-6789"}`)
	}))
	f.Cleanup(be.Close)
	c, err := client.New([]string{n.URL()}, client.Options{Token: nodetest.Token(n)})
	if err != nil {
		f.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.Publish(ctx, []api.File{{Name: "gw.yaml", Data: []byte(fuzzGatewayPolicy)}}, client.PublishOptions{}); err != nil {
		f.Fatal(err)
	}
	crm := api.Orchestra{Name: "crm", Backend: api.Backend{Type: api.BackendHTTP, URL: be.URL}, Actions: []api.ActionDef{
		{Name: "crm.read", Risk: api.RiskRead, InputSchema: json.RawMessage(`{"type":"object","properties":{"id":{"type":"string"},"secret":{"type":"string"}}}`)},
		{Name: "crm.refund", Risk: api.RiskWrite, Cost: &api.CostModel{Fixed: 1}},
	}}
	if _, err := c.PutOrchestra(ctx, crm); err != nil {
		f.Fatal(err)
	}
	reg, err := c.RegisterAgent(ctx, api.AgentManifest{ID: "fz", Version: "1", Tenant: "acme", Capabilities: []string{"crm.*", "kernel.audit.*"}})
	if err != nil {
		f.Fatal(err)
	}
	g := &fuzzGateway{n: n, token: reg.Token, crm: crm}
	if err := g.refresh(); err != nil {
		f.Fatal(err)
	}
	return g
}

// refresh makes sure there is a pending approval and an active kill switch
// (one that stops nothing the fuzzer invokes), and lifts every other kill
// switch a fuzzed call set, so later calls are not all refused.
func (g *fuzzGateway) refresh() error {
	ctx := context.Background()
	// A fuzzed PUT /v1/orchestras/crm may have replaced the backend or the
	// actions: put them back.
	if o, ok := g.n.Store.Orchestra("crm"); !ok || !sameOrchestra(o, g.crm) {
		if _, err := g.n.Store.PutOrchestra(ctx, g.crm, time.Now()); err != nil {
			return err
		}
	}
	for _, k := range g.n.Store.Kills() {
		if k.Active && k.ID != g.kill {
			if _, err := g.n.Store.LiftKill(ctx, k.ID, "fuzz", "", time.Now()); err != nil {
				return err
			}
		}
	}
	if k, ok := g.n.Store.KillSwitch(g.kill); !ok || !k.Active {
		k, err := g.n.Store.SetKill(ctx, api.KillSwitch{ID: fmt.Sprintf("kill_fz%d", time.Now().UnixNano()), Scope: api.KillAction,
			Target: "nothing.*", Reason: "fuzz", By: "fuzz", CreatedAt: time.Now()})
		if err != nil {
			return err
		}
		g.kill = k.ID
	}
	if a, ok := g.n.Store.Approval(g.approval); !ok || a.State != api.ApprovalPending {
		req := httptest.NewRequest("POST", "/v1/actions/crm.refund/invoke", strings.NewReader(`{"input":{"amount":500}}`))
		req.Header.Set("Authorization", "Bearer "+g.token)
		rec := httptest.NewRecorder()
		g.n.Server.ServeHTTP(rec, req)
		var resp api.InvokeResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || rec.Code != http.StatusAccepted || resp.ApprovalID == "" {
			// The fuzzed policy endpoints may have published a bundle
			// that no longer holds refunds: put ours back.
			if err := g.republish(); err != nil {
				return err
			}
			return fmt.Errorf("no approval (%d %s); policy republished, retry", rec.Code, rec.Body)
		}
		g.approval = resp.ApprovalID
	}
	return nil
}

func sameOrchestra(a, b api.Orchestra) bool {
	ja, _ := json.Marshal([]any{a.Backend, a.Actions, a.Description})
	jb, _ := json.Marshal([]any{b.Backend, b.Actions, b.Description})
	return bytes.Equal(ja, jb)
}

func (g *fuzzGateway) republish() error {
	req := httptest.NewRequest("PUT", "/v1/policies", strings.NewReader(fuzzGatewayPolicy))
	req.Header.Set("Content-Type", "application/yaml")
	rec := httptest.NewRecorder()
	g.n.Server.ServeHTTP(rec, req)
	if rec.Code >= 300 {
		return fmt.Errorf("republish: %d %s", rec.Code, rec.Body)
	}
	return nil
}

// snapshot is the gateway's replicated state, to check that a refused
// call changed nothing.
func (g *fuzzGateway) snapshot(approvals bool) string {
	v := []any{g.n.Store.Orchestras(), g.n.Store.Kills()}
	if approvals {
		v = append(v, g.n.Store.Approvals())
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// FuzzAPIBodies sends arbitrary bodies to every decoding endpoint of a real
// node. The node must never fail with a 5xx or a panic, and every answer
// must be JSON; every error must be {error: {code, message}}.
func FuzzAPIBodies(f *testing.F) {
	seeds := []string{
		`{"subject":{"type":"agent","id":"a1"},"action":{"name":"data.query"},"resource":{"type":"table","id":"t1","properties":{"region":"eu"}},"context":{"region":"eu"}}`,
		`{"checks":[{"action":{"name":"data.query"}},{"action":{"name":"x"},"min_revision":1}]}`,
		`{"subject":{"type":"user","id":"u"},"action":{"name":"can_read_todos"},"resource":{"type":"todo","id":"1"}}`,
		`{"subject":{"type":"user","id":"u"},"resource":{"type":"todo","id":"1"},"evaluations":[{"action":{"name":"a"}}],"options":{"evaluations_semantic":"deny_on_first_deny"}}`,
		residencyBundle,
		`{"to":1}`,
		`{"entities":[{"type":"agent","id":"a1","properties":{"roles":["admin"]}}]}`,
		`{"id":"n9","raft":"127.0.0.1:1","http":"127.0.0.1:2","voter":false}`,
		`{"id":"n9"}`,
		`{"action":{"name":"data.query"},"min_revision":18446744073709551615}`,
		`{"candidate":1,"percent":10,"abort":{"max_flip_rate":0.5,"min_samples":10}}`,
		`{"reason":"by hand"}`,
		`{"id":"a1","version":"1","tenant":"acme","capabilities":["data.*"],"labels":{"team":"x"},"skills":[{"id":"s"}],"endpoints":[{"url":"https://a.example","protocol":"a2a"}]}`,
		`{"description":"d","labels":{}}`,
	}
	for i, s := range seeds {
		f.Add(uint8(i), []byte(s))
		f.Add(uint8(i+1), []byte(s))
	}
	gatewaySeeds := map[string][]string{
		"/invoke": {
			`{"input":{"id":"c1","secret":"s"}}`,
			`{"input":{"amount":500},"approval_id":"$APPROVAL"}`,
			`{"input":{"amount":5},"context":{"region":"eu","input":1},"resource":{"type":"customer","id":"c1","properties":{"tier":"gold"}}}`,
			`{"input":{"agent":"fz","limit":3,"kind":"invocation"}}`,
			`{"input":[1],"subject":{"type":"agent","id":"root"}}`,
			`{"input":{"amount":1e999}}`,
		},
		"/v1/orchestras/": {
			`{"name":"fuzz","description":"d","backend":{"type":"http","url":"http://127.0.0.1:1/x"},"actions":[{"name":"fuzz.a","risk":"read","input_schema":{"type":"object","properties":{"n":{"type":"number","minimum":0}}},"timeout":"5s","cost":{"fixed":1,"field":"n"},"obligations":{"audit":"full","redact":["input.n"]},"path":"/a"}]}`,
			`{"backend":{"type":"builtin"},"actions":[{"name":"crm.read","risk":"read"}]}`,
			`{"name":"crm","backend":{"type":"http","url":"ftp://x"},"actions":[]}`,
		},
		"/approv": {`{"approver":"alice","reason":"ok"}`, `{"approver":"fz"}`, `{"approver":"agent:fz","reason":"self"}`, `{"approver":" "}`},
		"/v1/kill": {
			`{"scope":"action","target":"fuzz.*","reason":"r","by":"oncall"}`,
			`{"scope":"global","reason":"r","by":"oncall"}`,
			`{"scope":"tenant","target":"acme","reason":"r","by":"oncall"}`,
			`{"scope":"agent","target":"fz","reason":"","by":"oncall"}`,
			`{"by":"oncall","reason":"done"}`,
			`{"by":""}`,
		},
	}
	for i, ep := range fuzzEndpoints {
		for prefix, bodies := range gatewaySeeds {
			if strings.Contains(ep.path, prefix) {
				for _, b := range bodies {
					f.Add(uint8(i), []byte(b))
				}
			}
		}
	}
	n, _ := startNode(f, func(c *node.Config) { c.MinRevisionWait = 1 })
	g := setupFuzzGateway(f, n)
	f.Fuzz(func(t *testing.T, sel uint8, body []byte) {
		ep := fuzzEndpoints[int(sel)%len(fuzzEndpoints)]
		gateway := strings.HasPrefix(ep.path, "/v1/actions/") || strings.HasPrefix(ep.path, "/v1/orchestras/") ||
			strings.HasPrefix(ep.path, "/v1/approvals/") || strings.HasPrefix(ep.path, "/v1/kill")
		if gateway {
			if err := g.refresh(); err != nil {
				if err = g.refresh(); err != nil {
					t.Fatalf("gateway state: %v", err)
				}
			}
			r := strings.NewReplacer("$APPROVAL", g.approval, "$KILL", g.kill)
			ep.path = r.Replace(ep.path)
			body = []byte(r.Replace(string(body)))
		}
		invoke := strings.HasSuffix(ep.path, "/invoke")
		if ep.path == "/v1/cluster/join" {
			// Joining a real voter at a dead address would cost the node its
			// quorum; join bodies are decoded but must not reach Raft.
			var probe map[string]any
			if json.Unmarshal(body, &probe) == nil {
				if v, ok := probe["voter"].(bool); !ok || v {
					return
				}
			}
		}
		req := httptest.NewRequest(ep.method, ep.path, bytes.NewReader(body))
		switch {
		case ep.agent:
			req.Header.Set("Authorization", "Bearer "+g.token)
		case ep.bogus:
			req.Header.Set("Authorization", "Bearer aibos_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
		case !invoke:
			// Operator endpoints: the root token, so bodies reach the
			// handlers.
			req.Header.Set("Authorization", "Bearer "+nodetest.Token(n))
		}
		var before string
		if gateway {
			// An agent's call may void the approval it names (documented):
			// only refused operator calls leave the approvals as they were.
			before = g.snapshot(!(invoke && ep.agent))
		}
		rec := httptest.NewRecorder()
		n.Server.ServeHTTP(rec, req)
		// 503: no leader or counters unavailable. 502/504 (documented):
		// an invocation that failed at its backend, which a fuzzed
		// orchestra PUT may have pointed anywhere.
		if rec.Code >= 500 && rec.Code != 503 && !(invoke && ep.agent && (rec.Code == 502 || rec.Code == 504) && strings.Contains(rec.Body.String(), `"status":"failed"`)) {
			t.Fatalf("%s %s %q: status %d: %s", ep.method, ep.path, body, rec.Code, rec.Body)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %s %q: answer is not JSON: %s", ep.method, ep.path, body, rec.Body)
		}
		if rec.Code >= 400 {
			var eb api.ErrorBody
			if json.Unmarshal(rec.Body.Bytes(), &eb); eb.Error.Code == "" || eb.Error.Message == "" {
				t.Fatalf("%s %s: error answer %s is not {error:{code,message}}", ep.method, ep.path, rec.Body)
			}
		}
		if !gateway {
			return
		}
		// A refused call changes nothing.
		if after := g.snapshot(!(invoke && ep.agent)); rec.Code >= 400 && after != before {
			t.Fatalf("%s %s %q: refused with %d %s, but the gateway's state changed:\nbefore %s\nafter  %s", ep.method, ep.path, body, rec.Code, rec.Body, before, after)
		}
		switch {
		case invoke && !ep.agent:
			// No credential, no call: refused before anything is read but
			// the body's size.
			if rec.Code != http.StatusUnauthorized && rec.Code != http.StatusBadRequest {
				t.Fatalf("%s %s %q without a valid token: %d %s", ep.method, ep.path, body, rec.Code, rec.Body)
			}
		case invoke && rec.Code < 300:
			var resp api.InvokeResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || resp.InvocationID == "" || resp.Agent != "fz" ||
				(rec.Code == http.StatusOK) != (resp.Status == api.InvocationCompleted) ||
				(rec.Code == http.StatusAccepted) != (resp.Status == api.InvocationPendingApproval && resp.ApprovalID != "") {
				t.Fatalf("%s %s %q: %d %s is not an invocation's answer (%v)", ep.method, ep.path, body, rec.Code, rec.Body, err)
			}
			if strings.Contains(rec.Body.String(), "123-45-6789") && ep.path == "/v1/actions/crm.read/invoke" {
				t.Fatalf("%s %s %q: the answer %s was not redacted", ep.method, ep.path, body, rec.Body)
			}
		case !invoke && ep.agent && rec.Code != http.StatusForbidden:
			// An agent credential never decides approvals or sets or lifts
			// kill switches.
			t.Fatalf("%s %s %q with an agent token: %d %s", ep.method, ep.path, body, rec.Code, rec.Body)
		}
	})
}
