package watch_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/node"
)

// TestPropagation measures publish → pushed to every watcher, and the same
// for rollbacks, on a local 3-node cluster with watchers spread over the
// nodes (DESIGN.md section 5: p99 ≤ 100 ms; rollback ≤ 1 s). It is a
// measurement, not a unit test: it runs only when asked.
//
//	AIBOS_PROPAGATION=1 go test -run TestPropagation -v -count=1 ./internal/watch
//
// AIBOS_PROPAGATION_WATCHERS (1000) and AIBOS_PROPAGATION_ROUNDS (100)
// change the sizes.
func TestPropagation(t *testing.T) {
	if os.Getenv("AIBOS_PROPAGATION") == "" {
		t.Skip("set AIBOS_PROPAGATION=1 to measure propagation")
	}
	watchers := envInt("AIBOS_PROPAGATION_WATCHERS", 1000)
	rounds := envInt("AIBOS_PROPAGATION_ROUNDS", 100)
	raiseFileLimit(t, uint64(4*watchers+256))

	nodes := startCluster(t, 3, 0, nil)
	var leader *node.Node
	waitUntil(t, func() bool {
		for _, n := range nodes {
			if n.Store.IsLeader() {
				leader = n
				return true
			}
		}
		return false
	})
	pub := newClient(t, leader)
	publish(t, pub, 1, 0)

	// Every version after 1 is one round, publishes first, then rollbacks.
	total := 2 * rounds
	rs := make([]*round, total+2)
	for v := range rs {
		rs[v] = &round{done: make(chan struct{})}
		rs[v].left.Store(int64(watchers))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range watchers {
		n := nodes[i%len(nodes)]
		c := newClient(t, n)
		events, err := c.Watch(ctx, 1, client.WatchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := uint64(1)
			for ev := range events {
				if ev.Type != api.WatchBundle {
					continue
				}
				if ev.Version != last+1 {
					failed.Add(1)
				}
				last = ev.Version
				if ev.Version < uint64(len(rs)) {
					rs[ev.Version].arrive(time.Now())
				}
			}
		}()
	}
	waitUntil(t, func() bool {
		sum := 0
		for _, n := range nodes {
			sum += n.Watch.Subscribers()
		}
		return sum == watchers
	})

	// acks is how long the write itself took (answered by the leader once
	// committed and applied there): the rest is replication to the other
	// nodes and the push.
	var acks, firsts []time.Duration
	measure := func(v uint64, act func()) time.Duration {
		start := time.Now()
		act()
		acks = append(acks, time.Since(start))
		select {
		case <-rs[v].done:
		case <-time.After(waitLong):
			t.Fatalf("version %d did not reach every watcher (%d missing)", v, rs[v].left.Load())
		}
		firsts = append(firsts, time.Unix(0, rs[v].first.Load()).Sub(start))
		return time.Unix(0, rs[v].last.Load()).Sub(start)
	}
	var pubs, rbs []time.Duration
	v := uint64(1)
	for i := range rounds {
		v++
		pubs = append(pubs, measure(v, func() { publish(t, pub, i+2, 0) }))
	}
	for i := range rounds {
		v++
		to := uint64(i%int(v-1)) + 1
		rbs = append(rbs, measure(v, func() {
			rctx, rcancel := context.WithTimeout(ctx, waitLong)
			defer rcancel()
			if _, err := pub.Rollback(rctx, to, "bench"); err != nil {
				t.Fatal(err)
			}
		}))
	}
	cancel()
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d skipped or duplicated versions", failed.Load())
	}
	t.Logf("3 nodes, %d watchers, %d publishes: %s (target p99 ≤ 100ms)", watchers, rounds, summary(pubs))
	t.Logf("3 nodes, %d watchers, %d rollbacks: %s (target ≤ 1s)", watchers, rounds, summary(rbs))
	t.Logf("of which the write until acknowledged: %s", summary(acks))
	t.Logf("until the first watcher had it: %s", summary(firsts))
}

// round is the arrival of one version at every watcher.
type round struct {
	left  atomic.Int64 // watchers yet to receive it
	first atomic.Int64 // earliest arrival, UnixNano
	last  atomic.Int64 // latest arrival, UnixNano
	done  chan struct{}
}

func (r *round) arrive(at time.Time) {
	ns := at.UnixNano()
	r.first.CompareAndSwap(0, ns)
	for {
		cur := r.last.Load()
		if ns <= cur || r.last.CompareAndSwap(cur, ns) {
			break
		}
	}
	if r.left.Add(-1) == 0 {
		close(r.done)
	}
}

func summary(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	q := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return fmt.Sprintf("p50 %s, p90 %s, p99 %s, max %s", q(0.50).Round(time.Microsecond), q(0.90).Round(time.Microsecond),
		q(0.99).Round(time.Microsecond), s[len(s)-1].Round(time.Microsecond))
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// raiseFileLimit raises the soft limit of open files to at least n (as far
// as the hard limit allows): each watcher holds two sockets in-process.
func raiseFileLimit(t testing.TB, n uint64) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	lim.Cur = min(n, lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < n {
		t.Fatalf("need %d open files, the limit is %d (hard %d): raise ulimit -n", n, lim.Cur, lim.Max)
	}
}

func waitUntil(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
