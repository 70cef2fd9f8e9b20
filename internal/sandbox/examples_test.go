package sandbox_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
)

// TestExampleAgents builds the four example agents in examples/agents
// with the plain Go toolchain, registers them from their manifests under
// their policies, deploys them (each passes validation), and runs the
// security and compliance agents end to end: a rogue agent's denied
// quarantine attempts are reported by compliance, and security — the only
// agent allowed to — quarantines it.
func TestExampleAgents(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	dir := "../../examples/agents"
	names := []string{"data", "compliance", "cost", "security"}
	var files []api.File
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n, "policy.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, api.File{Name: n + ".yaml", Data: b})
	}
	if _, err := e.c.Publish(ctx, files, client.PublishOptions{}); err != nil {
		t.Fatalf("the examples' policies: %v", err)
	}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n, "agent.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var doc any
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		j, _ := json.Marshal(doc)
		var m api.AgentManifest
		if err := json.Unmarshal(j, &m); err != nil {
			t.Fatalf("%s/agent.yaml: %v", n, err)
		}
		if _, err := e.c.RegisterAgent(ctx, m); err != nil {
			t.Fatalf("register %s: %v", n, err)
		}
		e.deploy(m.ID, guest(t, "example-"+n))
	}

	// A rogue agent tries to quarantine others: denied, three times.
	reg, err := e.c.RegisterAgent(ctx, api.AgentManifest{ID: "rogue", Version: "1", Capabilities: []string{"kernel.agent.quarantine"}})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		r, err := e.c.Invoke(ctx, reg.Token, "kernel.agent.quarantine", api.InvokeRequest{Input: json.RawMessage(`{"agent":"data","reason":"x"}`)}, client.InvokeOptions{})
		if err == nil && r.Decision != api.Deny {
			t.Fatalf("rogue quarantine: %+v", r)
		}
	}
	e.startAgent("compliance")
	waitFor(t, "the compliance report", func() bool {
		b, ok := e.kv("compliance", "report")
		return ok && strings.Contains(string(b), `"rogue":3`)
	})
	e.startAgent("security")
	waitFor(t, "the rogue agent quarantined", func() bool {
		for _, k := range e.n.Store.ActiveKills() {
			if k.Scope == api.KillAgent && k.Target == "rogue" {
				return true
			}
		}
		return false
	})
	waitFor(t, "security's record of it", func() bool { _, ok := e.kv("security", "quarantined:rogue"); return ok })
}
