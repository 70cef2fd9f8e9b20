package node_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aibos/kernel/internal/node"
	"github.com/aibos/kernel/internal/node/nodetest"
)

// freeAddr is a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
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
