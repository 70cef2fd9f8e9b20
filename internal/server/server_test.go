package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/node"
	"github.com/aibos/kernel/internal/node/nodetest"
)

// startNode runs a real single-node kernel (Raft, store, HTTP) on loopback.
func startNode(t testing.TB, mod ...func(*node.Config)) (*node.Node, *client.Client) {
	t.Helper()
	cfg := nodetest.Config(t, "n1")
	for _, m := range mod {
		m(&cfg)
	}
	n := nodetest.Start(t, cfg)
	c, err := client.New([]string{n.URL()}, client.Options{Token: nodetest.Token(n)})
	if err != nil {
		t.Fatal(err)
	}
	rootTokens.Store(n.URL(), nodetest.Token(n))
	return n, c
}

// rootTokens maps a test node's URL to its root token, for do.
var rootTokens sync.Map

const residencyBundle = `kind: Policy
name: data-residency
layer: platform
rules:
  - name: no-pii-across-regions
    effect: deny
    actions: ["data.*"]
    when: >
      has(resource.properties.classification) && resource.properties.classification == "pii" &&
      resource.properties.region != context.region
    message: PII stays in its home region
  - name: same-region-reads
    effect: allow
    actions: ["data.query"]
    when: resource.properties.region == context.region
---
kind: Policy
name: tenant-admins
layer: tenant
rules:
  - name: admins-only
    effect: allow
    actions: ["data.query"]
    when: '"admin" in subject.properties.roles'
---
kind: Test
name: t
entities:
  - {type: agent, id: a1, properties: {roles: [admin]}}
cases:
  - name: admin reads local data
    request: {subject: {type: agent, id: a1}, action: {name: data.query},
              resource: {type: table, id: t1, properties: {region: eu}}, context: {region: eu}}
    expect: allow
`

func file(name, data string) []api.File { return []api.File{{Name: name, Data: []byte(data)}} }

func check(subject string, roles []any, region string) api.CheckRequest {
	s := api.Entity{Type: "agent", ID: subject}
	if roles != nil {
		s.Properties = map[string]any{"roles": roles}
	}
	return api.CheckRequest{
		Subject:  s,
		Action:   api.Action{Name: "data.query"},
		Resource: api.Entity{Type: "table", ID: "t1", Properties: map[string]any{"region": "eu"}},
		Context:  map[string]any{"region": region},
	}
}

func TestPublishCheckVersionsRollback(t *testing.T) {
	n, c := startNode(t)
	alice := nodetest.ClientAs(t, "alice", []string{"admin"}, n)
	ctx := context.Background()

	d, err := c.Check(ctx, check("a1", []any{"admin"}, "eu"))
	if err != nil {
		t.Fatal(err)
	}
	if d.Decision != api.Deny || d.Version != 0 {
		t.Fatalf("before any bundle: got %s at version %d, want deny at 0", d.Decision, d.Version)
	}

	v1, err := alice.Publish(ctx, file("b.yaml", residencyBundle), client.PublishOptions{Message: "first", Author: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if v1.Version != 1 || v1.Revision == 0 {
		t.Fatalf("publish: %+v", v1)
	}
	req := check("a1", []any{"admin"}, "eu")
	req.MinRevision = v1.Revision
	d, err = c.Check(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if d.Decision != api.Allow || d.Version != 1 || d.Revision < v1.Revision {
		t.Fatalf("admin in region: %+v", d)
	}
	if len(d.Reasons) != 2 {
		t.Fatalf("want the two allow rules as reasons, got %+v", d.Reasons)
	}
	d, _ = c.Check(ctx, check("a1", []any{"viewer"}, "eu"))
	if d.Decision != api.Deny || len(d.Reasons) != 1 || d.Reasons[0].Layer != "tenant" {
		t.Fatalf("viewer: want implicit deny by the tenant layer, got %+v", d)
	}

	// A second version that denies everything in the tenant layer.
	v2, err := c.Publish(ctx, file("b.yaml", strings.Replace(residencyBundle, `'"admin" in subject.properties.roles'`, "false", 1)), client.PublishOptions{})
	if err == nil || !isCode(err, "bundle_tests_failed") {
		t.Fatalf("a bundle whose tests fail must be rejected with bundle_tests_failed, got %v (%+v)", err, v2)
	}
	vs, _ := c.Versions(ctx)
	if len(vs) != 1 {
		t.Fatalf("a rejected publish must change nothing; versions: %+v", vs)
	}

	noTests := residencyBundle[:strings.Index(residencyBundle, "---\nkind: Test")]
	v2, err = c.Publish(ctx, file("b.yaml", strings.Replace(noTests, `'"admin" in subject.properties.roles'`, "false", 1)), client.PublishOptions{Message: "lock down"})
	if err != nil {
		t.Fatal(err)
	}
	req.MinRevision = v2.Revision
	if d, _ = c.Check(ctx, req); d.Decision != api.Deny || d.Version != 2 {
		t.Fatalf("after v2: %+v", d)
	}

	rb, err := c.Rollback(ctx, 1, "undo lock down")
	if err != nil {
		t.Fatal(err)
	}
	if rb.Version != 3 || rb.Hash != v1.Hash {
		t.Fatalf("rollback: got %+v, want version 3 with v1's hash %s", rb, v1.Hash)
	}
	req.MinRevision = rb.Revision
	if d, _ = c.Check(ctx, req); d.Decision != api.Allow || d.Version != 3 {
		t.Fatalf("after rollback: %+v", d)
	}
	vs, _ = c.Versions(ctx)
	if len(vs) != 3 || vs[2].RollbackOf != 1 || vs[0].Author != "alice" || vs[0].Message != "first" || vs[2].Parent != 2 {
		t.Fatalf("versions: %+v", vs)
	}
	if _, err := c.Rollback(ctx, 42, ""); !isCode(err, "not_found") {
		t.Fatalf("rollback to a missing version: %v", err)
	}
	cur, err := c.Current(ctx)
	if err != nil || cur.Version != 3 || string(cur.Files[0].Data) != residencyBundle {
		t.Fatalf("current: %v %+v", err, cur.VersionInfo)
	}
}

func TestInvalidBundleReportsEveryError(t *testing.T) {
	_, c := startNode(t)
	bad := `kind: Policy
name: p
layer: nowhere
rules:
  - name: r
    effect: permit
    actions: ["da*ta"]
    when: subject.propertys.x == 1
    bogus: 1
`
	_, err := c.Publish(context.Background(), file("bad.yaml", bad), client.PublishOptions{})
	var apiErr *client.Error
	if !errors.As(err, &apiErr) || apiErr.Code != "invalid_bundle" || apiErr.Status != 400 {
		t.Fatalf("got %v", err)
	}
	joined := strings.Join(apiErr.Details, "\n")
	for _, want := range []string{"bad.yaml:1:1", "unknown layer", "bad.yaml:6:13", "invalid effect", "bad.yaml:7:15", "bad.yaml:9:5", "unknown field \"bogus\""} {
		if !strings.Contains(joined, want) {
			t.Errorf("details lack %q:\n%s", want, joined)
		}
	}
	if vs, _ := c.Versions(context.Background()); len(vs) != 0 {
		t.Fatalf("nothing may be published: %+v", vs)
	}
}

func TestEntitiesOverrideCallerAndMinRevision(t *testing.T) {
	_, c := startNode(t)
	ctx := context.Background()
	if _, err := c.Publish(ctx, file("b.yaml", residencyBundle), client.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	rev, err := c.PutEntities(ctx, []api.Entity{{Type: "agent", ID: "a2", Properties: map[string]any{"roles": []any{"viewer"}}}})
	if err != nil {
		t.Fatal(err)
	}
	e, err := c.Entity(ctx, "agent", "a2", rev)
	if err != nil || e.Properties["roles"].([]any)[0] != "viewer" {
		t.Fatalf("read back: %v %+v", err, e)
	}
	// The caller claims admin; the stored roles say viewer and win.
	req := check("a2", []any{"admin"}, "eu")
	req.MinRevision = rev
	d, err := c.Check(ctx, req)
	if err != nil || d.Decision != api.Deny {
		t.Fatalf("forged role must be ignored: %v %+v", err, d)
	}
	drev, err := c.DeleteEntity(ctx, "agent", "a2")
	if err != nil || drev <= rev {
		t.Fatalf("delete: %v rev %d", err, drev)
	}
	req.MinRevision = drev
	if d, _ = c.Check(ctx, req); d.Decision != api.Allow {
		t.Fatalf("after delete the caller's properties apply: %+v", d)
	}
	if _, err := c.DeleteEntity(ctx, "agent", "a2"); !isCode(err, "not_found") {
		t.Fatalf("deleting a missing entity: %v", err)
	}
	if _, err := c.Entity(ctx, "agent", "a2", 0); !isCode(err, "not_found") {
		t.Fatalf("reading a missing entity: %v", err)
	}
}

func TestMinRevisionNotReachedIsAClearError(t *testing.T) {
	n, _ := startNode(t, func(c *node.Config) { c.MinRevisionWait = 100 * time.Millisecond })
	resp, body := do(t, n.URL(), "POST", "/v1/check", `{"subject":{"type":"a","id":"1"},"action":{"name":"x.y"},"resource":{"type":"r","id":"1"},"min_revision":999999}`)
	if resp.StatusCode != 503 || !strings.Contains(body, "revision_not_applied") || !strings.Contains(body, "999999") {
		t.Fatalf("got %d %s", resp.StatusCode, body)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	n, c := startNode(t)
	ctx := context.Background()
	if _, err := c.Publish(ctx, file("b.yaml", residencyBundle), client.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	before := n.Store.AppliedRevision()
	cases := []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/v1/check", `{`, 400},
		{"POST", "/v1/check", `{"action":{"name":""}}`, 400},
		{"POST", "/v1/check", `{"action":{"name":"x"},"bogus":1}`, 400},
		{"POST", "/v1/check", `{"action":{"name":"x"}} {}`, 400},
		{"POST", "/v1/check", `[]`, 400},
		{"POST", "/v1/check/batch", `{"checks":[{"action":{"name":"a"}},{]}`, 400},
		{"PUT", "/v1/policies", ``, 400},
		{"PUT", "/v1/policies", "kind: Policy\nname: [", 400},
		{"PUT", "/v1/policies", "kind: Nope\n", 400},
		{"POST", "/v1/policies/rollback", `{"to":0}`, 400},
		{"POST", "/v1/policies/rollback", `{"to":"one"}`, 400},
		{"PUT", "/v1/entities", `{"entities":[]}`, 400},
		{"PUT", "/v1/entities", `{"entities":[{"type":"","id":"x"}]}`, 400},
		{"PUT", "/v1/entities", `{"entities":{}}`, 400},
		{"GET", "/v1/policies/versions/abc", ``, 400},
		{"GET", "/v1/policies/versions/77", ``, 404},
		{"POST", "/v1/cluster/join", `{"id":""}`, 400},
		{"POST", "/v1/cluster/remove", `{}`, 400},
		{"GET", "/nope", ``, 404},
	}
	for _, tc := range cases {
		resp, body := do(t, n.URL(), tc.method, tc.path, tc.body)
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s %q: status %d, want %d: %s", tc.method, tc.path, tc.body, resp.StatusCode, tc.status, body)
			continue
		}
		var eb api.ErrorBody
		if err := json.Unmarshal([]byte(body), &eb); err != nil || eb.Error.Code == "" || eb.Error.Message == "" {
			t.Errorf("%s %s: error body %q is not {error:{code,message}}", tc.method, tc.path, body)
		}
	}
	if after := n.Store.AppliedRevision(); after != before {
		t.Fatalf("bad input changed the state: revision %d → %d", before, after)
	}
}

func TestHealthReadyMetricsCluster(t *testing.T) {
	n, c := startNode(t, func(c *node.Config) { c.Region = "eu-west" })
	for _, p := range []string{"/healthz", "/readyz"} {
		if resp, body := do(t, n.URL(), "GET", p, ""); resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", p, resp.StatusCode, body)
		}
	}
	c.Check(context.Background(), check("a1", nil, "eu"))
	_, body := do(t, n.URL(), "GET", "/metrics", "")
	for _, m := range []string{"aibos_decisions_total{decision=\"deny\"} 1", "aibos_decision_duration_seconds", "aibos_bundle_version"} {
		if !strings.Contains(body, m) {
			t.Errorf("metrics lack %q", m)
		}
	}
	cl, err := c.Cluster(context.Background())
	if err != nil || cl.Region != "eu-west" || cl.Leader != "n1" || len(cl.Nodes) != 1 || cl.Nodes[0].Role != "leader" || cl.Nodes[0].HTTP != n.HTTPAddr() {
		t.Fatalf("cluster: %v %+v", err, cl)
	}
}

// do sends a request to base with the root token of the node there (see
// startNode).
func do(t testing.TB, base, method, path, body string) (*http.Response, string) {
	t.Helper()
	tok, _ := rootTokens.Load(base)
	s, _ := tok.(string)
	return doAs(t, base, s, method, path, body)
}

// doAs sends a request to base with token ("" for none).
func doAs(t testing.TB, base, token, method, path, body string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = bytes.NewBufferString(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// post is http.Post to node n with its root token.
func post(t testing.TB, n *node.Node, path, ctype string, body io.Reader) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, n.URL()+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", ctype)
	return http.DefaultClient.Do(nodetest.Authorize(req, n))
}

func isCode(err error, code string) bool {
	var e *client.Error
	return errors.As(err, &e) && e.Code == code
}
