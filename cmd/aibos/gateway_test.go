package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
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

// End-to-end tests of the gateway's commands: the CLI's run entry point
// against a real node (Raft, HTTP, audit log on disk) and a real HTTP
// backend on loopback.

const cliGatewayPolicy = `kind: Policy
name: gateway
layer: platform
rules:
  - name: tenant-only
    effect: deny
    actions: ["crm.*"]
    when: subject.properties.tenant != "acme"
    message: only acme agents use the CRM
  - name: lookups
    effect: allow
    actions: ["crm.lookup"]
  - name: big-refunds-need-approval
    effect: require_approval
    actions: ["crm.refund"]
    when: context.input.amount > 100.0
  - name: refunds
    effect: allow
    actions: ["crm.refund"]
  - name: kernel
    effect: allow
    actions: ["kernel.*"]
`

const cliOrchestra = `name: crm
description: customer records
backend:
  type: http
  url: %s
actions:
  - name: crm.lookup
    description: look a customer up
    risk: read
    input_schema:
      type: object
      properties:
        id: {type: string, minLength: 1}
      required: [id]
      additionalProperties: false
  - name: crm.refund
    description: refund a customer
    risk: write
    path: /refunds
    input_schema:
      type: object
      properties:
        customer: {type: string}
        amount: {type: number, minimum: 0}
      required: [customer, amount]
`

// An A2A Agent Card as an agent serves it at /.well-known/agent-card.json,
// with the fields the kernel ignores (security, modes, protocol options).
const cliAgentCard = `{
  "protocolVersion": "0.3.0",
  "name": "CRM Assistant",
  "description": "Answers questions about customers and issues refunds.",
  "url": "https://crm-assistant.example.com/a2a/v1",
  "preferredTransport": "JSONRPC",
  "additionalInterfaces": [
    {"url": "https://crm-assistant.example.com/a2a/v1", "transport": "JSONRPC"},
    {"url": "https://crm-assistant.example.com/a2a/grpc", "transport": "GRPC"}
  ],
  "provider": {"organization": "Acme Corp", "url": "https://acme.example.com"},
  "iconUrl": "https://crm-assistant.example.com/icon.png",
  "version": "1.4.2",
  "documentationUrl": "https://crm-assistant.example.com/docs",
  "capabilities": {"streaming": true, "pushNotifications": false, "stateTransitionHistory": false},
  "securitySchemes": {"oauth": {"type": "oauth2", "flows": {"clientCredentials": {"tokenUrl": "https://auth.acme.example.com/token", "scopes": {"crm": "CRM access"}}}}},
  "security": [{"oauth": ["crm"]}],
  "defaultInputModes": ["application/json", "text/plain"],
  "defaultOutputModes": ["application/json"],
  "skills": [
    {"id": "customer-lookup", "name": "Customer lookup", "description": "Finds a customer by id.", "tags": ["crm", "read"], "examples": ["Who is customer c-42?"]},
    {"id": "refund", "name": "Refunds", "description": "Refunds an order.", "tags": ["crm", "write"], "inputModes": ["application/json"], "outputModes": ["application/json"]}
  ],
  "supportsAuthenticatedExtendedCard": false
}`

// cliBackend is the crm orchestra's backend: it answers every call with
// what it received and counts the calls per action.
type cliBackend struct {
	mu    sync.Mutex
	calls map[string]int
	paths []string
}

func (b *cliBackend) count(action string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls[action]
}

func startCLIBackend(t *testing.T) (*cliBackend, string) {
	b := &cliBackend{calls: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var call api.ActionCall
		if err := json.NewDecoder(r.Body).Decode(&call); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		b.mu.Lock()
		b.calls[call.Action]++
		b.paths = append(b.paths, r.URL.Path)
		b.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"ok":true,"action":%q,"agent":%q,"tenant":%q,"input":%s}`, call.Action, call.Agent, call.Tenant, call.Input)
	}))
	t.Cleanup(srv.Close)
	return b, srv.URL
}

// cli runs the aibos command in process, authenticated as the operator
// its --as, --by or --author names (a token made for that principal), or
// else with the root token.
type cli struct {
	t      *testing.T
	server string
	n      *node.Node
	files  *sync.Map // principal → token file
}

// newCLI is a CLI that talks to url with tokens of n's cluster.
func newCLI(t *testing.T, n *node.Node, url string) cli {
	return cli{t: t, server: url, n: n, files: &sync.Map{}}
}

// tokenFile is a file holding a token for principal ("" for the root).
func (c cli) tokenFile(principal string) string {
	c.t.Helper()
	if f, ok := c.files.Load(principal); ok {
		return f.(string)
	}
	tok := nodetest.Token(c.n)
	if principal != "" && principal != nodetest.RootPrincipal {
		tok = nodetest.NewToken(c.t, c.n, principal, "admin")
	}
	f := filepath.Join(c.t.TempDir(), "token")
	if err := os.WriteFile(f, []byte(tok+"\n"), 0o600); err != nil {
		c.t.Fatal(err)
	}
	c.files.Store(principal, f)
	return f
}

// principalOf is the name args attribute the act to, if any.
func principalOf(args []string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--as" || args[i] == "--by" || args[i] == "--author" {
			return args[i+1]
		}
	}
	return ""
}

type cliResult struct {
	code           int
	stdout, stderr string
}

func (c cli) run(args ...string) cliResult {
	c.t.Helper()
	return c.runIn("", args...)
}

func (c cli) runIn(stdin string, args ...string) cliResult {
	c.t.Helper()
	var out, errb bytes.Buffer
	code := run(append(args, "--server", c.server, "--token-file", c.tokenFile(principalOf(args))), strings.NewReader(stdin), &out, &errb)
	return cliResult{code, out.String(), errb.String()}
}

// must runs a command that has to exit with code.
func (c cli) must(code int, args ...string) cliResult {
	c.t.Helper()
	r := c.run(args...)
	if r.code != code {
		c.t.Fatalf("aibos %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
	}
	return r
}

func decodeInvoke(t *testing.T, r cliResult) api.InvokeResponse {
	t.Helper()
	var resp api.InvokeResponse
	if err := json.Unmarshal([]byte(r.stdout), &resp); err != nil || resp.InvocationID == "" {
		t.Fatalf("invoke printed no answer (%v): stdout %q stderr %q", err, r.stdout, r.stderr)
	}
	return resp
}

var (
	tokenLine = regexp.MustCompile(`token \(shown once, store it now\): (\S+)`)
	killLine  = regexp.MustCompile(`kill switch (\S+) set`)
)

func tempFile(t *testing.T, name, data string) string {
	t.Helper()
	return writeFile(t, t.TempDir(), name, data)
}

// gatewayCLI starts a node and a backend, publishes the policy, puts the
// crm orchestra and imports the agent card, all through the CLI; it
// returns the CLI, the backend and the agent's id and token.
func gatewayCLI(t *testing.T) (cli, *cliBackend, string, string) {
	n := nodetest.Start(t, nodetest.Config(t, "n1"))
	be, beURL := startCLIBackend(t)
	c := newCLI(t, n, n.URL())

	c.must(exitOK, "policy", "publish", tempFile(t, "gateway.yaml", cliGatewayPolicy), "--message", "gateway", "--author", "test")

	r := c.must(exitOK, "orchestra", "put", tempFile(t, "crm.yaml", fmt.Sprintf(cliOrchestra, beURL)))
	if !strings.Contains(r.stdout, "orchestra crm with 2 actions") {
		t.Fatalf("orchestra put: %q", r.stdout)
	}

	r = c.must(exitOK, "agent", "import-card", tempFile(t, "card.json", cliAgentCard), "--capabilities", "crm.*", "--tenant", "acme", "--owner", "support")
	m := tokenLine.FindStringSubmatch(r.stdout)
	if m == nil || !strings.HasPrefix(m[1], "aibos_") || !strings.Contains(r.stdout, "registered agent crm-assistant version 1.4.2") {
		t.Fatalf("import-card printed no token: %q", r.stdout)
	}
	// The registry has what the card says and what the import added.
	r = c.must(exitOK, "agent", "get", "crm-assistant")
	var a api.Agent
	if err := json.Unmarshal([]byte(r.stdout), &a); err != nil {
		t.Fatal(err)
	}
	if a.Tenant != "acme" || a.Owner != "support" || strings.Join(a.Capabilities, ",") != "crm.*" || len(a.Skills) != 2 ||
		len(a.Endpoints) != 2 || a.Labels["provider"] != "Acme Corp" {
		t.Fatalf("imported agent %+v", a)
	}
	return c, be, "crm-assistant", m[1]
}

func TestGatewayCLI(t *testing.T) {
	c, be, agent, token := gatewayCLI(t)

	// The catalog: the orchestra's actions and the kernel's own.
	r := c.must(exitOK, "action", "list")
	for _, want := range []string{"crm.lookup", "crm.refund", "kernel.agent.quarantine", "kernel.audit.query", "look a customer up"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("action list lacks %s:\n%s", want, r.stdout)
		}
	}
	r = c.must(exitOK, "action", "list", "--orchestra", "crm", "--risk", "write")
	if !strings.Contains(r.stdout, "crm.refund") || strings.Contains(r.stdout, "crm.lookup") || strings.Contains(r.stdout, "kernel.") {
		t.Errorf("filtered action list:\n%s", r.stdout)
	}
	r = c.must(exitOK, "orchestra", "list")
	if !strings.Contains(r.stdout, "crm") || !strings.Contains(r.stdout, "kernel") {
		t.Errorf("orchestra list:\n%s", r.stdout)
	}
	r = c.must(exitOK, "orchestra", "get", "crm")
	var o api.Orchestra
	if err := json.Unmarshal([]byte(r.stdout), &o); err != nil || o.Name != "crm" || len(o.Actions) != 2 {
		t.Fatalf("orchestra get: %v %q", err, r.stdout)
	}

	// An allowed call runs on the backend and prints the answer.
	r = c.must(exitOK, "invoke", "crm.lookup", "--token", token, "--input", `{"id":"c-42"}`)
	resp := decodeInvoke(t, r)
	if resp.Status != api.InvocationCompleted || resp.Decision != api.Allow || resp.Agent != agent || !strings.HasPrefix(resp.ArgsDigest, "sha256:") {
		t.Fatalf("lookup: %+v", resp)
	}
	var result struct {
		OK            bool
		Agent, Tenant string
		Input         map[string]any
	}
	if err := json.Unmarshal(resp.Result, &result); err != nil || !result.OK || result.Agent != agent || result.Tenant != "acme" || result.Input["id"] != "c-42" {
		t.Fatalf("lookup result %s: %v", resp.Result, err)
	}
	lookupID := resp.InvocationID
	// The input from a file and from stdin.
	in := tempFile(t, "in.json", `{"id":"c-7"}`)
	if r := c.must(exitOK, "invoke", "crm.lookup", "--token", token, "--input", "@"+in); decodeInvoke(t, r).Status != api.InvocationCompleted {
		t.Fatalf("input from a file: %+v", r)
	}
	if r := c.runIn(`{"id":"c-8"}`, "invoke", "crm.lookup", "--token", token, "--input", "-"); r.code != exitOK || decodeInvoke(t, r).Status != api.InvocationCompleted {
		t.Fatalf("input from stdin: %+v", r)
	}
	// The token from the environment.
	t.Setenv("AIBOS_AGENT_TOKEN", token)
	if r := c.must(exitOK, "invoke", "crm.lookup", "--input", `{"id":"c-9"}`); decodeInvoke(t, r).Status != api.InvocationCompleted {
		t.Fatalf("token from the environment: %+v", r)
	}
	// A small refund runs at once.
	r = c.must(exitOK, "invoke", "crm.refund", "--token", token, "--input", `{"customer":"c-42","amount":20}`)
	if resp := decodeInvoke(t, r); resp.Status != api.InvocationCompleted {
		t.Fatalf("small refund: %+v", resp)
	}

	// A big refund is held for approval: exit 1 with the held answer.
	big := `{"customer":"c-42","amount":500}`
	r = c.must(exitFailed, "invoke", "crm.refund", "--token", token, "--input", big)
	held := decodeInvoke(t, r)
	if held.Status != api.InvocationPendingApproval || held.Decision != api.RequireApproval || held.ApprovalID == "" {
		t.Fatalf("big refund: %+v", held)
	}
	if !strings.Contains(r.stderr, held.ApprovalID) {
		t.Errorf("held invoke says nothing of its approval on stderr: %q", r.stderr)
	}
	if n := be.count("crm.refund"); n != 1 {
		t.Fatalf("held refund reached the backend: %d calls", n)
	}
	r = c.must(exitOK, "approval", "list")
	if !strings.Contains(r.stdout, held.ApprovalID) || !strings.Contains(r.stdout, "pending") || !strings.Contains(r.stdout, agent+"@1.4.2") ||
		!strings.Contains(r.stdout, "crm.refund") || !strings.Contains(r.stdout, `"amount":500`) {
		t.Fatalf("approval list:\n%s", r.stdout)
	}
	r = c.must(exitOK, "approval", "get", held.ApprovalID)
	var ap api.Approval
	if err := json.Unmarshal([]byte(r.stdout), &ap); err != nil || ap.State != api.ApprovalPending || ap.Agent != agent {
		t.Fatalf("approval get: %v %q", err, r.stdout)
	}
	// Redeeming before the approval is decided fails.
	if r := c.run("invoke", "crm.refund", "--token", token, "--input", big, "--approval", held.ApprovalID); r.code == exitOK {
		t.Fatalf("redeemed a pending approval: %+v", r)
	}
	r = c.must(exitOK, "approval", "approve", held.ApprovalID, "--as", "alice", "--reason", "ok")
	if !strings.Contains(r.stdout, "approval "+held.ApprovalID+" is approved by alice") {
		t.Fatalf("approve: %q", r.stdout)
	}
	if r := c.must(exitOK, "approval", "list"); strings.Contains(r.stdout, held.ApprovalID) {
		t.Errorf("approved approval still listed as pending:\n%s", r.stdout)
	}
	if r := c.must(exitOK, "approval", "list", "--state", "approved"); !strings.Contains(r.stdout, held.ApprovalID) {
		t.Errorf("approved approval not listed with --state approved:\n%s", r.stdout)
	}
	r = c.must(exitOK, "invoke", "crm.refund", "--token", token, "--input", big, "--approval", held.ApprovalID)
	if resp := decodeInvoke(t, r); resp.Status != api.InvocationCompleted || resp.ApprovalID != held.ApprovalID {
		t.Fatalf("redeemed refund: %+v", resp)
	}
	if n := be.count("crm.refund"); n != 2 {
		t.Fatalf("refunds on the backend: %d, want 2", n)
	}
	// An approval runs once.
	if r := c.run("invoke", "crm.refund", "--token", token, "--input", big, "--approval", held.ApprovalID); r.code == exitOK || be.count("crm.refund") != 2 {
		t.Fatalf("approval redeemed twice: %+v", r)
	}
	// A denied approval.
	r = c.must(exitFailed, "invoke", "crm.refund", "--token", token, "--input", `{"customer":"c-1","amount":900}`)
	denied := decodeInvoke(t, r)
	if r := c.must(exitOK, "approval", "deny", denied.ApprovalID, "--as", "bob", "--reason", "too much"); !strings.Contains(r.stdout, "denied by bob") {
		t.Fatalf("deny: %q", r.stdout)
	}

	// A kill switch on the agent stops it.
	r = c.must(exitOK, "kill", "set", "--scope", "agent", "--target", agent, "--reason", "r", "--by", "oncall")
	km := killLine.FindStringSubmatch(r.stdout)
	if km == nil {
		t.Fatalf("kill set: %q", r.stdout)
	}
	killID := km[1]
	r = c.must(exitFailed, "invoke", "crm.lookup", "--token", token, "--input", `{"id":"c-42"}`)
	killed := decodeInvoke(t, r)
	if killed.Error == nil || killed.Error.Code != "kill_switch" || killed.Status == api.InvocationCompleted {
		t.Fatalf("killed agent's call: %+v", killed)
	}
	if !strings.Contains(r.stderr, "kill_switch") {
		t.Errorf("refused invoke says nothing on stderr: %q", r.stderr)
	}
	r = c.must(exitOK, "kill", "list")
	if !strings.Contains(r.stdout, killID) || !strings.Contains(r.stdout, agent) || !strings.Contains(r.stdout, "oncall") {
		t.Fatalf("kill list:\n%s", r.stdout)
	}
	r = c.must(exitOK, "kill", "lift", killID, "--by", "oncall", "--reason", "fixed")
	if !strings.Contains(r.stdout, "kill switch "+killID+" lifted by oncall") {
		t.Fatalf("kill lift: %q", r.stdout)
	}
	if r := c.must(exitOK, "kill", "list"); strings.Contains(r.stdout, killID) {
		t.Errorf("lifted kill switch still listed:\n%s", r.stdout)
	}
	if r := c.must(exitOK, "kill", "list", "--all"); !strings.Contains(r.stdout, killID) || !strings.Contains(r.stdout, "false") {
		t.Errorf("kill list --all lacks the lifted switch:\n%s", r.stdout)
	}
	r = c.must(exitOK, "invoke", "crm.lookup", "--token", token, "--input", `{"id":"c-42"}`)
	if resp := decodeInvoke(t, r); resp.Status != api.InvocationCompleted {
		t.Fatalf("after lift: %+v", resp)
	}

	// The node's counts for the agent.
	r = c.must(exitOK, "agent", "stats", agent)
	var st api.AgentStats
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.Agent != agent {
		t.Fatalf("agent stats: %v %q", err, r.stdout)
	}
	lk := st.Actions["crm.lookup"]
	if lk.Invocations < 6 || lk.Allowed < 5 {
		t.Errorf("crm.lookup stats %+v (all: %s)", lk, r.stdout)
	}
	if rf := st.Actions["crm.refund"]; rf.Invocations < 3 {
		t.Errorf("crm.refund stats %+v", rf)
	}

	// The audit log has the invocations, as JSON lines.
	r = c.must(exitOK, "audit", "query", "--agent", agent)
	var recs []audit.Record
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec audit.Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		recs = append(recs, rec)
	}
	var sawLookup, sawHeld, sawKilled bool
	for _, rec := range recs {
		if rec.Agent != agent {
			t.Errorf("audit query --agent %s returned %+v", agent, rec)
		}
		switch rec.InvocationID {
		case lookupID:
			sawLookup = rec.Kind == "invocation" && rec.Status == api.InvocationCompleted && rec.Action == "crm.lookup"
		case held.InvocationID:
			sawHeld = rec.Status == api.InvocationPendingApproval && rec.ApprovalID == held.ApprovalID
		case killed.InvocationID:
			sawKilled = true
		}
	}
	if !sawLookup || !sawHeld || !sawKilled {
		t.Fatalf("audit query lacks invocations (lookup %t, held %t, killed %t) in %d records:\n%s", sawLookup, sawHeld, sawKilled, len(recs), r.stdout)
	}
	if r := c.must(exitOK, "audit", "query", "--agent", agent, "--invocation", lookupID); strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("audit query --invocation: %q", r.stdout)
	}

	// The orchestra goes away.
	c.must(exitOK, "orchestra", "delete", "crm")
	if r := c.run("invoke", "crm.lookup", "--token", token, "--input", `{"id":"c-42"}`); r.code != exitInvalid || !strings.Contains(r.stderr, "unknown_action") {
		t.Fatalf("invoke of a deleted action: %+v", r)
	}
}

// invoke --wait holds until a person decides, then redeems the approval.
func TestInvokeWait(t *testing.T) {
	c, be, _, token := gatewayCLI(t)
	done := make(chan error, 1)
	go func() {
		// Approve the one pending approval once it shows up.
		deadline := time.Now().Add(nodetest.WaitLong)
		for time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
			var out, errb bytes.Buffer
			if run([]string{"approval", "list", "--server", c.server, "--token-file", c.tokenFile("")}, nil, &out, &errb) != exitOK {
				done <- fmt.Errorf("approval list: %s", errb.String())
				return
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) < 2 {
				continue
			}
			id := strings.Fields(lines[1])[0]
			time.Sleep(300 * time.Millisecond) // the command is waiting now
			out.Reset()
			errb.Reset()
			if run([]string{"approval", "approve", id, "--as", "alice", "--reason", "ok", "--server", c.server, "--token-file", c.tokenFile("alice")}, nil, &out, &errb) != exitOK {
				done <- fmt.Errorf("approve %s: %s", id, errb.String())
				return
			}
			done <- nil
			return
		}
		done <- fmt.Errorf("no approval showed up")
	}()
	r := c.run("invoke", "crm.refund", "--token", token, "--input", `{"customer":"c-42","amount":750}`, "--wait", "1m")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if r.code != exitOK {
		t.Fatalf("invoke --wait: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	resp := decodeInvoke(t, r)
	if resp.Status != api.InvocationCompleted || resp.ApprovalID == "" || !strings.Contains(r.stderr, "held for approval "+resp.ApprovalID) {
		t.Fatalf("invoke --wait: %+v (stderr %q)", resp, r.stderr)
	}
	if n := be.count("crm.refund"); n != 1 {
		t.Fatalf("refunds on the backend: %d, want 1", n)
	}

	// Denied while waiting: exit 1, no call.
	go func() {
		deadline := time.Now().Add(nodetest.WaitLong)
		for time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
			var out, errb bytes.Buffer
			run([]string{"approval", "list", "--server", c.server, "--token-file", c.tokenFile("")}, nil, &out, &errb)
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) < 2 {
				continue
			}
			run([]string{"approval", "deny", strings.Fields(lines[1])[0], "--as", "alice", "--reason", "no", "--server", c.server, "--token-file", c.tokenFile("alice")}, nil, &out, &errb)
			done <- nil
			return
		}
		done <- fmt.Errorf("no approval showed up")
	}()
	r = c.run("invoke", "crm.refund", "--token", token, "--input", `{"customer":"c-42","amount":751}`, "--wait", "1m")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if r.code != exitFailed || !strings.Contains(r.stderr, "is denied") || be.count("crm.refund") != 1 {
		t.Fatalf("invoke --wait, denied: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}

	// Nobody decides within the wait: exit 1 with the held answer.
	r = c.run("invoke", "crm.refund", "--token", token, "--input", `{"customer":"c-42","amount":752}`, "--wait", "300ms")
	pending := decodeInvoke(t, r)
	if r.code != exitFailed || pending.Status != api.InvocationPendingApproval {
		t.Fatalf("invoke --wait, undecided: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}

	// A wait longer than the HTTP client's timeout ends as a pending
	// approval, not as a timeout.
	sc, err := client.New([]string{c.server}, client.Options{HTTPClient: &http.Client{Timeout: 2 * time.Second}, RetryFor: -1, Token: nodetest.Token(c.n)})
	if err != nil {
		t.Fatal(err)
	}
	if a, err := sc.Approval(context.Background(), pending.ApprovalID, 10*time.Second); err != nil || a.State != api.ApprovalPending {
		t.Fatalf("long wait on a short client: %+v %v", a, err)
	}
	if r := c.must(exitOK, "approval", "get", pending.ApprovalID, "--wait", "200ms"); !strings.Contains(r.stdout, `"pending"`) {
		t.Fatalf("approval get --wait: %q", r.stdout)
	}
}

// Bad usage exits 2 with a message that says what is wrong; so does an
// error answer from the server.
func TestGatewayCLIUsage(t *testing.T) {
	c, _, agent, token := gatewayCLI(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"orchestra"}, "Usage: aibos orchestra"},
		{[]string{"orchestra", "put"}, "give the orchestra FILE"},
		{[]string{"orchestra", "get"}, "give the orchestra NAME"},
		{[]string{"orchestra", "frob"}, `unknown subcommand "frob"`},
		{[]string{"orchestra", "put", filepath.Join(t.TempDir(), "missing.yaml")}, "no such file"},
		{[]string{"orchestra", "put", tempFile(t, "typo.yaml", "name: x\nbackend: {type: http, url: 'http://127.0.0.1:1'}\nactoins: []\n")}, "unknown field"},
		{[]string{"orchestra", "put", tempFile(t, "noname.yaml", "backend: {type: http, url: 'http://127.0.0.1:1'}\nactions: []\n")}, "name"},
		{[]string{"orchestra", "get", "nope"}, `no orchestra "nope"`},
		{[]string{"action"}, "Usage: aibos action list"},
		{[]string{"invoke"}, "Usage: aibos invoke ACTION"},
		{[]string{"invoke", "crm.lookup", "--token", token, "--input", "{not json"}, "not valid JSON"},
		{[]string{"invoke", "crm.lookup", "--token", token, "--input", "@" + filepath.Join(t.TempDir(), "none.json")}, "--input"},
		{[]string{"invoke", "crm.lookup", "--token", "aibos_bogus", "--input", `{"id":"x"}`}, "unauthenticated"},
		{[]string{"invoke", "crm.lookup", "--token", token, "--input", `{}`}, "invalid_input"},
		{[]string{"invoke", "crm.nope", "--token", token}, "unknown_action"},
		{[]string{"approval"}, "Usage: aibos approval"},
		{[]string{"approval", "approve"}, "Usage: aibos approval"},
		{[]string{"approval", "approve", "apr_nope", "--as", ""}, "--as"},
		{[]string{"approval", "approve", "apr_nope", "--as", "alice"}, "no approval"},
		{[]string{"approval", "get", "apr_nope"}, "no approval"},
		{[]string{"approval", "frob"}, `unknown subcommand "frob"`},
		{[]string{"kill"}, "Usage: aibos kill"},
		{[]string{"kill", "lift"}, "Usage: aibos kill"},
		{[]string{"kill", "set", "--scope", "agent", "--target", agent, "--by", "oncall"}, "reason is required"},
		{[]string{"kill", "set", "--scope", "everything", "--reason", "r", "--by", "oncall"}, "unknown scope"},
		{[]string{"kill", "lift", "kill_nope", "--by", "oncall"}, "kill_nope"},
		{[]string{"kill", "frob"}, `unknown subcommand "frob"`},
		{[]string{"agent", "import-card"}, "give the manifest FILE"},
		{[]string{"agent", "import-card", tempFile(t, "notcard.json", `["x"]`), "--capabilities", "crm.*"}, "not an A2A Agent Card"},
		{[]string{"agent", "stats"}, "give the agent ID"},
		{[]string{"agent", "stats", "nobody"}, `no agent "nobody"`},
		{[]string{"audit", "query", "extra"}, `unexpected argument "extra"`},
	} {
		r := c.run(tc.args...)
		if r.code != exitInvalid || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("aibos %s: exit %d, stderr %q; want exit 2 and %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.want)
		}
	}
	// Nothing was set by the refused kill switches.
	if r := c.must(exitOK, "kill", "list"); strings.Count(strings.TrimSpace(r.stdout), "\n") != 0 {
		t.Errorf("kill list after refused sets:\n%s", r.stdout)
	}
}
