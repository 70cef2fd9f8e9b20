package sandbox_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/node"
	"github.com/aibos/kernel/internal/node/nodetest"
	"github.com/aibos/kernel/internal/sandbox"
)

// TestFailoverMovesAgent: an agent runs on the leader; the followers have
// its module compiled ahead; killing the leader moves the agent to the new
// leader within 5 s, in a new epoch.
func TestFailoverMovesAgent(t *testing.T) {
	nodes := nodetest.Cluster(t, 3, 0, func(c *node.Config) {
		c.Sandbox = sandbox.Config{Backoff: 5 * time.Millisecond, ParkAfter: time.Minute}
	})
	ctx := context.Background()
	c := nodetest.Client(t, nodes...)
	if _, err := c.Publish(ctx, []api.File{{Name: "p.yaml", Data: []byte(policy)}}, client.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, n: nodes[0], c: c}
	e.register("a1", "echo", nil)
	e.deploy("a1", guest(t, "agent"))
	e.startAgent("a1")
	waitFor(t, "running on n1", func() bool { s := e.status("a1"); return s.State == api.RuntimeRunning && s.Node == "n1" })
	epoch := e.status("a1").Epoch
	waitFor(t, "the followers to compile the module", func() bool {
		return nodes[1].Sandbox.Compiled() > 0 && nodes[2].Sandbox.Compiled() > 0
	})

	killed := time.Now()
	if err := nodes[0].Kill(); err != nil {
		t.Fatal(err)
	}
	var moved api.AgentRuntime
	waitFor(t, "the agent on another node", func() bool {
		for _, n := range nodes[1:] {
			if s := n.Sandbox.Status("a1"); s.State == api.RuntimeRunning && s.Node == n.Config().NodeID && s.Epoch > epoch {
				moved = s
				return true
			}
		}
		return false
	})
	d := time.Since(killed)
	t.Logf("agent moved to %s (epoch %d → %d) %v after the leader was killed", moved.Node, epoch, moved.Epoch, d)
	if d > 5*time.Second {
		t.Errorf("the agent moved after %v; want ≤ 5 s", d)
	}
	// The moved agent still acts through the gateway on its new node.
	for _, n := range nodes[1:] {
		if n.Config().NodeID != moved.Node {
			continue
		}
		req, _ := http.NewRequest("POST", n.URL()+"/v1/agents/a1/messages", nil)
		req.Header.Set("Authorization", "Bearer "+nodetest.Token(nodes[0]))
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusAccepted {
			t.Fatalf("message to the moved agent: %v %v", err, resp)
		}
		resp.Body.Close()
	}
}
