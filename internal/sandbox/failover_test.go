package sandbox_test

import (
	"context"
	"github.com/tetratelabs/wazero"
	"net/http"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/node"
	"github.com/aibos/kernel/internal/node/nodetest"
	"github.com/aibos/kernel/internal/sandbox"
	"github.com/aibos/kernel/internal/store"
)

// TestFailoverMovesAgent: one agent, placed on the least loaded voter
// (the first, which leads unless an election moved it); the other nodes
// have its module compiled ahead; killing the node it runs on moves it to
// another within 5 s, in a new epoch.
func TestFailoverMovesAgent(t *testing.T) {
	// Compile the guest into the shared cache first: three nodes compiling
	// it at once on two cores (and under -race) would race the test's
	// deadlines, and a node's cold compile is not what this test is about.
	wasm := guest(t, "agent")
	warmCache(t, wasm)
	nodes := cluster3(t)
	ctx := context.Background()
	c := nodetest.Client(t, nodes...)
	if _, err := c.Publish(ctx, []api.File{{Name: "p.yaml", Data: []byte(policy)}}, client.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, n: nodes[0], c: c}
	e.register("a1", "echo", nil)
	e.deploy("a1", wasm)
	e.startAgent("a1")
	var host *node.Node
	var others []*node.Node
	waitFor(t, "running on its node", func() bool {
		s := e.status("a1")
		if s.State != api.RuntimeRunning || s.Placement == nil || s.Placement.Node != s.Node {
			return false
		}
		host, others = nil, nil
		for _, n := range nodes {
			if n.Config().NodeID == s.Node {
				host = n
			} else {
				others = append(others, n)
			}
		}
		return host != nil
	})
	wasLeader := host.Store.IsLeader()
	epoch := host.Sandbox.Status("a1").Epoch
	waitFor(t, "the followers to compile the module", func() bool {
		return others[0].Sandbox.Compiled() > 0 && others[1].Sandbox.Compiled() > 0
	})

	killed := time.Now()
	if err := host.Kill(); err != nil {
		t.Fatal(err)
	}
	var moved api.AgentRuntime
	waitFor(t, "the agent on another node", func() bool {
		for _, n := range others {
			if s := n.Sandbox.Status("a1"); s.State == api.RuntimeRunning && s.Node == n.Config().NodeID && s.Epoch > epoch {
				moved = s
				return true
			}
		}
		return false
	})
	d := time.Since(killed)
	t.Logf("agent moved to %s (epoch %d → %d) %v after its node (leader: %v) was killed", moved.Node, epoch, moved.Epoch, d, wasLeader)
	// The race detector slows everything here several times over; the
	// 5 s of the issue is held without it.
	limit := 5 * time.Second
	if raceEnabled {
		limit = 30 * time.Second
	}
	if d > limit {
		t.Errorf("the agent moved after %v; want ≤ %v", d, limit)
	}
	// The moved agent still acts through the gateway on its new node.
	for _, n := range others {
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

// cluster3 starts three nodes that share the package's compilation cache.
func cluster3(t *testing.T) []*node.Node {
	return nodetest.Cluster(t, 3, 0, func(c *node.Config) {
		c.Sandbox = sandbox.Config{Backoff: 5 * time.Millisecond, ParkAfter: time.Minute, CacheDir: sharedCache()}
		// A Go guest is megabytes: replicating it to two followers under
		// -race on two cores can outlast the 200 ms defaults, and the
		// leader then steps down mid-deploy. A second's lease keeps the
		// setup steady; the move is still bounded at 5 s.
		c.Timings = store.Timings{HeartbeatTimeout: time.Second, ElectionTimeout: time.Second, LeaderLeaseTimeout: time.Second}
	})
}

// warmCache compiles wasm into sharedCache as the runtime would (the
// cache key covers the module and the runtime's termination setting).
func warmCache(t *testing.T, wasm []byte) {
	t.Helper()
	ctx := context.Background()
	cache, err := wazero.NewCompilationCacheWithDir(sharedCache())
	if err != nil {
		t.Fatal(err)
	}
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(cache).WithCloseOnContextDone(true))
	defer r.Close(ctx)
	if _, err := r.CompileModule(ctx, wasm); err != nil {
		t.Fatal(err)
	}
}
