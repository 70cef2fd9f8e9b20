package store

import (
	"fmt"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
)

// TestReadyOnlyAfterReplay restarts a node whose state machine is slow to
// apply (as the node's is: it compiles every bundle version it replays)
// and polls Ready from the first moment: the first time it answers nil,
// the state must hold every revision written before the restart. Raft
// counts an entry as applied once it has queued it for the state machine,
// so a readiness taken from raft's indexes alone comes too early. With a
// snapshot the replay starts from it; with a snapshot at the very end
// nothing but a no-op follows it, and the node must still become ready.
func TestReadyOnlyAfterReplay(t *testing.T) {
	const writes = 200
	for _, tc := range []struct {
		name       string
		snapshotAt int // before this write; -1 none; writes: after the last
	}{
		{"log only", -1},
		{"snapshot and log", writes / 2},
		{"snapshot only", writes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := startLeader(t)
			ctx := ctxLong(t)
			for i := 0; i <= writes; i++ {
				if i == tc.snapshotAt {
					if err := n.Snapshot(); err != nil {
						t.Fatal(err)
					}
				}
				if i == writes {
					break
				}
				if _, err := n.PutEntities(ctx, []api.Entity{{Type: "user", ID: fmt.Sprint("u", i)}}); err != nil {
					t.Fatal(err)
				}
			}
			want := n.AppliedRevision()
			if err := n.Close(); err != nil {
				t.Fatal(err)
			}

			slow := func(c *Config) {
				next := c.OnApply
				c.OnApply = func(ch Change) {
					time.Sleep(500 * time.Microsecond)
					next(ch)
				}
			}
			back := n.restart(t, slow)
			deadline := time.Now().Add(waitLong)
			for back.Ready() != nil {
				if time.Now().After(deadline) {
					t.Fatalf("not ready after %s: %v", waitLong, back.Ready())
				}
				time.Sleep(100 * time.Microsecond)
			}
			if got := back.AppliedRevision(); got < want {
				t.Fatalf("ready at revision %d, before replaying up to %d", got, want)
			}
		})
	}
}
