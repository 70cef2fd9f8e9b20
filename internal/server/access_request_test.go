package server_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/node"
	"github.com/aibos/kernel/internal/node/nodetest"
)

const accessRequestBundle = `kind: Policy
name: documents
layer: tenant
rules:
  - name: secrets-need-approval
    effect: require_approval
    actions: [doc.read]
    when: resource.properties.classification == "secret"
  - name: reads
    effect: allow
    actions: [doc.read]
`

// TestAccessRequestFlow is the AuthZEN access request profile end to end
// on a real node: require_approval → requestable denial → access request →
// an operator approves → the re-evaluation is true once → then false; and
// a second approval that expires unused.
func TestAccessRequestFlow(t *testing.T) {
	var offset atomic.Int64 // the node's clock runs ahead by this much
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	n, c := startNode(t, func(cfg *node.Config) {
		cfg.Now = clock
		cfg.Gateway.ApprovalTTL = time.Hour
	})
	if _, err := c.Publish(context.Background(), file("docs.yaml", accessRequestBundle), client.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	post := func(path, body string, wantStatus int) map[string]any {
		t.Helper()
		resp, out := do(t, n.URL(), "POST", path, body)
		if resp.StatusCode != wantStatus {
			t.Fatalf("POST %s: %d %s, want %d", path, resp.StatusCode, out, wantStatus)
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("POST %s: %v: %s", path, err, out)
		}
		return v
	}
	get := func(path string) map[string]any {
		t.Helper()
		resp, out := do(t, n.URL(), "GET", path, "")
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, out)
		}
		var v map[string]any
		json.Unmarshal([]byte(out), &v)
		return v
	}
	ctxOf := func(v map[string]any) map[string]any { m, _ := v["context"].(map[string]any); return m }
	eval := `{"subject":{"type":"user","id":"alice"},"action":{"name":"doc.read"},"resource":{"type":"doc","id":"plan","properties":{"classification":"secret"}},"context":{"purpose":"renewal"}}`
	withApproval := func(id string) string {
		return strings.Replace(eval, `"context":{`, `"context":{"approval":{"id":"`+id+`"},`, 1)
	}

	// A plain document is allowed; a secret one is a requestable denial.
	if v := post("/access/v1/evaluation", strings.Replace(eval, "secret", "public", 1), 200); v["decision"] != true {
		t.Fatalf("public document: %v", v)
	}
	denial := post("/access/v1/evaluation", eval, 200)
	dctx := ctxOf(denial)
	ar, _ := dctx["access_request"].(map[string]any)
	if denial["decision"] != false || dctx["reason"] != "approval_required" || ar == nil || ar["expires_at"] == nil ||
		ar["endpoint"] != n.URL()+"/access/v1/requests" || dctx["evaluation_id"] == nil {
		t.Fatalf("not a requestable denial: %v", denial)
	}
	conf := get("/.well-known/authzen-configuration")
	if conf["access_request_endpoint"] != n.URL()+"/access/v1/requests" {
		t.Fatalf("configuration: %v", conf)
	}
	submission := func(evalBody string, den map[string]any) string {
		var m map[string]any
		json.Unmarshal([]byte(evalBody), &m)
		m["context"].(map[string]any)["business_justification"] = "customer renewal"
		m["denial"] = map[string]any{"evaluation_id": ctxOf(den)["evaluation_id"], "expires_at": ctxOf(den)["access_request"].(map[string]any)["expires_at"], "reason": "approval_required"}
		b, _ := json.Marshal(m)
		return string(b)
	}

	// Bad submissions change nothing.
	before := n.Store.AppliedRevision()
	for _, tc := range []struct {
		body, code string
		status     int
	}{
		{strings.Replace(submission(eval, denial), `"plan"`, `"other"`, 1), "invalid_denial_binding", 400},
		{strings.Replace(submission(eval, denial), `"evaluation_id":`, `"x":`, 1), "invalid_denial_binding", 400},
		{eval, "invalid_denial_binding", 400},
		{strings.Replace(submission(eval, denial), `"denial":`, `"items":[{}],"denial":`, 1), "unsupported", 400},
		{`{"subject":{"type":"user"}}`, "bad_request", 400},
	} {
		resp, out := do(t, n.URL(), "POST", "/access/v1/requests", tc.body)
		if resp.StatusCode != tc.status || !strings.Contains(out, `"code":"`+tc.code+`"`) || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("submission %s: %d %s (%s), want %d %s", tc.body, resp.StatusCode, out, resp.Header.Get("Content-Type"), tc.status, tc.code)
		}
	}
	if after := n.Store.AppliedRevision(); after != before {
		t.Fatalf("bad submissions changed the state: revision %d → %d", before, after)
	}

	// The access request: a pending task, the same one when asked again.
	task := post("/access/v1/requests", submission(eval, denial), 202)["task"].(map[string]any)
	id, _ := task["id"].(string)
	if task["status"] != "pending" || task["status_endpoint"] != n.URL()+"/access/v1/requests/"+id || !strings.HasPrefix(id, "apv_") {
		t.Fatalf("task: %v", task)
	}
	if again := post("/access/v1/requests", submission(eval, denial), 200)["task"].(map[string]any); again["id"] != id {
		t.Fatalf("the same request again made another task: %v", again)
	}
	if v := ctxOf(post("/access/v1/evaluation", withApproval(id), 200)); v["reason"] != "approval_pending" || v["next_action"] != "retry" {
		t.Fatalf("re-evaluation while pending: %v", v)
	}

	// An operator approves it as any other approval (aibos approval approve).
	apv := get("/v1/approvals/" + id)
	if apv["kind"] != "access_request" || apv["agent"] != "user:alice" || apv["action"] != "doc.read" || !strings.Contains(string(mustJSON(apv["input"])), "customer renewal") {
		t.Fatalf("approval as operators see it: %v", apv)
	}
	alice, bob := nodetest.NewToken(t, n, "alice", "approver"), nodetest.NewToken(t, n, "bob", "approver")
	if resp, out := doAs(t, n.URL(), alice, "POST", "/v1/approvals/"+id+"/approve", `{}`); resp.StatusCode != 403 {
		t.Fatalf("the subject approved its own request: %d %s", resp.StatusCode, out)
	}
	if resp, out := doAs(t, n.URL(), bob, "POST", "/v1/approvals/"+id+"/approve", `{"reason":"renewal"}`); resp.StatusCode != 200 {
		t.Fatalf("bob approves: %d %s", resp.StatusCode, out)
	}
	st := get("/access/v1/requests/" + id)
	result, _ := st["result"].(map[string]any)
	if st["task"].(map[string]any)["status"] != "approved" || result["mode"] != "reevaluate" || result["approval"].(map[string]any)["id"] != id {
		t.Fatalf("approved task: %v", st)
	}

	// Another request (another resource) does not redeem it, nor consume it.
	other := strings.Replace(withApproval(id), `"plan"`, `"other"`, 1)
	if v := post("/access/v1/evaluation", other, 200); v["decision"] != false || ctxOf(v)["reason"] != "out_of_scope" {
		t.Fatalf("another resource with the approval: %v", v)
	}
	// The same request: true once, then false with a fresh requestable denial.
	if v := post("/access/v1/evaluation", withApproval(id), 200); v["decision"] != true || ctxOf(v)["approval"].(map[string]any)["id"] != id {
		t.Fatalf("re-evaluation after approval: %v", v)
	}
	used := post("/access/v1/evaluation", withApproval(id), 200)
	if used["decision"] != false || ctxOf(used)["reason"] != "approval_used" || ctxOf(used)["next_action"] != "request" || ctxOf(used)["access_request"] == nil {
		t.Fatalf("second re-evaluation: %v", used)
	}
	if st := get("/access/v1/requests/" + id); st["task"].(map[string]any)["status"] != "consumed" {
		t.Fatalf("used task: %v", st)
	}
	if v := post("/access/v1/evaluation", eval, 200); v["decision"] != false {
		t.Fatalf("without the approval: %v", v)
	}
	// A denial of current policy stays one, approval or not.
	denied := strings.Replace(strings.Replace(withApproval(id), `"doc.read"`, `"doc.write"`, 1), "secret", "public", 1)
	if v := post("/access/v1/evaluation", denied, 200); v["decision"] != false || ctxOf(v)["reason"] != "policy_denied" {
		t.Fatalf("a denied action with an approval: %v", v)
	}
	// Batch items that need approval are requestable denials too.
	batch := post("/access/v1/evaluations", `{"subject":{"type":"user","id":"alice"},"action":{"name":"doc.read"},"evaluations":[{"resource":{"type":"doc","id":"a","properties":{"classification":"public"}}},{"resource":{"type":"doc","id":"b","properties":{"classification":"secret"}}}]}`, 200)
	items := batch["evaluations"].([]any)
	if items[0].(map[string]any)["decision"] != true || items[0].(map[string]any)["context"] != nil || ctxOf(items[1].(map[string]any))["access_request"] == nil {
		t.Fatalf("batch with a requestable item: %v", batch)
	}

	// A second approval, approved but not used before it expires.
	denial2 := post("/access/v1/evaluation", eval, 200)
	id2 := post("/access/v1/requests", submission(eval, denial2), 202)["task"].(map[string]any)["id"].(string)
	if resp, out := doAs(t, n.URL(), bob, "POST", "/v1/approvals/"+id2+"/approve", `{}`); resp.StatusCode != 200 {
		t.Fatalf("bob approves the second: %d %s", resp.StatusCode, out)
	}
	offset.Store(int64(2 * time.Hour))
	if v := post("/access/v1/evaluation", withApproval(id2), 200); v["decision"] != false || ctxOf(v)["reason"] != "approval_expired" {
		t.Fatalf("re-evaluation after expiry: %v", v)
	}
	if st := get("/access/v1/requests/" + id2); st["task"].(map[string]any)["status"] != "expired" || st["result"] != nil {
		t.Fatalf("expired task: %v", st)
	}
	// And a requestable denial is submitted too late.
	resp, out := do(t, n.URL(), "POST", "/access/v1/requests", submission(eval, denial2))
	if resp.StatusCode != 410 || !strings.Contains(out, "urn:openid:authzen:access-request:error:expired_denial") {
		t.Fatalf("late submission: %d %s", resp.StatusCode, out)
	}
	if resp, out := do(t, n.URL(), "GET", "/access/v1/requests/apv_nope", ""); resp.StatusCode != 404 || !strings.Contains(out, "unknown_task") {
		t.Fatalf("unknown task: %d %s", resp.StatusCode, out)
	}
}

func mustJSON(v any) []byte { b, _ := json.Marshal(v); return b }

// TestAccessRequestOnAReplica: every step of the flow asked of a
// non-voting replica works: the writes (the request, the approval, the
// redemption) are forwarded to the leader.
func TestAccessRequestOnAReplica(t *testing.T) {
	nodes := nodetest.Cluster(t, 1, 1, nil)
	replica := nodes[1]
	c := nodetest.Client(t, nodes[0])
	v, err := c.Publish(context.Background(), file("docs.yaml", accessRequestBundle), client.PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), nodetest.WaitLong)
	defer cancel()
	if err := replica.Store.WaitForRevision(ctx, v.Revision); err != nil {
		t.Fatal(err)
	}
	bob, err := c.CreateToken(ctx, "bob", []string{"approver"}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := replica.Store.WaitForRevision(ctx, nodes[0].Store.AppliedRevision()); err != nil { // the replica knows bob's token
		t.Fatal(err)
	}
	root := nodetest.Token(nodes[0])
	postAs := func(token, path, body string) map[string]any {
		t.Helper()
		resp, out := doAs(t, replica.URL(), token, "POST", path, body)
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil || resp.StatusCode >= 300 {
			t.Fatalf("POST %s: %d %s", path, resp.StatusCode, out)
		}
		return m
	}
	post := func(path, body string) map[string]any { t.Helper(); return postAs(root, path, body) }
	eval := `{"subject":{"type":"user","id":"alice"},"action":{"name":"doc.read"},"resource":{"type":"doc","id":"plan","properties":{"classification":"secret"}}`
	den := post("/access/v1/evaluation", eval+`}`)["context"].(map[string]any)
	sub, _ := json.Marshal(map[string]any{"evaluation_id": den["evaluation_id"], "expires_at": den["access_request"].(map[string]any)["expires_at"]})
	id := post("/access/v1/requests", eval+`,"denial":`+string(sub)+`}`)["task"].(map[string]any)["id"].(string)
	postAs(bob.Secret, "/v1/approvals/"+id+"/approve", `{}`)
	again := eval + `,"context":{"approval":{"id":"` + id + `"}}}`
	if m := post("/access/v1/evaluation", again); m["decision"] != true {
		t.Fatalf("re-evaluation on the replica: %v", m)
	}
	if m := post("/access/v1/evaluation", again); m["decision"] != false {
		t.Fatalf("second re-evaluation on the replica: %v", m)
	}
}
