package store

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkFailover measures, per iteration, the time from killing the
// leader of a fresh 3-node cluster until the new leader accepts a write,
// and reports p50/p99/max over the iterations. "busy" runs CPU burners on
// every core meanwhile (a loaded 2-core node). Run with e.g.
//
//	go test -run '^$' -bench Failover -benchtime 40x ./internal/store/
//
// Each iteration also counts leader changes after the failover (flaps).
func BenchmarkFailover(b *testing.B) {
	for _, busy := range []bool{false, true} {
		name := "idle"
		if busy {
			name = "busy"
		}
		b.Run(name, func(b *testing.B) {
			stop := make(chan struct{})
			var wg sync.WaitGroup
			if busy {
				for range runtime.GOMAXPROCS(0) {
					wg.Add(1)
					go func() {
						defer wg.Done()
						buf := make([]byte, 4096)
						for {
							select {
							case <-stop:
								return
							default:
								sha256.Sum256(buf)
							}
						}
					}()
				}
			}
			var durs []time.Duration
			flaps := 0
			for range b.N {
				d, f := oneFailover(b)
				durs = append(durs, d)
				flaps += f
			}
			close(stop)
			wg.Wait()
			slices.Sort(durs)
			q := func(p float64) float64 {
				return float64(durs[int(p*float64(len(durs)-1))].Microseconds()) / 1000
			}
			b.ReportMetric(q(0.5), "p50-ms")
			b.ReportMetric(q(0.99), "p99-ms")
			b.ReportMetric(q(1), "max-ms")
			b.ReportMetric(float64(flaps), "flaps")
			b.ReportMetric(0, "ns/op")
		})
	}
}

func oneFailover(b *testing.B) (time.Duration, int) {
	b.StopTimer()
	defer b.StartTimer()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	var nodes []*Store
	start := func(id string, bootstrap bool) *Store {
		s, err := New(Config{NodeID: id, RaftAddr: "127.0.0.1:0", HTTPAddr: "h-" + id, DataDir: b.TempDir(), Bootstrap: bootstrap, Logger: benchLogger(id), Timings: benchTimings()})
		if err != nil {
			b.Fatal(err)
		}
		nodes = append(nodes, s)
		return s
	}
	defer func() {
		for _, n := range nodes {
			_ = n.Kill()
		}
	}()
	first := start("n1", true)
	for !first.IsLeader() {
		time.Sleep(5 * time.Millisecond)
	}
	for _, id := range []string{"n2", "n3"} {
		s := start(id, false)
		if err := joinRetry(ctx, nodes[:len(nodes)-1], id, s.RaftAddr(), "h-"+id, true); err != nil {
			b.Fatal(err)
		}
	}
	var leader *Store
	for leader == nil {
		for _, n := range nodes {
			if n.IsLeader() {
				if _, err := n.Publish(ctx, files("a", "b"), "", "", t0); err == nil {
					leader = n
				}
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	killed := time.Now()
	_ = leader.Kill()
	var rest []*Store
	for _, n := range nodes {
		if n != leader {
			rest = append(rest, n)
		}
	}
	for {
		for _, n := range rest {
			if _, err := n.Publish(ctx, files("a", "c"), "", "", t0); err == nil {
				d := time.Since(killed)
				if os.Getenv("STORE_BENCH_LOG") != "" {
					fmt.Fprintf(os.Stderr, "=== failover %v\n", d)
				}
				// Watch a while for leadership moving again.
				first := n.LeaderID()
				flaps := 0
				end := time.Now().Add(time.Second)
				for time.Now().Before(end) {
					if id := rest[0].LeaderID(); id != "" && id != first {
						flaps++
						first = id
					}
					time.Sleep(10 * time.Millisecond)
				}
				return d, flaps
			}
		}
		if ctx.Err() != nil {
			b.Fatal("no new leader")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// benchTimings lets a run try other timings: STORE_BENCH_TIMINGS=hb,election,lease
// (durations), e.g. "200ms,200ms,150ms".
func benchTimings() Timings {
	var tm Timings
	if v := os.Getenv("STORE_BENCH_TIMINGS"); v != "" {
		var d [3]time.Duration
		for i, f := range strings.SplitN(v, ",", 3) {
			d[i], _ = time.ParseDuration(f)
		}
		tm.HeartbeatTimeout, tm.ElectionTimeout, tm.LeaderLeaseTimeout = d[0], d[1], d[2]
	}
	return tm
}

func benchLogger(id string) *slog.Logger {
	if os.Getenv("STORE_BENCH_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", id)
}
