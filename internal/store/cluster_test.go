package store

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
)

// startCluster bootstraps the first node and joins the others as voters.
func startCluster(t *testing.T, ids []string, opts ...nodeOpt) []*testNode {
	t.Helper()
	ctx := ctxLong(t)
	nodes := []*testNode{startNode(t, ids[0], t.TempDir(), "", true, opts...)}
	waitUntil(t, "first leader", nodes[0].IsLeader)
	waitUntil(t, "first leader's address", func() bool { return nodes[0].LeaderHTTP() == nodes[0].http })
	for _, id := range ids[1:] {
		n := startNode(t, id, t.TempDir(), "", false, opts...)
		if err := joinRetry(ctx, stores(nodes), n.id, n.RaftAddr(), n.http, true); err != nil {
			t.Fatalf("join %s: %v", id, err)
		}
		nodes = append(nodes, n)
	}
	return nodes
}

func TestClusterReplicationAndFailover(t *testing.T) {
	nodes := startCluster(t, []string{"n1", "n2", "n3"})
	ctx := ctxLong(t)
	leader := waitLeaderAmong(t, nodes...)
	// Wait for the leader to record its own address (after the joins).
	waitUntil(t, "leader address", func() bool { return leader.LeaderHTTP() == leader.http })

	v, err := leader.Publish(ctx, files("p.yaml", "kind: Policy"), "m", "a", t0)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := leader.PutEntities(ctx, []api.Entity{{Type: "user", ID: "u1", Properties: map[string]any{"n": 1}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if err := n.WaitForRevision(ctx, rev); err != nil {
			t.Fatalf("%s: %v", n.id, err)
		}
		cur, ok := n.Current()
		if !ok || cur.VersionInfo != v {
			t.Fatalf("%s: current %+v, want %+v", n.id, cur.VersionInfo, v)
		}
		if p, ok := n.Entity("user", "u1"); !ok || p["n"] != float64(1) {
			t.Fatalf("%s: entity %v %v", n.id, p, ok)
		}
		if got := n.LeaderHTTP(); got != leader.http {
			t.Fatalf("%s: leader http %q, want %q", n.id, got, leader.http)
		}
	}
	want := dump(t, leader.fsm)
	for _, n := range nodes {
		if !bytes.Equal(dump(t, n.fsm), want) {
			t.Fatalf("%s: replica differs from the leader", n.id)
		}
	}

	// Writes on a follower are refused, untouched.
	var f *testNode
	for _, n := range nodes {
		if n != leader {
			f = n
			break
		}
	}
	if _, err := f.Publish(ctx, files("x", "y"), "", "", t0); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("publish on follower: %v", err)
	}
	if _, err := f.PutEntities(ctx, []api.Entity{{Type: "a", ID: "b"}}); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("entities on follower: %v", err)
	}
	if err := f.Join(ctx, "n9", "127.0.0.1:1", "", true); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("join on follower: %v", err)
	}

	// Joining again with the same addresses changes nothing.
	before := leader.AppliedRevision()
	if err := leader.Join(ctx, f.id, f.RaftAddr(), f.http, true); err != nil {
		t.Fatal(err)
	}
	if leader.AppliedRevision() != before {
		t.Fatal("idempotent join wrote to the log")
	}
	ns, err := f.Nodes()
	if err != nil {
		t.Fatal(err)
	}
	roles := map[string]string{}
	for _, n := range ns {
		roles[n.ID] = n.Role
	}
	for _, n := range nodes {
		want := RoleFollower
		if n == leader {
			want = RoleLeader
		}
		if roles[n.id] != want || len(roles) != 3 {
			t.Fatalf("roles %v; leader %s", roles, leader.id)
		}
	}

	// Kill the leader: the other two elect one and take writes again.
	killed := time.Now()
	if err := leader.Kill(); err != nil {
		t.Fatal(err)
	}
	var rest []*testNode
	for _, n := range nodes {
		if n != leader {
			rest = append(rest, n)
		}
	}
	newLeader := waitLeaderAmong(t, rest...)
	var v2 api.VersionInfo
	waitUntil(t, "a write on the new leader", func() bool {
		v2, err = newLeader.Publish(ctx, files("p.yaml", "kind: Policy # 2"), "", "", t0)
		return err == nil
	})
	t.Logf("leader kill → write accepted: %v (informational)", time.Since(killed))
	if v2.Version != 2 || v2.Parent != 1 {
		t.Fatalf("version after failover %+v", v2)
	}
	for _, n := range rest {
		if err := n.WaitForRevision(ctx, v2.Revision); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "new leader's http address", func() bool {
		for _, n := range rest {
			if n.LeaderHTTP() != newLeader.http {
				return false
			}
		}
		return true
	})
}

func TestNonVoterReplicates(t *testing.T) {
	nodes := startCluster(t, []string{"n1"})
	leader := nodes[0]
	ctx := ctxLong(t)
	nv := startNode(t, "r1", t.TempDir(), "", false, func(c *Config) { c.NonVoter = true })
	if err := joinRetry(ctx, stores(nodes), nv.id, nv.RaftAddr(), nv.http, false); err != nil {
		t.Fatal(err)
	}
	rev, err := leader.PutEntities(ctx, []api.Entity{{Type: "table", ID: "t1", Properties: map[string]any{"region": "eu"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := nv.WaitForRevision(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if p, ok := nv.Entity("table", "t1"); !ok || p["region"] != "eu" {
		t.Fatalf("non-voter entity %v %v", p, ok)
	}
	if _, err := nv.PutEntities(ctx, []api.Entity{{Type: "a", ID: "b"}}); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("write on non-voter: %v", err)
	}
	ns, err := leader.Nodes()
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) != 2 || ns[0].ID != "n1" || ns[0].Role != RoleLeader || ns[1].ID != "r1" || ns[1].Role != RoleNonvoter || ns[1].HTTP != nv.http {
		t.Fatalf("nodes %+v", ns)
	}
	if ns[0].AppliedRevision != leader.AppliedRevision() {
		t.Fatalf("leader's applied revision %d, want %d", ns[0].AppliedRevision, leader.AppliedRevision())
	}
	if got := nv.LeaderHTTP(); got != leader.http {
		t.Fatalf("non-voter sees leader http %q", got)
	}

	// Removing it: out of the configuration and the metadata.
	if err := leader.Remove(ctx, nv.id); err != nil {
		t.Fatal(err)
	}
	if ns, _ := leader.Nodes(); len(ns) != 1 {
		t.Fatalf("after remove: %+v", ns)
	}
	if err := leader.Remove(ctx, nv.id); err != nil {
		t.Fatalf("removing again: %v", err)
	}
}

// TestFollowerCatchesUpViaSnapshot: a follower that was down while the
// leader compacted its log past the follower's position gets the state by
// InstallSnapshot (seen as a restore) and continues from the log.
func TestFollowerCatchesUpViaSnapshot(t *testing.T) {
	// Keep 2 trailing entries after a snapshot; snapshots only on demand.
	tm := Timings{TrailingLogs: 2, SnapshotThreshold: 1 << 20, SnapshotInterval: time.Hour}
	nodes := startCluster(t, []string{"n1", "n2", "n3"}, withTimings(tm))
	ctx := ctxLong(t)
	leader := waitLeaderAmong(t, nodes...)
	var lagger *testNode
	for _, n := range nodes {
		if n != leader {
			lagger = n
		}
	}
	rev, err := leader.PutEntities(ctx, []api.Entity{{Type: "user", ID: "u0"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := lagger.WaitForRevision(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if err := lagger.Kill(); err != nil {
		t.Fatal(err)
	}

	for i := 1; i <= 20; i++ {
		if _, err := leader.PutEntities(ctx, []api.Entity{{Type: "user", ID: fmt.Sprint("u", i), Properties: map[string]any{"i": i}}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := leader.Publish(ctx, files("p.yaml", "v1"), "", "", t0); err != nil {
		t.Fatal(err)
	}
	snapRev := leader.AppliedRevision()
	if err := leader.Snapshot(); err != nil {
		t.Fatal(err)
	}
	// Two more entries after the snapshot: they come from the log.
	if _, err := leader.PutEntities(ctx, []api.Entity{{Type: "user", ID: "late"}}); err != nil {
		t.Fatal(err)
	}
	last, err := leader.Rollback(ctx, 1, "", "", t0)
	if err != nil {
		t.Fatal(err)
	}

	back := lagger.restart(t, withTimings(tm))
	if err := back.Ready(); err == nil && back.AppliedRevision() < snapRev {
		t.Fatalf("ready at revision %d before catching up to %d", back.AppliedRevision(), snapRev)
	}
	if err := back.WaitForRevision(ctx, last.Revision); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dump(t, back.fsm), dump(t, leader.fsm)) {
		t.Fatal("caught-up follower differs from the leader")
	}
	waitUntil(t, "caught-up follower ready", func() bool { return back.Ready() == nil })
	var restored *Change
	for _, ch := range back.changes.all() {
		if ch.Kind == ChangeRestore {
			restored = &ch
		}
	}
	if restored == nil || restored.Revision < snapRev || restored.Version == nil || restored.Version.Version != 1 {
		t.Fatalf("no restore from the leader's snapshot (rev ≥ %d) in %+v", snapRev, back.changes.all())
	}
}
