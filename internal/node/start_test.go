package node_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aibos/kernel/internal/loopback"
	"github.com/aibos/kernel/internal/node"
	"github.com/aibos/kernel/internal/node/nodetest"
)

// freeAddr is a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	return freeAddrAt(t, "127.0.0.1:0")
}

// freeAddrAt is addr (a listen address with port 0) with a port that was
// free a moment ago.
func freeAddrAt(t *testing.T, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestFailedStartUndoes: a Start that fails part way (after the store is
// open) closes what it had started: the same data directory and the same
// addresses start a node once the cause is gone.
func TestFailedStartUndoes(t *testing.T) {
	for _, tc := range []struct {
		name, blocker, want string // blocker: a file in the data directory in the way of the part
		dir                 bool
	}{
		{name: "decision log", blocker: "decisions", want: "decisions"},
		{name: "audit log", blocker: "audit", want: "node: audit log"},
		{name: "counters", blocker: "limits.json", dir: true, want: "node: local counters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := nodetest.Config(t, "n1")
			cfg.HTTPAddr, cfg.RaftAddr = freeAddr(t), freeAddr(t)
			blocker := filepath.Join(cfg.DataDir, tc.blocker)
			var err error
			if tc.dir {
				err = os.Mkdir(blocker, 0o755)
			} else {
				err = os.WriteFile(blocker, []byte("in the way"), 0o644)
			}
			if err != nil {
				t.Fatal(err)
			}
			if n, err := node.Start(context.Background(), cfg); err == nil {
				n.Close()
				t.Fatalf("started with %s in the way", tc.blocker)
			} else if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to mention %q", err, tc.want)
			}
			if err := os.RemoveAll(blocker); err != nil {
				t.Fatal(err)
			}
			nodetest.Start(t, cfg)
		})
	}
}

// TestNewClusterFollowingAForeignLeader: a new cluster's node whose Raft
// address another cluster's leader replicates to (as it would to a
// member that had that address before) takes that leader for its own,
// since plain-TCP Raft has no cluster identity. Its first start says so,
// naming the leader and the fixes, instead of a bare "not the leader".
func TestNewClusterFollowingAForeignLeader(t *testing.T) {
	a := nodetest.Start(t, nodetest.Config(t, "a1"))
	cfg := nodetest.Config(t, "b1")
	// A node reports its advertised address, so the test needs it first.
	cfg.RaftAddr = freeAddrAt(t, loopback.RaftAddr())
	// Slow to elect itself, so that the other cluster reaches it first.
	cfg.Timings.HeartbeatTimeout, cfg.Timings.ElectionTimeout = 20*time.Second, 20*time.Second
	cfg.JoinTimeout = nodetest.WaitLong
	errc := make(chan error, 1)
	go func() {
		b, err := node.Start(context.Background(), cfg)
		if err == nil {
			b.Close()
		}
		errc <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), nodetest.WaitLong)
	defer cancel()
	for {
		c, err := net.Dial("tcp", cfg.RaftAddr)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("b1's raft address never answered: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	// a1's cluster takes b1's address for a member's (a non-voter).
	if err := a.Store.Join(ctx, "b1", cfg.RaftAddr, "", false); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), `follows leader "a1"`) || !strings.Contains(err.Error(), "mutual TLS") {
			t.Fatalf("start of b1: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("b1's start did not return")
	}
}
