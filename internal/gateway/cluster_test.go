package gateway_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/node"
	"github.com/aibos/kernel/internal/node/nodetest"
	"github.com/aibos/kernel/internal/redistest"
)

// Three nodes share their counters through a real redis-server: a rate
// limit holds across nodes, a dead Redis fails closed, approvals and kill
// switches work from any node.
func TestClusterWithRedis(t *testing.T) {
	rs := redistest.Start(t)
	nodes := nodetest.Cluster(t, 3, 0, func(c *node.Config) { c.RedisAddr = rs.Addr() })
	e := setup(t, nodes)
	none := client.InvokeOptions{}
	ctx := context.Background()
	follower := 0
	for i, n := range nodes {
		if !n.Store.IsLeader() {
			follower = i
			break
		}
	}

	// Rate limit 5 per hour per agent, counted across the cluster.
	for i := range 5 {
		if st, _, code := e.invoke(i%3, "clerk", "crm.ping", `{}`, none, ""); st != http.StatusOK {
			t.Fatalf("ping %d on node %d: %d %s", i, i%3, st, code)
		}
	}
	for i := range 3 {
		if st, _, code := e.invoke(i, "clerk", "crm.ping", `{}`, none, ""); st != http.StatusTooManyRequests || code != "rate_limited" {
			t.Fatalf("ping past the shared limit on node %d: %d %s", i, st, code)
		}
	}

	// An approval asked on a follower is created through the leader, and
	// redeemed on another node, once.
	st, held, code := e.invoke(follower, "clerk", "crm.refund", `{"amount":250}`, none, "")
	if st != http.StatusAccepted {
		t.Fatalf("hold on a follower: %d %s", st, code)
	}
	if _, err := e.as("alice").Approve(ctx, held.ApprovalID, "alice", "ok"); err != nil {
		t.Fatal(err)
	}
	e.sync()
	other := (follower + 1) % 3
	if st, _, code := e.invoke(other, "clerk", "crm.refund", `{"amount":250}`, none, held.ApprovalID); st != http.StatusOK {
		t.Fatalf("redeem on node %d: %d %s", other, st, code)
	}
	if st, _, _ := e.invoke(follower, "clerk", "crm.refund", `{"amount":250}`, none, held.ApprovalID); st != http.StatusConflict {
		t.Fatalf("second redeem on node %d: %d", follower, st)
	}

	// A kill switch set through the leader cancels an invocation running
	// on a follower.
	done := make(chan int, 1)
	go func() {
		st, _, _ := e.invoke(follower, "clerk", "crm.slow", `{}`, none, "")
		done <- st
	}()
	<-e.be.slowIn
	k, err := e.as("oncall").Kill(ctx, api.KillRequest{Scope: api.KillTenant, Target: "acme", Reason: "incident 7", By: "oncall"})
	if err != nil {
		t.Fatal(err)
	}
	if st := <-done; st != http.StatusConflict {
		t.Fatalf("in-flight invocation on a follower: %d", st)
	}
	<-e.be.slowOut
	if _, err := e.as("oncall").LiftKill(ctx, k.ID, "oncall", "resolved"); err != nil {
		t.Fatal(err)
	}
	e.sync()

	// Redis goes away: metered actions fail closed, with a clear error.
	rs.Stop()
	for i := range 3 {
		st, _, code := e.invoke(i, "clerk", "crm.spend", `{"amount":1}`, none, "")
		if st != http.StatusServiceUnavailable || code != "limits_unavailable" {
			t.Fatalf("spend with Redis down on node %d: %d %s", i, st, code)
		}
	}
	if n := e.be.count("crm.spend"); n != 0 {
		t.Fatalf("backend called %d times while Redis was down", n)
	}
}
