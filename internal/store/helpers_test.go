package store

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/loopback"
)

// waitLong bounds waits in tests. Generous: elections on a loaded 2-core
// machine under -race can take a few seconds; nothing asserts durations.
const waitLong = 30 * time.Second

// testWriter forwards to t.Output until the test's cleanups are done, so
// that stray transport goroutines cannot log into a finished test.
type testWriter struct {
	mu      sync.Mutex
	w       io.Writer
	stopped bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return len(p), nil
	}
	return w.w.Write(p)
}

func testLogger(t testing.TB) *slog.Logger {
	w := &testWriter{w: t.Output()}
	// Registered first, so it runs after every later cleanup.
	t.Cleanup(func() {
		w.mu.Lock()
		w.stopped = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// changeLog records what OnApply saw.
type changeLog struct {
	mu      sync.Mutex
	changes []Change
}

func (c *changeLog) add(ch Change) {
	c.mu.Lock()
	c.changes = append(c.changes, ch)
	c.mu.Unlock()
}

func (c *changeLog) all() []Change {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Change(nil), c.changes...)
}

type testNode struct {
	*Store
	id, dir, http string
	changes       *changeLog
}

type nodeOpt func(*Config)

func withTimings(tm Timings) nodeOpt { return func(c *Config) { c.Timings = tm } }

// startNode starts a node; raftAddr "" picks a free loopback port. The
// node is closed when the test ends (Close is idempotent).
func startNode(t *testing.T, id, dir, raftAddr string, bootstrap bool, opts ...nodeOpt) *testNode {
	t.Helper()
	if raftAddr == "" {
		raftAddr = loopback.RaftAddr()
	}
	n := &testNode{id: id, dir: dir, http: "http-" + id, changes: &changeLog{}}
	cfg := Config{
		NodeID: id, RaftAddr: raftAddr, HTTPAddr: n.http, DataDir: dir,
		Bootstrap: bootstrap, Logger: testLogger(t).With("node", id), OnApply: n.changes.add,
	}
	for _, o := range opts {
		o(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	n.Store = s
	t.Cleanup(func() { _ = s.Close() })
	return n
}

// startLeader bootstraps a single node and waits until it leads and has
// recorded its own addresses (an entry of its own, applied asynchronously
// after the election, which would otherwise race with a test's writes).
func startLeader(t *testing.T, opts ...nodeOpt) *testNode {
	t.Helper()
	n := startNode(t, "n1", t.TempDir(), "", true, opts...)
	waitUntil(t, "leadership", n.IsLeader)
	waitUntil(t, "own address recorded", func() bool { return n.LeaderHTTP() == n.http })
	return n
}

// restart starts the node again on the same data dir and raft address.
func (n *testNode) restart(t *testing.T, opts ...nodeOpt) *testNode {
	t.Helper()
	return startNode(t, n.id, n.dir, n.RaftAddr(), false, opts...)
}

func ctxLong(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	t.Cleanup(cancel)
	return ctx
}

// waitUntil polls cond; tests only (the store itself never polls).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitLeaderAmong waits until one of nodes leads and returns it.
func waitLeaderAmong(t *testing.T, nodes ...*testNode) *testNode {
	t.Helper()
	var leader *testNode
	waitUntil(t, "a leader", func() bool {
		for _, n := range nodes {
			if n.IsLeader() {
				leader = n
				return true
			}
		}
		return false
	})
	return leader
}

// joinRetry joins (id, raftAddr) through whichever of members leads,
// retrying while leadership moves: on a starved machine a fresh leader can
// step down during a join.
func joinRetry(ctx context.Context, members []*Store, id, raftAddr, http string, voter bool) error {
	for {
		var err error = ErrNotLeader
		for _, m := range members {
			if m.IsLeader() {
				err = m.Join(ctx, id, raftAddr, http, voter)
				break
			}
		}
		if err == nil || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func stores(nodes []*testNode) []*Store {
	var out []*Store
	for _, n := range nodes {
		out = append(out, n.Store)
	}
	return out
}

// dump is a canonical encoding of a replica's state, for comparisons.
func dump(t testing.TB, f *fsm) []byte {
	t.Helper()
	f.mu.RLock()
	s := f.captureLocked()
	f.mu.RUnlock()
	var b bytes.Buffer
	if err := s.encode(&b); err != nil {
		t.Fatalf("encode state: %v", err)
	}
	return b.Bytes()
}

func files(kv ...string) []api.File {
	var fs []api.File
	for i := 0; i+1 < len(kv); i += 2 {
		fs = append(fs, api.File{Name: kv[i], Data: []byte(kv[i+1])})
	}
	return fs
}

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// roundTrip persists f's state and restores it into a new state machine,
// failing unless both encode to the same bytes.
func roundTrip(t testing.TB, f *fsm) *fsm {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := snap.(*fsmSnapshot).write(&buf); err != nil {
		t.Fatal(err)
	}
	g := newFSM(nil)
	if err := g.Restore(readCloser{&buf}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dump(t, g), dump(t, f)) {
		t.Fatalf("restored state differs:\n%s\nwant\n%s", dump(t, g), dump(t, f))
	}
	return g
}
