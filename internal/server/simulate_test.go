package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/node"
	"github.com/aibos/kernel/internal/simulate"
)

const writersBundle = `kind: Policy
name: data
layer: platform
rules:
  - name: agents-read
    effect: allow
    actions: ["data.read"]
  - name: agents-write
    effect: allow
    actions: ["data.write"]
`

// The candidate stops agent-2 writing and asks approval for agent-1's.
const writersCandidate = writersBundle + `  - name: no-agent-2-writes
    effect: deny
    actions: ["data.write"]
    when: subject.id == "agent-2"
  - name: approve-agent-1-writes
    effect: require_approval
    actions: ["data.write"]
    when: subject.id == "agent-1"
`

func TestSimulateOverHTTP(t *testing.T) {
	n, c := startNode(t, func(cfg *node.Config) { cfg.DecisionLogSample = 1 })
	ctx := context.Background()
	if _, err := c.Publish(ctx, []api.File{{Name: "b.yaml", Data: []byte(writersBundle)}}, client.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	check := func(subject, action string) api.CheckRequest {
		return api.CheckRequest{Subject: api.Entity{Type: "agent", ID: subject}, Action: api.Action{Name: action},
			Resource: api.Entity{Type: "table", ID: "orders"}, MinRevision: 1}
	}
	for range 10 {
		if d, err := c.Check(ctx, check("agent-1", "data.read")); err != nil || d.Decision != api.Allow {
			t.Fatal(d, err)
		}
	}
	for range 3 {
		if _, err := c.Check(ctx, check("agent-1", "data.write")); err != nil {
			t.Fatal(err)
		}
	}
	batch := []api.CheckRequest{check("agent-2", "data.write"), check("agent-2", "data.write"), check("agent-2", "data.read"), check("agent-2", "data.write")}
	if _, err := c.CheckBatch(ctx, batch); err != nil {
		t.Fatal(err)
	}
	az := `{"subject":{"type":"agent","id":"agent-2"},"action":{"name":"data.write"},"resource":{"type":"table","id":"orders"}}`
	resp, err := post(t, n, "/access/v1/evaluation", "application/json", strings.NewReader(az))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatal(resp, err)
	}
	resp.Body.Close()

	resp, err = post(t, n, "/v1/policies/simulate?since=1h", "application/yaml", bytes.NewReader([]byte(writersCandidate)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rep simulate.Report
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, %v", resp.StatusCode, err)
	}
	if rep.Replayed != 18 || rep.Changed != 7 {
		t.Fatalf("replayed %d changed %d, want 18 and 7: %+v", rep.Replayed, rep.Changed, rep)
	}
	wantFlips := map[string]int{"allow→deny": 4, "allow→require_approval": 3}
	if !equal(rep.Flips, wantFlips) {
		t.Errorf("flips %v, want %v", rep.Flips, wantFlips)
	}
	if g := rep.ByRule["data/no-agent-2-writes"]; !equal(g, map[string]int{"allow→deny": 4}) {
		t.Errorf("by rule %v", rep.ByRule)
	}
	if g := rep.BySubject["agent:agent-1"]; !equal(g, map[string]int{"allow→require_approval": 3}) {
		t.Errorf("by subject %v", rep.BySubject)
	}
	if g := rep.ByAction["data.write"]; !equal(g, wantFlips) || len(rep.ByAction) != 1 {
		t.Errorf("by action %v", rep.ByAction)
	}
	if len(rep.Samples) != 7 || rep.Samples[0].Request.Action.Name != "data.write" {
		t.Errorf("samples %+v", rep.Samples)
	}

	// A bad candidate is refused with its errors.
	resp2, err := post(t, n, "/v1/policies/simulate", "application/yaml", strings.NewReader("kind: Policy\nname: [\n"))
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusBadRequest {
		t.Errorf("bad candidate: status %d", resp2.StatusCode)
	}
}

func equal(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
