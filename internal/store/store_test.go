package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aibos/kernel/api"
)

func TestSingleNodeLifecycle(t *testing.T) {
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	n := startNode(t, "n1", dir, "", true, func(c *Config) { c.Registerer = reg })
	ctx := ctxLong(t)
	if err := n.WaitForLeader(ctx); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "leadership", n.IsLeader)
	waitUntil(t, "own address recorded", func() bool { return n.LeaderHTTP() == n.http })
	waitUntil(t, "ready", func() bool { return n.Ready() == nil })

	// Publish twice: consecutive versions, parents, hashes, revisions +1.
	f1 := files("a.yaml", "one", "b.yaml", "two")
	v1, err := n.Publish(ctx, f1, "first", "alice", t0)
	if err != nil {
		t.Fatal(err)
	}
	f2 := files("a.yaml", "one!")
	v2, err := n.Publish(ctx, f2, "second", "bob", t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if v1.Version != 1 || v2.Version != 2 || v1.Parent != 0 || v2.Parent != 1 {
		t.Fatalf("versions: %+v %+v", v1, v2)
	}
	if v2.Revision != v1.Revision+1 || n.AppliedRevision() != v2.Revision {
		t.Fatalf("revisions: v1 %d v2 %d applied %d", v1.Revision, v2.Revision, n.AppliedRevision())
	}
	if v1.Hash != HashFiles(f1) || v1.Author != "alice" || v1.Message != "first" || !v1.Time.Equal(t0) {
		t.Fatalf("v1 info: %+v", v1)
	}

	// Rollback: a new version with version 1's content.
	v3, err := n.Rollback(ctx, 1, "undo", "carol", t0.Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if v3.Version != 3 || v3.RollbackOf != 1 || v3.Parent != 2 || v3.Hash != v1.Hash || v3.Revision != v2.Revision+1 {
		t.Fatalf("rollback: %+v", v3)
	}
	cur, ok := n.Current()
	if !ok || cur.Version != 3 || !reflect.DeepEqual(cur.Files, f1) {
		t.Fatalf("current after rollback: %+v", cur)
	}
	for _, to := range []uint64{0, 4, 99} {
		if _, err := n.Rollback(ctx, to, "", "", t0); !errors.Is(err, ErrNoSuchVersion) {
			t.Fatalf("rollback to %d: err %v, want ErrNoSuchVersion", to, err)
		}
	}
	if n.AppliedRevision() != v3.Revision {
		t.Fatalf("failed rollback moved the revision to %d", n.AppliedRevision())
	}

	// Entities: upsert at once, read back as JSON decodes them, delete.
	rev, err := n.PutEntities(ctx, []api.Entity{
		{Type: "user", ID: "u1", Properties: map[string]any{"roles": []string{"admin"}, "level": 3}},
		{Type: "table", ID: "t1", Properties: map[string]any{"region": "eu-west"}},
		{Type: "user", ID: "u2"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rev != v3.Revision+1 {
		t.Fatalf("entities revision %d, want %d", rev, v3.Revision+1)
	}
	p, ok := n.Entity("user", "u1")
	want := map[string]any{"roles": []any{"admin"}, "level": float64(3)}
	if !ok || !reflect.DeepEqual(p, want) {
		t.Fatalf("user/u1 = %#v, %v", p, ok)
	}
	if _, ok := n.Entity("user", "u2"); !ok {
		t.Fatal("user/u2 without properties missing")
	}
	rev, err = n.DeleteEntity(ctx, "table", "t1")
	if err != nil || rev != v3.Revision+2 {
		t.Fatalf("delete: rev %d err %v", rev, err)
	}
	if _, err := n.DeleteEntity(ctx, "table", "t1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v, want ErrNotFound", err)
	}
	if _, err := n.PutEntities(ctx, []api.Entity{{Type: "user"}}); !errors.Is(err, ErrBadCommand) {
		t.Fatalf("entity without id: %v, want ErrBadCommand", err)
	}
	if _, err := n.Publish(ctx, nil, "", "", t0); !errors.Is(err, ErrBadCommand) {
		t.Fatalf("empty bundle: %v, want ErrBadCommand", err)
	}

	// OnApply saw every bundle change, with the version, before the
	// revision became visible.
	var bundles []uint64
	for _, ch := range n.changes.all() {
		if ch.Kind == ChangeBundle {
			bundles = append(bundles, ch.Version.Version)
		}
	}
	if !reflect.DeepEqual(bundles, []uint64{1, 2, 3}) {
		t.Fatalf("OnApply bundle versions %v", bundles)
	}
	if got := gaugeValue(t, reg, "aibos_store_bundle_version"); got != 3 {
		t.Fatalf("bundle version gauge %v", got)
	}

	// Snapshot mid-way, write more, restart: state comes back from the
	// snapshot plus the log after it.
	if err := n.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if _, err := n.PutEntities(ctx, []api.Entity{{Type: "user", ID: "u3", Properties: map[string]any{"x": "y"}}}); err != nil {
		t.Fatal(err)
	}
	lastRev := n.AppliedRevision()
	before := dump(t, n.fsm)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := n.Ready(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ready after close: %v", err)
	}
	if _, err := n.Publish(ctx, f1, "", "", t0); !errors.Is(err, ErrClosed) {
		t.Fatalf("publish after close: %v", err)
	}

	n2 := startNode(t, "n1", dir, n.RaftAddr(), true, func(c *Config) { c.Registerer = reg })
	if err := n2.WaitForRevision(ctx, lastRev); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "ready after restart", func() bool { return n2.Ready() == nil })
	if after := dump(t, n2.fsm); !bytes.Equal(before, after) {
		t.Fatalf("state after restart differs:\n%s\nwant\n%s", after, before)
	}
	if got := n2.Versions(); len(got) != 3 || got[2].RollbackOf != 1 {
		t.Fatalf("versions after restart: %+v", got)
	}
	if kinds := kindsOf(n2.changes.all()); len(kinds) == 0 || kinds[0] != ChangeRestore {
		t.Fatalf("restart changes %v, want a restore first", kinds)
	}
	waitUntil(t, "leadership after restart", n2.IsLeader)
	if _, err := n2.Publish(ctx, f2, "after restart", "", t0); err != nil {
		t.Fatal(err)
	}
	if cur, _ := n2.Current(); cur.Version != 4 || cur.Parent != 3 {
		t.Fatalf("after restart publish: %+v", cur.VersionInfo)
	}
}

func kindsOf(chs []Change) []string {
	var out []string
	for _, c := range chs {
		out = append(out, c.Kind)
	}
	return out
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func TestUnknownCommandThroughRaft(t *testing.T) {
	n := startLeader(t)
	ctx := ctxLong(t)
	if _, err := n.PutEntities(ctx, []api.Entity{{Type: "user", ID: "u1"}}); err != nil {
		t.Fatal(err)
	}
	rev, before := n.AppliedRevision(), dump(t, n.fsm)
	for _, raw := range []string{
		`{"type":"agent.register","payload":{"id":"a1"}}`,
		`{"type":"bundle.publish","payload":{"files":"nope"}}`,
		`not json`,
	} {
		f := n.raft.Apply([]byte(raw), 0)
		if err := f.Error(); err != nil {
			t.Fatalf("%s: raft: %v", raw, err)
		}
		err, _ := f.Response().(error)
		if !errors.Is(err, ErrBadCommand) {
			t.Fatalf("%s: response %v, want ErrBadCommand", raw, f.Response())
		}
	}
	if n.AppliedRevision() != rev || !bytes.Equal(dump(t, n.fsm), before) {
		t.Fatal("a rejected command changed the state")
	}
}

func TestWaitForRevision(t *testing.T) {
	n := startLeader(t)
	ctx := ctxLong(t)
	target := n.AppliedRevision() + 3

	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := n.WaitForRevision(short, target); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait for future revision: %v", err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- n.WaitForRevision(ctx, target)
		}()
	}
	for i := range 3 {
		if _, err := n.PutEntities(ctx, []api.Entity{{Type: "t", ID: fmt.Sprint(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	// Waiters for a revision that never comes are released by Close.
	done := make(chan error, 1)
	go func() { done <- n.WaitForRevision(ctx, target+100) }()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("wait across close: %v", err)
	}
}

// TestConcurrentReadsDuringWrites is a hammer for the race detector: the
// read path (Entity, Current, Versions, WaitForRevision) against applies
// and snapshots.
func TestConcurrentReadsDuringWrites(t *testing.T) {
	n := startLeader(t, withTimings(Timings{SnapshotThreshold: 16, TrailingLogs: 4, SnapshotInterval: 50 * time.Millisecond}))
	ctx := ctxLong(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if p, ok := n.Entity("user", "u"); ok {
					_ = p["i"]
				}
				if bv, ok := n.Current(); ok {
					_ = len(bv.Files)
				}
				_ = n.Versions()
				_ = n.AppliedRevision()
			}
		}()
	}
	for i := range 60 {
		var err error
		if i%10 == 0 {
			_, err = n.Publish(ctx, files("p", fmt.Sprint(i)), "", "", t0)
		} else {
			_, err = n.PutEntities(ctx, []api.Entity{{Type: "user", ID: "u", Properties: map[string]any{"i": i}}})
		}
		if err != nil {
			t.Fatal(err)
		}
		if i == 30 {
			if err := n.Snapshot(); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(stop)
	wg.Wait()
	if p, _ := n.Entity("user", "u"); p["i"] != float64(59) {
		t.Fatalf("last write lost: %v", p)
	}
}

func TestNewValidatesConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no id", Config{RaftAddr: "127.0.0.1:0", DataDir: t.TempDir()}},
		{"no addr", Config{NodeID: "n", DataDir: t.TempDir()}},
		{"no dir", Config{NodeID: "n", RaftAddr: "127.0.0.1:0"}},
		{"nonvoter bootstrap", Config{NodeID: "n", RaftAddr: "127.0.0.1:0", DataDir: t.TempDir(), Bootstrap: true, NonVoter: true}},
		{"lease above heartbeat", Config{NodeID: "n", RaftAddr: "127.0.0.1:0", DataDir: t.TempDir(),
			Timings: Timings{HeartbeatTimeout: 100 * time.Millisecond, LeaderLeaseTimeout: time.Second}}},
		{"bad addr", Config{NodeID: "n", RaftAddr: "nope", DataDir: t.TempDir()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if s, err := New(tc.cfg); err == nil {
				_ = s.Close()
				t.Fatal("New accepted a bad config")
			}
		})
	}
}
