package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/node/nodetest"
)

// TestApproveAccessRequest: an AuthZEN access request is listed and
// approved with the approval commands, like a held invocation.
func TestApproveAccessRequest(t *testing.T) {
	n := nodetest.Start(t, nodetest.Config(t, "n1"))
	c := nodetest.Client(t, n)
	bundle := "kind: Policy\nname: p\nlayer: tenant\nrules:\n  - {name: ask, effect: require_approval, actions: [doc.read]}\n"
	if _, err := c.Publish(context.Background(), []api.File{{Name: "p.yaml", Data: []byte(bundle)}}, client.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	post := func(path, body string) map[string]any {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, n.URL()+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(nodetest.Authorize(req, n))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var v map[string]any
		if err := json.Unmarshal(raw, &v); err != nil || resp.StatusCode >= 300 {
			t.Fatalf("POST %s: %d %s", path, resp.StatusCode, raw)
		}
		return v
	}
	eval := `{"subject":{"type":"user","id":"alice"},"action":{"name":"doc.read"},"resource":{"type":"doc","id":"d1"}`
	den := post("/access/v1/evaluation", eval+`}`)["context"].(map[string]any)
	sub, _ := json.Marshal(map[string]any{"evaluation_id": den["evaluation_id"], "expires_at": den["access_request"].(map[string]any)["expires_at"]})
	id := post("/access/v1/requests", eval+`,"denial":`+string(sub)+`}`)["task"].(map[string]any)["id"].(string)

	cl := newCLI(t, n, n.URL())
	if r := cl.run("approval", "list"); r.code != exitOK || !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, "user:alice ") {
		t.Fatalf("approval list: %s %s", r.stdout, r.stderr)
	}
	if r := cl.run("approval", "approve", id, "--as", "bob", "--reason", "ok"); r.code != exitOK {
		t.Fatalf("approval approve: %s", r.stderr)
	}
	again := eval + `,"context":{"approval":{"id":"` + id + `"}}}`
	if v := post("/access/v1/evaluation", again); v["decision"] != true {
		t.Fatalf("re-evaluation after aibos approval approve: %v", v)
	}
	if v := post("/access/v1/evaluation", again); v["decision"] != false {
		t.Fatalf("second re-evaluation: %v", v)
	}
}
