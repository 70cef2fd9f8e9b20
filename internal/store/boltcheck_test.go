package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aibos/kernel/api"
)

// A damaged raft.db stops New with an error that names the file and the
// ways to recover, instead of a panic or a fault in bbolt.
func TestDamagedRaftLog(t *testing.T) {
	n := startLeader(t)
	for i := range 50 {
		ents := []api.Entity{{Type: "user", ID: fmt.Sprintf("u%d", i), Properties: map[string]any{"pad": strings.Repeat("x", 2000)}}}
		if _, err := n.PutEntities(ctxLong(t), ents); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(n.dir, "raft", "raft.db")
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pageSize := os.Getpagesize()
	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
	}{
		{"truncated to two pages", func(b []byte) []byte { return b[:2*pageSize] }},
		{"truncated mid-page", func(b []byte) []byte { return b[:len(b)/2+100] }},
		{"meta pages zeroed", func(b []byte) []byte {
			b = append([]byte(nil), b...)
			clear(b[:2*pageSize])
			return b
		}},
		{"freelist overwritten", func(b []byte) []byte {
			b = append([]byte(nil), b...)
			for i := 2 * pageSize; i < len(b); i++ {
				b[i] = 0xff
			}
			return b
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, "raft"), 0o755); err != nil {
				t.Fatal(err)
			}
			damagedPath := filepath.Join(dir, "raft", "raft.db")
			if err := os.WriteFile(damagedPath, tc.damage(orig), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := New(Config{NodeID: "n1", RaftAddr: "127.0.0.1:0", HTTPAddr: "x", DataDir: dir, Logger: testLogger(t)})
			if err == nil {
				s.Close()
				t.Fatal("a damaged raft log opened")
			}
			msg := err.Error()
			if !errors.Is(err, ErrDamagedLog) || !strings.Contains(msg, damagedPath) || !strings.Contains(msg, "backup") || !strings.Contains(msg, "--join") {
				t.Fatalf("error %q: want ErrDamagedLog naming %s and the ways to recover", msg, damagedPath)
			}
		})
	}
	// The undamaged file still opens.
	s, err := New(Config{NodeID: "n1", RaftAddr: "127.0.0.1:0", HTTPAddr: "x", DataDir: n.dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("the undamaged log: %v", err)
	}
	s.Close()
}
