package mcp_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/node"
	"github.com/aibos/kernel/internal/node/nodetest"
)

// End-to-end tests: a real node, real MCP servers from npm
// (server-everything over stdio, server-filesystem on a temp dir), a
// server of our own over streamable HTTP, and real clients (the Go SDK's,
// and the TypeScript SDK's run by node).

// requireNode is the directory of the pinned npm packages and the node
// binary. Without them the test skips, unless CI or AIBOS_REQUIRE_NODE is
// set: then it fails (CI installs them with npm ci).
func requireNode(t testing.TB) (dir, nodeBin string) {
	t.Helper()
	dir, err := filepath.Abs("testdata/npm")
	if err != nil {
		t.Fatal(err)
	}
	must := os.Getenv("CI") == "true" || os.Getenv("AIBOS_REQUIRE_NODE") == "1"
	nodeBin, err = exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(dir, "node_modules", "@modelcontextprotocol", "server-everything"))
	}
	if err != nil {
		if must {
			t.Fatalf("node and the npm packages are required (run npm ci --prefix internal/mcp/testdata/npm): %v", err)
		}
		t.Skipf("node or the npm packages missing (npm ci --prefix internal/mcp/testdata/npm): %v", err)
	}
	return dir, nodeBin
}

const testPolicy = `
kind: Policy
name: mcp
layer: platform
rules:
  - name: methods
    effect: allow
    actions: ["mcp.*"]
  - name: tools
    effect: allow
    actions: ["everything.*", "fs.*", "own.*"]
  - name: no-env
    effect: deny
    actions: ["everything.get-env"]
    when: subject.id != "admin"
    message: the environment is not for agents
  - name: limited
    effect: allow
    actions: ["everything.get-annotated-message"]
    obligations: {rate_limit: {limit: 2, per: 1h, key: subject.id}}
  - name: writes-need-approval
    effect: require_approval
    actions: ["fs.write_file"]
  - name: no-secrets
    effect: deny
    actions: ["mcp.resources.read", "mcp.resources.subscribe"]
    when: resource.id.startsWith("own+secret://")
    message: secrets are not for agents
  - name: not-for-mallory
    effect: deny
    actions: ["everything.get-sum", "mcp.resources.read"]
    when: has(context.user) && context.user.id == "mallory"
    message: mallory may not
  - name: sales-lookups
    effect: deny
    actions: ["own.lookup"]
    when: '!has(context.dept) || context.dept != "sales" || resource.type != "customer"'
    message: customers are for sales
  - name: no-hidden-prompt
    effect: deny
    actions: ["mcp.prompts.get"]
    when: resource.id == "own.hidden"
`

type env struct {
	t      testing.TB
	n      *node.Node
	c      *client.Client // the root token's
	alice  *client.Client // an admin named alice, who approves and kills
	dir    string         // npm dir
	node   string         // node binary
	fsRoot string
	tokens map[string]string
}

func setup(t testing.TB, extra ...api.Orchestra) *env {
	t.Helper()
	return setupWith(t, nil, extra...)
}

// setupWith is setup with the node's configuration changed by mod.
func setupWith(t testing.TB, mod func(*node.Config), extra ...api.Orchestra) *env {
	t.Helper()
	requireNode(t)
	cfg := nodetest.Config(t, "n1")
	cfg.MCP.Debounce = 100 * time.Millisecond
	cfg.MCP.ListWait = nodetest.WaitLong // a list right after the put waits for the server to connect
	cfg.MCP.PageSize = 3                 // lists of a few items still page
	if mod != nil {
		mod(&cfg)
	}
	return setupOn(t, []*node.Node{nodetest.Start(t, cfg)}, extra...)
}

// setupOn publishes the policy, puts the orchestras and registers the
// agents on a cluster; e.n is its first node.
func setupOn(t testing.TB, nodes []*node.Node, extra ...api.Orchestra) *env {
	t.Helper()
	dir, nodeBin := requireNode(t)
	n := nodes[0]
	e := &env{t: t, n: n, c: nodetest.Client(t, nodes...), dir: dir, node: nodeBin, fsRoot: t.TempDir(), tokens: map[string]string{}}
	e.alice = nodetest.ClientAs(t, "alice", []string{"admin"}, nodes...)
	ctx := context.Background()
	if _, err := e.c.Publish(ctx, []api.File{{Name: "mcp.yaml", Data: []byte(testPolicy)}}, client.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	mods := filepath.Join(dir, "node_modules", "@modelcontextprotocol")
	orchs := append([]api.Orchestra{
		{Name: "everything", Backend: api.Backend{Type: api.BackendMCP,
			Command: []string{nodeBin, filepath.Join(mods, "server-everything", "dist", "index.js"), "stdio"},
			Env:     map[string]string{"DECLARED": "only-this"}}},
		{Name: "fs", Backend: api.Backend{Type: api.BackendMCP,
			Command: []string{nodeBin, filepath.Join(mods, "server-filesystem", "dist", "index.js"), e.fsRoot}}},
	}, extra...)
	for _, o := range orchs {
		if _, err := e.c.PutOrchestra(ctx, o); err != nil {
			t.Fatalf("put orchestra %s: %v", o.Name, err)
		}
	}
	for id, caps := range map[string][]string{
		"bot":    {"everything.*", "fs.*", "own.*"},
		"narrow": {"everything.echo"},
		"admin":  {"everything.*"},
	} {
		reg, err := e.c.RegisterAgent(ctx, api.AgentManifest{ID: id, Name: id, Version: "1.0.0", Tenant: "acme", Capabilities: caps})
		if err != nil {
			t.Fatal(err)
		}
		e.tokens[id] = reg.Token
	}
	return e
}

func (e *env) url() string { return e.n.URL() + "/mcp" }

// bearer adds the agent's token to every request.
type bearer struct {
	token string
	rt    http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.rt.RoundTrip(r)
}

// goClient connects the Go SDK's client as agent.
func (e *env) goClient(agent string, opts *mcp.ClientOptions) *mcp.ClientSession {
	e.t.Helper()
	s, err := e.connect(e.tokens[agent], opts)
	if err != nil {
		e.t.Fatalf("connect as %s: %v", agent, err)
	}
	return s
}

// connect connects the Go SDK's client with a bearer token.
func (e *env) connect(token string, opts *mcp.ClientOptions) (*mcp.ClientSession, error) {
	c := mcp.NewClient(&mcp.Implementation{Name: "go-test", Version: "1"}, opts)
	tr := &mcp.StreamableClientTransport{Endpoint: e.url(), HTTPClient: &http.Client{Transport: bearer{token, http.DefaultTransport}}}
	ctx, cancel := context.WithTimeout(context.Background(), nodetest.WaitLong)
	defer cancel()
	s, err := c.Connect(ctx, tr, nil)
	if err != nil {
		return nil, err
	}
	e.t.Cleanup(func() { s.Close() })
	return s, nil
}

func toolNames(t testing.TB, s *mcp.ClientSession) []string {
	t.Helper()
	r, err := s.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tl := range r.Tools {
		out = append(out, tl.Name)
	}
	return out
}

func call(t testing.TB, s *mcp.ClientSession, tool string, args any) *mcp.CallToolResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), nodetest.WaitLong)
	defer cancel()
	r, err := s.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("call %s: %v", tool, err)
	}
	return r
}

func text(r *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range r.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// errCode is the kernel's code in a tool error ("" if none).
func errCode(r *mcp.CallToolResult) string {
	m, _ := r.Meta["aibos/error"].(map[string]any)
	s, _ := m["code"].(string)
	return s
}

func metaString(r *mcp.CallToolResult, k string) string {
	m, _ := r.Meta["aibos/error"].(map[string]any)
	s, _ := m[k].(string)
	return s
}

// tsClient runs the TypeScript SDK's client with steps and decodes its
// answers.
func (e *env) tsClient(agent string, steps []map[string]any) []map[string]any {
	e.t.Helper()
	b, _ := json.Marshal(steps)
	ctx, cancel := context.WithTimeout(context.Background(), nodetest.WaitLong)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.node, filepath.Join(e.dir, "client.mjs"), e.url(), e.tokens[agent], string(b))
	cmd.Dir = e.dir
	out, err := cmd.Output()
	if err != nil {
		e.t.Fatalf("node client.mjs: %v\n%s", err, out)
	}
	var res []map[string]any
	if err := json.Unmarshal(out, &res); err != nil {
		e.t.Fatalf("node client.mjs printed %s: %v", out, err)
	}
	for _, r := range res {
		if f, ok := r["fatal"]; ok {
			e.t.Fatalf("node client.mjs: %v", f)
		}
	}
	return res
}
