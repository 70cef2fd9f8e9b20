// Package nodetest starts real kernel nodes for tests in other packages:
// real Raft, real HTTP, loopback addresses on free ports, data in the
// test's temporary directory, shut down when the test ends.
package nodetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/node"
)

// WaitLong bounds every wait: generous, since elections and publishes on a
// loaded 2-core machine under -race can take seconds. Tests built on this
// package never assert how long anything took.
const WaitLong = 60 * time.Second

// Config is a node on loopback with free ports and a temporary data dir.
func Config(t testing.TB, id string) node.Config {
	return node.Config{NodeID: id, HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", DataDir: t.TempDir()}
}

// Start starts a node, waits until it is ready, and closes it when the test
// ends.
func Start(t testing.TB, cfg node.Config) *node.Node {
	t.Helper()
	n, err := node.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), WaitLong)
	defer cancel()
	if err := n.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return n
}

// Cluster starts voters+nonVoters nodes n1, n2, ...: the first bootstraps,
// the others join it, the last nonVoters as non-voting replicas. mod, if
// set, adjusts each node's configuration before it starts.
func Cluster(t testing.TB, voters, nonVoters int, mod func(*node.Config)) []*node.Node {
	t.Helper()
	var nodes []*node.Node
	for i := range voters + nonVoters {
		cfg := Config(t, fmt.Sprintf("n%d", i+1))
		if i > 0 {
			cfg.Join = nodes[0].HTTPAddr()
			cfg.NonVoter = i >= voters
		}
		if mod != nil {
			mod(&cfg)
		}
		nodes = append(nodes, Start(t, cfg))
	}
	return nodes
}

// Client is an SDK client for nodes that retries for up to WaitLong.
func Client(t testing.TB, nodes ...*node.Node) *client.Client {
	t.Helper()
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.URL())
	}
	c, err := client.New(urls, client.Options{RetryFor: WaitLong})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
