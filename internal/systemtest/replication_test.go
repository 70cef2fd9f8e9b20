package systemtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/store"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitLong)
	t.Cleanup(cancel)
	return ctx
}

// TestPublishThroughFollower publishes through a follower, which forwards
// to the leader, and then reads the new version from every node with
// min_revision: the version list and the decisions.
func TestPublishThroughFollower(t *testing.T) {
	c := startCluster(t, 3)
	ctx := testContext(t)
	leader := c.leaderAmong()
	follower := c.others(leader)[0]

	pub := c.publish(ctx, c.client(follower), "v1")
	if pub.Version != 1 || pub.Revision == 0 {
		t.Fatalf("publish answered %+v, want version 1 and a revision", pub)
	}
	for _, m := range c.members {
		vs, err := versionsAt(ctx, m, pub.Revision)
		if err != nil {
			t.Fatalf("%s: versions with min_revision %d: %v", m.id, pub.Revision, err)
		}
		if len(vs) != 1 || vs[0].Version != pub.Version || vs[0].Revision != pub.Revision || vs[0].Hash != pub.Hash {
			t.Errorf("%s: versions %+v, want the one published %+v", m.id, vs, pub)
		}
		d, err := c.strictClient(m).Check(ctx, queryBy("a1", pub.Revision))
		if err != nil {
			t.Fatalf("%s: check with min_revision %d: %v", m.id, pub.Revision, err)
		}
		if d.Version != pub.Version || d.Revision < pub.Revision {
			t.Errorf("%s: decided with version %d at revision %d, want version %d at ≥ %d", m.id, d.Version, d.Revision, pub.Version, pub.Revision)
		}
	}
}

// TestRestartFromDisk stops a follower, writes while it is down, restarts
// it from its data dir and checks it catches up; then restarts the whole
// cluster, so that the state can only come from disk.
func TestRestartFromDisk(t *testing.T) {
	c := startCluster(t, 3)
	ctx := testContext(t)
	cl := c.client(c.members...)
	c.publish(ctx, cl, "v1")
	rev1 := putEntities(t, ctx, cl, api.Entity{Type: "agent", ID: "a1", Properties: map[string]any{"roles": []any{"reader"}}})
	c.waitConverged(rev1)
	f := c.others(c.leaderAmong())[0]
	if err := f.stop(); err != nil {
		t.Fatalf("stop %s: %v", f.id, err)
	}

	survivors := newClient(t, waitLong, c.others(f)...)
	pub2 := c.publish(ctx, survivors, "v2")
	rev2 := putEntities(t, ctx, survivors, api.Entity{Type: "agent", ID: "a2", Properties: map[string]any{"roles": []any{"writer"}}})

	if err := f.start(); err != nil {
		t.Fatalf("restart %s: %v", f.id, err)
	}
	c.waitReady(f)
	checkState := func(m *member) {
		t.Helper()
		fc := c.strictClient(m)
		for id, role := range map[string]string{"a1": "reader", "a2": "writer"} {
			e, err := fc.Entity(ctx, "agent", id, rev2)
			if err != nil {
				t.Fatalf("%s: entity %s with min_revision %d: %v", m.id, id, rev2, err)
			}
			if roles, _ := e.Properties["roles"].([]any); len(roles) != 1 || roles[0] != role {
				t.Errorf("%s: entity %s has %v, want roles [%s]", m.id, id, e.Properties, role)
			}
		}
		vs, err := versionsAt(ctx, m, rev2)
		if err != nil {
			t.Fatalf("%s: versions: %v", m.id, err)
		}
		if len(vs) != 2 || vs[1].Version != pub2.Version || vs[1].Hash != pub2.Hash {
			t.Errorf("%s: versions %+v, want 2 ending with %+v", m.id, vs, pub2)
		}
		d, err := fc.Check(ctx, queryBy("a1", rev2))
		if err != nil {
			t.Fatalf("%s: check: %v", m.id, err)
		}
		if d.Decision != api.Allow || d.Version != pub2.Version {
			t.Errorf("%s: decision %s with version %d, want allow with version %d", m.id, d.Decision, d.Version, pub2.Version)
		}
	}
	checkState(f)

	// Every node down at once, then up again: nobody holds the state in
	// memory, so it comes from the raft log and snapshots on disk.
	for _, m := range c.members {
		if err := m.stop(); err != nil {
			t.Fatalf("stop %s: %v", m.id, err)
		}
	}
	for _, m := range c.members {
		if err := m.start(); err != nil {
			t.Fatalf("restart %s: %v", m.id, err)
		}
	}
	for _, m := range c.members {
		c.waitReady(m)
	}
	c.waitConverged(rev2)
	for _, m := range c.members {
		checkState(m)
	}
}

// snapshotIDs lists the raft snapshots in a node's data dir
// (raft/snapshots/<term>-<index>-<time>, hashicorp/raft's file snapshot
// store).
func snapshotIDs(t *testing.T, dataDir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dataDir, "raft", "snapshots"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range ents {
		if e.IsDir() && !strings.HasSuffix(e.Name(), ".tmp") {
			ids = append(ids, e.Name())
		}
	}
	return ids
}

// TestCatchUpFromSnapshot stops a follower, writes far past the log the
// leader keeps (small TrailingLogs, snapshot forced), and restarts it: it
// can only catch up by installing the leader's snapshot. The restarted
// follower cannot take snapshots of its own (huge threshold), so a new
// snapshot in its data dir is the one it installed.
func TestCatchUpFromSnapshot(t *testing.T) {
	c := startCluster(t, 3, withTimings(store.Timings{
		SnapshotThreshold: 16,
		TrailingLogs:      4,
		SnapshotInterval:  50 * time.Millisecond,
	}))
	ctx := testContext(t)
	cl := c.client(c.members...)
	pub := c.publish(ctx, cl, "v1")
	c.waitConverged(pub.Revision)
	f := c.others(c.leaderAmong())[0]
	if err := f.stop(); err != nil {
		t.Fatalf("stop %s: %v", f.id, err)
	}
	before := snapshotIDs(t, f.dataDir())

	survivors := newClient(t, waitLong, c.others(f)...)
	const writes = 100
	var last uint64
	for i := range writes {
		last = putEntities(t, ctx, survivors, api.Entity{Type: "kv", ID: "k" + strconv.Itoa(i%10), Properties: map[string]any{"v": strconv.Itoa(i)}})
	}
	leader := c.leaderAmong(c.others(f)...)
	if err := leader.node().Store.Snapshot(); err != nil {
		t.Fatalf("snapshot on leader %s: %v", leader.id, err)
	}

	f.mu.Lock()
	f.cfg.Timings.SnapshotThreshold = 1 << 40
	f.cfg.Timings.SnapshotInterval = time.Hour
	f.mu.Unlock()
	if err := f.start(); err != nil {
		t.Fatalf("restart %s: %v", f.id, err)
	}
	c.waitReady(f)
	c.waitConverged(last)

	var installed []string
	for _, id := range snapshotIDs(t, f.dataDir()) {
		if !slices.Contains(before, id) {
			installed = append(installed, id)
		}
	}
	if len(installed) == 0 {
		t.Errorf("%s caught up without installing a snapshot (snapshots before %v, after %v)", f.id, before, snapshotIDs(t, f.dataDir()))
	}
	t.Logf("%s installed snapshot(s) %v", f.id, installed)
	fc := c.strictClient(f)
	for k := range 10 {
		e, err := fc.Entity(ctx, "kv", "k"+strconv.Itoa(k), last)
		if err != nil {
			t.Fatalf("%s: entity k%d: %v", f.id, k, err)
		}
		if want := strconv.Itoa(writes - 10 + k); e.Properties["v"] != want {
			t.Errorf("%s: k%d = %v, want %s", f.id, k, e.Properties["v"], want)
		}
	}
	d, err := fc.Check(ctx, queryBy("a1", last))
	if err != nil {
		t.Fatal(err)
	}
	if d.Version != pub.Version {
		t.Errorf("%s decides with version %d after the snapshot, want %d", f.id, d.Version, pub.Version)
	}
}

// TestNonVoter joins a non-voting replica: the cluster reports it as
// "nonvoter", it forwards writes, and it answers min_revision requests
// only once it has applied the revision.
func TestNonVoter(t *testing.T) {
	c := startCluster(t, 3, withMinRevisionWait(500*time.Millisecond))
	ctx := testContext(t)
	nv := c.add("n4", true)
	c.waitReady(nv)

	for _, m := range c.members {
		eventually(t, waitLong, m.id+" reports n4 as a non-voter", func() error {
			cl, err := c.strictClient(m).Cluster(ctx)
			if err != nil {
				return err
			}
			roles := map[string]int{}
			for _, n := range cl.Nodes {
				roles[n.Role]++
				if n.ID == "n4" && n.Role != store.RoleNonvoter {
					return fmt.Errorf("n4 has role %q", n.Role)
				}
			}
			if roles[store.RoleNonvoter] != 1 || roles[store.RoleLeader] != 1 || roles[store.RoleFollower] != 2 {
				return fmt.Errorf("roles %v, want 1 leader, 2 followers, 1 nonvoter", roles)
			}
			return nil
		})
	}

	cl := c.client(c.members[:3]...)
	putEntities(t, ctx, cl, api.Entity{Type: "agent", ID: "a1", Properties: map[string]any{"roles": []any{"reader"}}})
	pub1 := c.publish(ctx, cl, "v1")
	nvc := c.strictClient(nv)
	d, err := nvc.Check(ctx, queryBy("a1", pub1.Revision))
	if err != nil {
		t.Fatalf("check on the non-voter: %v", err)
	}
	if d.Decision != api.Allow || d.Version != pub1.Version || d.Revision < pub1.Revision {
		t.Errorf("non-voter decided %s with version %d at revision %d, want allow with version %d at ≥ %d",
			d.Decision, d.Version, d.Revision, pub1.Version, pub1.Revision)
	}

	// Through the non-voter: forwarded to the leader.
	pub2 := c.publish(ctx, newClient(t, waitLong, nv), "v2")
	d, err = nvc.Check(ctx, queryBy("a1", pub2.Revision))
	if err != nil {
		t.Fatal(err)
	}
	if d.Version != pub2.Version {
		t.Errorf("non-voter decided with version %d, want %d", d.Version, pub2.Version)
	}

	// A revision nobody has: no stale answer, a clear error instead.
	_, err = nvc.Check(ctx, queryBy("a1", pub2.Revision+1000))
	if !isCode(err, "revision_not_applied") {
		t.Errorf("check with an unreached min_revision answered %v, want revision_not_applied", err)
	}
}
