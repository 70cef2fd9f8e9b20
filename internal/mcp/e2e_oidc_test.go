package mcp_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/audit"
	"github.com/aibos/kernel/internal/auth"
	"github.com/aibos/kernel/internal/auth/authtest"
	"github.com/aibos/kernel/internal/node"
)

// TestOIDCAccessTokens: an agent acting for a user presents the trusted
// issuer's access token (sub the user, client_id or azp the agent): it
// gets the agent's tools, the user is in its decisions (context.user) and
// in the audit record beside the agent; a token of an unregistered
// client, an expired one, one for another audience or another issuer's
// key is a 401; a session is bound to its user.
func TestOIDCAccessTokens(t *testing.T) {
	is := authtest.NewIssuer(t, "https://login.example.test", "aibos")
	e := setupWith(t, func(c *node.Config) {
		c.OIDC = auth.OIDCConfig{Issuer: is.URL, Audience: "aibos", JWKSFile: is.JWKSFile}
	})
	ana := is.Token(t, "ana", time.Hour, map[string]any{"client_id": "bot"})
	mallory := is.Token(t, "mallory", time.Hour, map[string]any{"client_id": "bot"})
	ctx := context.Background()

	s, err := e.connect(ana, nil)
	if err != nil {
		t.Fatalf("connect with ana's access token: %v", err)
	}
	if tools := toolNames(t, s); !slices.Contains(tools, "everything.echo") || slices.Contains(tools, "everything.get-env") {
		t.Fatalf("ana's bot lists %v", tools)
	}
	if r := call(t, s, "everything.get-sum", map[string]any{"a": 1, "b": 2}); r.IsError || !strings.Contains(text(r), "3") {
		t.Fatalf("get-sum for ana: %v %q", errCode(r), text(r))
	}
	if _, err := s.ReadResource(ctx, &mcp.ReadResourceParams{URI: "everything+demo://resource/static/document/features.md"}); err != nil {
		t.Fatalf("read for ana: %v", err)
	}
	recs, err := e.n.Audit.Query(audit.Filter{Kind: "mcp", Action: "everything.get-sum"})
	if err != nil || len(recs) != 1 || recs[0].Agent != "bot" || recs[0].User != "ana" || recs[0].Status != "completed" {
		t.Fatalf("audit of ana's get-sum: %+v %v", recs, err)
	}

	// The user is in the decision: policy denies mallory what it lets ana.
	m, err := e.connect(mallory, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := call(t, m, "everything.get-sum", map[string]any{"a": 1, "b": 2}); errCode(r) != "denied" || !strings.Contains(text(r), "mallory may not") {
		t.Fatalf("get-sum for mallory: %v %q", errCode(r), text(r))
	}
	if _, err := m.ReadResource(ctx, &mcp.ReadResourceParams{URI: "everything+demo://resource/static/document/features.md"}); err == nil || !strings.Contains(err.Error(), "mallory may not") {
		t.Fatalf("read for mallory: %v", err)
	}
	recs, _ = e.n.Audit.Query(audit.Filter{Kind: "mcp", Action: "mcp.resources.read"})
	found := false
	for _, r := range recs {
		found = found || (r.User == "mallory" && r.Agent == "bot" && r.Decision == "deny")
	}
	if !found {
		t.Fatalf("no denied read of mallory's in %+v", recs)
	}

	// azp names the agent when client_id is absent.
	nar, err := e.connect(is.Token(t, "ana", time.Hour, map[string]any{"azp": "narrow"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := toolNames(t, nar); !slices.Equal(got, []string{"everything.echo"}) {
		t.Fatalf("azp narrow lists %v", got)
	}

	// A session is bound to its user: mallory's token cannot use ana's.
	if st, body := rawMCP(t, e.url(), ana, s.ID()); st != http.StatusOK {
		t.Fatalf("ana's own ping in her session: %d %s", st, body)
	}
	if st, body := rawMCP(t, e.url(), mallory, s.ID()); st == http.StatusOK {
		t.Fatalf("mallory used ana's session: %d %s", st, body)
	}

	other := authtest.NewIssuer(t, is.URL, "aibos")
	for _, c := range []struct{ name, tok, want string }{
		{"unregistered client", is.Token(t, "ana", time.Hour, map[string]any{"client_id": "ghost"}), "not a registered agent"},
		{"no client", is.Token(t, "ana", time.Hour, nil), "client_id"},
		{"expired", is.Token(t, "ana", -time.Second, map[string]any{"client_id": "bot"}), "expired"},
		{"audience", is.Token(t, "ana", time.Hour, map[string]any{"client_id": "bot", "aud": "grafana"}), "wrong audience"},
		{"signature", other.Token(t, "ana", time.Hour, map[string]any{"client_id": "bot"}), "signature"},
	} {
		st, body := rawMCP(t, e.url(), c.tok, "")
		if st != http.StatusUnauthorized || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %s; want 401 saying %q", c.name, st, body, c.want)
		}
	}

	// The metadata names the issuer as the authorization server.
	resp, err := http.Get(e.n.URL() + "/.well-known/oauth-protected-resource/mcp")
	if err != nil {
		t.Fatal(err)
	}
	var md map[string]any
	json.NewDecoder(resp.Body).Decode(&md)
	resp.Body.Close()
	if as, _ := md["authorization_servers"].([]any); len(as) != 1 || as[0] != is.URL {
		t.Fatalf("metadata: %v", md)
	}
}

// rawMCP posts an initialize (or, with a session, a ping in it) with the
// token and answers the status and body.
func rawMCP(t *testing.T, url, token, session string) (int, string) {
	t.Helper()
	body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`
	if session != "" {
		body = `{"jsonrpc":"2.0","id":2,"method":"ping"}`
	}
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
		req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	n, _ := resp.Body.Read(buf)
	b.Write(buf[:n])
	return resp.StatusCode, b.String()
}

// TestOIDCDeclaredMapping: a tool's x-authzen-mapping sees the access
// token's claims as $token (COAZ-MCP), with $token.sub the user, and its
// subject anchored to it.
func TestOIDCDeclaredMapping(t *testing.T) {
	srv := mcp.NewServer(&mcp.Implementation{Name: "own-mapped", Version: "1"}, nil)
	calls := 0
	var mu sync.Mutex
	srv.AddTool(&mcp.Tool{Name: "lookup", Description: "Looks a customer up.", InputSchema: map[string]any{
		"type": "object", "properties": map[string]any{"id": map[string]any{"type": "string"}}, "required": []any{"id"},
		"x-authzen-mapping": map[string]any{"evaluation": map[string]any{
			"subject":  map[string]any{"type": "identity", "id": "$token.sub"},
			"action":   map[string]any{"name": "get_customer"},
			"resource": map[string]any{"type": "customer", "id": "$params.arguments.id"},
			"context":  map[string]any{"dept": "$token.?dept", "agent": "$token.?client_id"},
		}},
	}}, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		mu.Lock()
		calls++
		mu.Unlock()
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "found"}}}, nil
	})
	ts := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil))
	t.Cleanup(ts.Close)
	is := authtest.NewIssuer(t, "https://login.example.test", "aibos")
	e := setupWith(t, func(c *node.Config) {
		c.OIDC = auth.OIDCConfig{Issuer: is.URL, Audience: "aibos", JWKSFile: is.JWKSFile}
	}, api.Orchestra{Name: "own", Backend: api.Backend{Type: api.BackendMCP, URL: ts.URL}})

	sales, err := e.connect(is.Token(t, "ana", time.Hour, map[string]any{"client_id": "bot", "dept": "sales"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := call(t, sales, "own.lookup", map[string]any{"id": "c-1"}); r.IsError || text(r) != "found" {
		t.Fatalf("lookup for sales: %v %q", errCode(r), text(r))
	}
	recs, _ := e.n.Audit.Query(audit.Filter{Kind: "mcp", Action: "own.lookup"})
	if len(recs) != 1 || recs[0].Resource != "customer:c-1" || recs[0].User != "ana" || recs[0].Agent != "bot" {
		t.Fatalf("audit of the mapped call: %+v", recs)
	}
	for name, tok := range map[string]string{
		"no dept claim": is.Token(t, "mallory", time.Hour, map[string]any{"client_id": "bot"}),
		"agent token":   e.tokens["bot"],
	} {
		s, err := e.connect(tok, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r := call(t, s, "own.lookup", map[string]any{"id": "c-1"}); errCode(r) != "denied" || !strings.Contains(text(r), "customers are for sales") {
			t.Fatalf("lookup, %s: %v %q", name, errCode(r), text(r))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 1 {
		t.Fatalf("the server ran lookup %d times, want 1", calls)
	}
}

// TestOIDCApprovalBoundToUser: an approval of an agent's call for one user
// is not redeemed by the same agent's call, with the same arguments, for
// another user.
func TestOIDCApprovalBoundToUser(t *testing.T) {
	is := authtest.NewIssuer(t, "https://login.example.test", "aibos")
	e := setupWith(t, func(c *node.Config) {
		c.OIDC = auth.OIDCConfig{Issuer: is.URL, Audience: "aibos", JWKSFile: is.JWKSFile}
	})
	ana, err := e.connect(is.Token(t, "ana", time.Hour, map[string]any{"client_id": "bot"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	mallory, err := e.connect(is.Token(t, "mallory", time.Hour, map[string]any{"client_id": "bot"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(e.fsRoot, "for-ana.txt")
	args := map[string]any{"path": path, "content": "ana's"}
	r := call(t, ana, "fs.write_file", args)
	id := metaString(r, "approval_id")
	if errCode(r) != "approval_required" || id == "" {
		t.Fatalf("ana's write: %v %q", errCode(r), text(r))
	}
	if _, err := e.alice.Approve(context.Background(), id, "alice", "ok for ana"); err != nil {
		t.Fatal(err)
	}
	if r := call(t, mallory, "fs.write_file", args); errCode(r) != "approval_required" || metaString(r, "approval_id") == id {
		t.Fatalf("mallory's same write after ana's approval: want a new approval, got %v %q", errCode(r), text(r))
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatal("mallory's call ran on ana's approval")
	}
	if r := call(t, ana, "fs.write_file", args); r.IsError {
		t.Fatalf("ana's approved write: %v %q", errCode(r), text(r))
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "ana's" {
		t.Fatalf("file: %q %v", b, err)
	}
}
