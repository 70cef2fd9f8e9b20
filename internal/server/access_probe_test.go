package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/node"
	"github.com/aibos/kernel/internal/node/nodetest"
)

// The probes of issue 12, each of which got through before the kernel
// authenticated its own API.

const allowAll = "kind: Policy\nname: everything\nlayer: platform\nrules:\n  - name: all\n    effect: allow\n    actions: [\"*\"]\n"

// raw sends one request by hand; hdr are extra headers.
func raw(t *testing.T, n *node.Node, method, path, ctype, body string, hdr map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, n.URL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

func TestProbePublishAllowAllWithoutCredential(t *testing.T) {
	n, _ := startNode(t)
	rev := n.Store.AppliedRevision()
	st, out := raw(t, n, "PUT", "/v1/policies?author=ceo", "application/yaml", allowAll, nil)
	if st != http.StatusUnauthorized || !strings.Contains(out, "unauthenticated") {
		t.Fatalf("publish without a credential: %d %s", st, out)
	}
	if len(n.Store.Versions()) != 0 || n.Store.AppliedRevision() != rev {
		t.Fatal("the publish changed the state")
	}
	// With a credential, the author is the principal, not the query.
	st, out = raw(t, n, "PUT", "/v1/policies?author=ceo", "application/yaml", allowAll, bearer(nodetest.Token(n)))
	if st != http.StatusForbidden || !strings.Contains(out, `author \"ceo\" is not you`) {
		t.Fatalf("publish as someone else: %d %s", st, out)
	}
	st, out = raw(t, n, "PUT", "/v1/policies", "application/yaml", allowAll, bearer(nodetest.Token(n)))
	if vs := n.Store.Versions(); st != http.StatusOK || len(vs) != 1 || vs[0].Author != nodetest.RootPrincipal {
		t.Fatalf("publish: %d %s %+v", st, out, vs)
	}
}

// approvalSetup: a refund over 100 needs approval; agent clerk (owner
// olga) is held on one.
type approvalSetup struct {
	n       *node.Node
	c       *client.Client
	agent   string
	pending string
}

func setupApproval(t *testing.T) approvalSetup {
	t.Helper()
	n, c := startNode(t)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"ok":true}`)
	}))
	t.Cleanup(be.Close)
	ctx := context.Background()
	if _, err := c.Publish(ctx, file("gw.yaml", fuzzGatewayPolicy), client.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutOrchestra(ctx, api.Orchestra{Name: "crm", Backend: api.Backend{Type: api.BackendHTTP, URL: be.URL},
		Actions: []api.ActionDef{{Name: "crm.refund", Risk: api.RiskWrite}}}); err != nil {
		t.Fatal(err)
	}
	reg, err := c.RegisterAgent(ctx, api.AgentManifest{ID: "clerk", Version: "1", Tenant: "acme", Owner: "olga", Capabilities: []string{"crm.*"}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Invoke(ctx, reg.Token, "crm.refund", api.InvokeRequest{Input: json.RawMessage(`{"amount":500}`)}, client.InvokeOptions{})
	if err != nil || resp.Status != api.InvocationPendingApproval {
		t.Fatalf("invoke: %+v %v", resp, err)
	}
	return approvalSetup{n: n, c: c, agent: reg.Token, pending: resp.ApprovalID}
}

func (s approvalSetup) state(t *testing.T) string {
	t.Helper()
	a, _ := s.n.Store.Approval(s.pending)
	return a.State
}

func TestProbeSelfChosenApprover(t *testing.T) {
	s := setupApproval(t)
	alice := nodetest.NewToken(t, s.n, "alice", "approver")
	st, out := raw(t, s.n, "POST", "/v1/approvals/"+s.pending+"/approve", "application/json", `{"approver":"finance-lead","reason":"ok"}`, bearer(alice))
	if st != http.StatusForbidden || s.state(t) != api.ApprovalPending {
		t.Fatalf("approve as a chosen name: %d %s, state %s", st, out, s.state(t))
	}
	// No name at all: the approver is the principal.
	st, out = raw(t, s.n, "POST", "/v1/approvals/"+s.pending+"/approve", "application/json", `{"reason":"ok"}`, bearer(alice))
	a, _ := s.n.Store.Approval(s.pending)
	if st != http.StatusOK || a.State != api.ApprovalApproved || a.DecidedBy != "alice" {
		t.Fatalf("approve as alice: %d %s %+v", st, out, a)
	}
}

func TestProbeAgentApprovesItsOwnCall(t *testing.T) {
	s := setupApproval(t)
	for _, hdr := range []map[string]string{
		{"Authorization": "bearer " + s.agent}, // lower case: still the agent (RFC 9110)
		{"Authorization": "BEARER  " + s.agent},
		{"Authorization": "Bearer " + s.agent},
	} {
		st, out := raw(t, s.n, "POST", "/v1/approvals/"+s.pending+"/approve", "application/json", `{"approver":"alice"}`, hdr)
		if st != http.StatusForbidden || s.state(t) != api.ApprovalPending {
			t.Fatalf("%v: %d %s, state %s", hdr, st, out, s.state(t))
		}
	}
	st, out := raw(t, s.n, "POST", "/v1/approvals/"+s.pending+"/approve", "application/json", `{"approver":"alice"}`, nil)
	if st != http.StatusUnauthorized || s.state(t) != api.ApprovalPending {
		t.Fatalf("no header: %d %s", st, out)
	}
	// Nor the kill switch.
	st, out = raw(t, s.n, "POST", "/v1/kill", "application/json", `{"scope":"global","reason":"x"}`, map[string]string{"Authorization": "bearer " + s.agent})
	if st != http.StatusForbidden || len(s.n.Store.Kills()) != 0 {
		t.Fatalf("agent kill: %d %s", st, out)
	}
	// The agent still waits on its own approval with its token.
	if st, out := raw(t, s.n, "GET", "/v1/approvals/"+s.pending, "", "", bearer(s.agent)); st != http.StatusOK {
		t.Fatalf("agent reads its approval: %d %s", st, out)
	}
}

func TestSeparationOfDuties(t *testing.T) {
	s := setupApproval(t)
	olga := nodetest.NewToken(t, s.n, "olga", "approver") // owns the agent
	st, out := raw(t, s.n, "POST", "/v1/approvals/"+s.pending+"/approve", "application/json", "", bearer(olga))
	if st != http.StatusForbidden || !strings.Contains(out, "owns agent clerk") || s.state(t) != api.ApprovalPending {
		t.Fatalf("the owner approves: %d %s", st, out)
	}
	bob := nodetest.NewToken(t, s.n, "bob", "approver")
	if st, out := raw(t, s.n, "POST", "/v1/approvals/"+s.pending+"/approve", "application/json", "", bearer(bob)); st != http.StatusOK || s.state(t) != api.ApprovalApproved {
		t.Fatalf("a second person approves: %d %s", st, out)
	}
}

func TestProbeCrossOriginRollback(t *testing.T) {
	n, c := startNode(t)
	ctx := context.Background()
	for range 2 {
		if _, err := c.Publish(ctx, file("b.yaml", allowAll), client.PublishOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	tok := bearer(nodetest.Token(n))
	rev := n.Store.AppliedRevision()
	for _, tc := range []struct {
		name, ctype, origin string
		status              int
		code                string
	}{
		{"cross-origin text/plain", "text/plain", "http://evil.example", http.StatusForbidden, "cross_origin"},
		{"cross-origin JSON", "application/json", "http://evil.example", http.StatusForbidden, "cross_origin"},
		{"form post", "application/x-www-form-urlencoded", "", http.StatusUnsupportedMediaType, "unsupported_media_type"},
		{"text/plain", "text/plain", "", http.StatusUnsupportedMediaType, "unsupported_media_type"},
		{"cross-origin, no credential", "text/plain", "http://evil.example", http.StatusForbidden, "cross_origin"},
	} {
		hdr := map[string]string{}
		if tc.name != "cross-origin, no credential" {
			hdr = tok
		}
		h := map[string]string{}
		for k, v := range hdr {
			h[k] = v
		}
		if tc.origin != "" {
			h["Origin"] = tc.origin
		}
		st, out := raw(t, n, "POST", "/v1/policies/rollback", tc.ctype, `{"to":1}`, h)
		if st != tc.status || !strings.Contains(out, tc.code) || n.Store.AppliedRevision() != rev {
			t.Fatalf("%s: %d %s (revision %d, was %d)", tc.name, st, out, n.Store.AppliedRevision(), rev)
		}
	}
	// The same origin, and JSON, work.
	if st, out := raw(t, n, "POST", "/v1/policies/rollback", "application/json", `{"to":1}`, map[string]string{"Authorization": tok["Authorization"], "Origin": n.URL()}); st != http.StatusOK {
		t.Fatalf("same-origin rollback: %d %s", st, out)
	}
}

func TestTokensLifecycle(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := &fakeClock{t: now}
	n, c := startNode(t, func(cfg *node.Config) { cfg.Now = clock.Now })
	ctx := context.Background()
	tc, err := c.CreateToken(ctx, "carol", []string{"auditor"}, nil, time.Hour)
	if err != nil || !strings.HasPrefix(tc.Secret, "aibos_op_") || tc.Token.Accessor == "" || !tc.Token.ExpiresAt.Equal(now.Add(time.Hour)) {
		t.Fatalf("create: %+v %v", tc, err)
	}
	carol := nodetest.TokenClient(t, tc.Secret, n)
	w, err := carol.WhoAmI(ctx)
	if err != nil || w.Principal != "carol" || w.Accessor != tc.Token.Accessor || len(w.Roles) != 1 {
		t.Fatalf("whoami: %+v %v", w, err)
	}
	// An auditor reads but does not publish.
	if _, err := carol.Versions(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := carol.Publish(ctx, file("b.yaml", allowAll), client.PublishOptions{}); !isCode(err, "forbidden") {
		t.Fatalf("auditor publishes: %v", err)
	}
	// The list never shows a secret.
	list, err := c.Tokens(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %+v %v", list, err)
	}
	b, _ := json.Marshal(list)
	if strings.Contains(string(b), tc.Secret) || strings.Contains(string(b), "hash") {
		t.Fatalf("the list shows secrets: %s", b)
	}
	// Bad requests say what to fix.
	if _, err := c.CreateToken(ctx, "dave", []string{"superuser"}, nil, 0); !isCode(err, "bad_request") || !strings.Contains(err.Error(), "built-in role") {
		t.Fatalf("unknown role: %v", err)
	}
	// Expired: refused, saying so.
	clock.Add(time.Hour)
	if _, err := carol.WhoAmI(ctx); !isCode(err, "unauthenticated") || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired token: %v", err)
	}
	clock.Add(-time.Hour)
	// Revoked: refused at once.
	if _, err := c.RevokeToken(ctx, tc.Token.Accessor); err != nil {
		t.Fatal(err)
	}
	if _, err := carol.WhoAmI(ctx); !isCode(err, "unauthenticated") {
		t.Fatalf("revoked token: %v", err)
	}
	if _, err := c.RevokeToken(ctx, tc.Token.Accessor); !isCode(err, "conflict") {
		t.Fatalf("revoke twice: %v", err)
	}
}

func TestTenantBoundOperator(t *testing.T) {
	n, c := startNode(t)
	ctx := context.Background()
	for _, m := range []api.AgentManifest{{ID: "a1", Version: "1", Tenant: "acme"}, {ID: "b1", Version: "1", Tenant: "globex"}} {
		if _, err := c.RegisterAgent(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	tc, err := c.CreateToken(ctx, "acme-oncall", []string{"operator"}, []string{"acme"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	op := nodetest.TokenClient(t, tc.Secret, n)
	if _, err := op.Kill(ctx, api.KillRequest{Scope: api.KillAgent, Target: "a1", Reason: "r"}); err != nil {
		t.Fatalf("kill its tenant's agent: %v", err)
	}
	for _, k := range []api.KillRequest{{Scope: api.KillAgent, Target: "b1", Reason: "r"}, {Scope: api.KillTenant, Target: "globex", Reason: "r"}, {Scope: api.KillGlobal, Reason: "r"}} {
		if _, err := op.Kill(ctx, k); !isCode(err, "forbidden") {
			t.Fatalf("kill %+v outside its tenant: %v", k, err)
		}
	}
	if len(n.Store.Kills()) != 1 {
		t.Fatalf("kills: %+v", n.Store.Kills())
	}
}

func TestFailedAuthenticationsAreRateLimited(t *testing.T) {
	n, _ := startNode(t, func(cfg *node.Config) { cfg.AuthFailureLimit = 3 })
	bad := bearer("aibos_op_" + strings.Repeat("B", 43))
	for i := range 3 {
		if st, out := raw(t, n, "GET", "/v1/whoami", "", "", bad); st != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d %s", i, st, out)
		}
	}
	req, _ := http.NewRequest("GET", n.URL()+"/v1/whoami", nil)
	req.Header.Set("Authorization", "Bearer "+nodetest.Token(n))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("after 3 failures: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// Health stays open.
	if st, _ := raw(t, n, "GET", "/healthz", "", "", nil); st != http.StatusOK {
		t.Fatalf("healthz: %d", st)
	}
}

func TestRootTokenFile(t *testing.T) {
	n, _ := startNode(t)
	path := filepath.Join(n.Config().DataDir, node.RootTokenFile)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("root token file: %v %v", fi, err)
	}
	b, _ := os.ReadFile(path)
	if strings.TrimSpace(string(b)) != nodetest.Token(n) {
		t.Fatal("the file does not hold the root token")
	}
	// A restart keeps the file and the token.
	cfg := n.Config()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n2 := nodetest.Start(t, cfg)
	b2, _ := os.ReadFile(path)
	if string(b2) != string(b) || nodetest.Token(n2) != strings.TrimSpace(string(b)) {
		t.Fatal("the restart rewrote the root token")
	}
	if _, err := nodetest.Client(t, n2).WhoAmI(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// fakeClock is a clock a test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
