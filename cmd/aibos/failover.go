package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/node"
)

// cmdFailoverBench starts a 3-node cluster in this process on loopback,
// kills its leader N times (abruptly, no leadership transfer) and measures
// the time from the kill until a write is accepted again, with a client
// that knows all three nodes. The killed node is restarted from its data
// between rounds.
func cmdFailoverBench(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("failover-bench", "Usage: aibos failover-bench [--rounds N] [--data DIR] [-v]\n\nStart a 3-node cluster in this process on loopback, kill its leader N times\nand report how long until writes are accepted again.", stdout, stderr)
	rounds := fs.Int("rounds", 20, "how many times to kill the leader")
	dir := fs.String("data", "", "directory for the nodes' data (default: a temporary directory, removed afterwards)")
	verbose := fs.Bool("v", false, "log the nodes' warnings and errors to standard error")
	if code, ok := fs.parse(args); !ok {
		return code
	}
	if *rounds < 1 {
		fmt.Fprintf(stderr, "aibos failover-bench: --rounds %d: want at least 1 leader kill to measure\n", *rounds)
		return exitInvalid
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "aibos-failover-")
		if err != nil {
			fmt.Fprintf(stderr, "aibos failover-bench: %v\n", err)
			return exitInvalid
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	log := slog.New(slog.DiscardHandler)
	if *verbose {
		log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	samples, err := failoverRounds(*dir, *rounds, log, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "aibos failover-bench: %v\n", err)
		return exitFailed
	}
	slices.Sort(samples)
	p := func(q float64) time.Duration { return percentile(samples, q).Round(time.Millisecond) }
	fmt.Fprintf(stdout, "leader kills=%d time-to-next-accepted-write p50=%s p99=%s max=%s (target p99 ≤ 900ms)\n",
		len(samples), p(0.5), p(0.99), p(1))
	return exitOK
}

func failoverRounds(dir string, rounds int, log *slog.Logger, stdout io.Writer) ([]time.Duration, error) {
	ctx := context.Background()
	cfgs := make([]node.Config, 3)
	nodes := make([]*node.Node, 3)
	defer func() {
		for _, n := range nodes {
			if n != nil {
				n.Close()
			}
		}
	}()
	for i := range cfgs {
		cfgs[i] = node.Config{
			NodeID:   fmt.Sprintf("n%d", i+1),
			HTTPAddr: "127.0.0.1:0",
			RaftAddr: "127.0.0.1:0",
			DataDir:  filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			Logger:   log,
		}
		if i > 0 {
			cfgs[i].Join = nodes[0].HTTPAddr()
			cfgs[i].Token = nodes[0].RootToken()
		}
		n, err := node.Start(ctx, cfgs[i])
		if err != nil {
			return nil, err
		}
		nodes[i] = n
		// Restarts must come back on the same addresses.
		cfgs[i].HTTPAddr, cfgs[i].RaftAddr = n.HTTPAddr(), n.Store.RaftAddr()
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = n.WaitReady(wctx)
		cancel()
		if err != nil {
			return nil, err
		}
	}
	urls := make([]string, 3)
	for i, n := range nodes {
		urls[i] = n.URL()
	}
	c, err := client.New(urls, client.Options{RetryFor: -1, Token: nodes[0].RootToken()})
	if err != nil {
		return nil, err
	}
	write := func(i int) error {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := c.PutEntities(wctx, []api.Entity{{Type: "bench", ID: "failover", Properties: map[string]any{"round": i}}})
		return err
	}
	if err := write(-1); err != nil {
		return nil, fmt.Errorf("first write: %w", err)
	}
	var samples []time.Duration
	for r := 0; r < rounds; r++ {
		li := -1
		for wait := time.Now(); li < 0; {
			for i, n := range nodes {
				if n.Store.IsLeader() {
					li = i
				}
			}
			if li < 0 {
				if time.Since(wait) > 30*time.Second {
					return nil, fmt.Errorf("round %d: no leader within 30s", r)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		killed := time.Now()
		nodes[li].Kill()
		for err := write(r); err != nil; err = write(r) {
			if time.Since(killed) > 30*time.Second {
				return nil, fmt.Errorf("round %d: no write accepted within 30s of the kill; last error: %w", r, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		took := time.Since(killed)
		samples = append(samples, took)
		fmt.Fprintf(stdout, "round %d: killed %s, write accepted after %s\n", r+1, cfgs[li].NodeID, took.Round(time.Millisecond))
		n, err := node.Start(ctx, cfgs[li])
		if err != nil {
			return nil, fmt.Errorf("round %d: restart %s: %w", r, cfgs[li].NodeID, err)
		}
		nodes[li] = n
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = n.WaitReady(wctx)
		cancel()
		if err != nil {
			return nil, err
		}
		// Let the restarted node settle as a follower before the next kill.
		time.Sleep(300 * time.Millisecond)
	}
	return samples, nil
}
