package client_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/node"
)

// waitLong bounds every wait: generous, since elections and publishes on a
// loaded 2-core machine under -race can take seconds. Nothing here asserts
// how long anything took.
const waitLong = 60 * time.Second

// startCluster starts n voters on loopback: the first bootstraps, the
// others join it.
func startCluster(t testing.TB, n int, mod func(*node.Config)) []*node.Node {
	t.Helper()
	var nodes []*node.Node
	for i := range n {
		cfg := node.Config{NodeID: fmt.Sprintf("n%d", i+1), HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", DataDir: t.TempDir()}
		if i > 0 {
			cfg.Join = nodes[0].HTTPAddr()
		}
		if mod != nil {
			mod(&cfg)
		}
		nd, err := node.Start(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nd.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		err = nd.WaitReady(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, nd)
	}
	return nodes
}

func newClient(t testing.TB, nodes ...*node.Node) *client.Client {
	t.Helper()
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.URL())
	}
	c, err := client.New(urls, client.Options{RetryFor: waitLong})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// versionedBundle is a valid bundle whose allow rule is named after i, so a
// decision shows which publish made it.
func versionedBundle(i int) []api.File {
	s := fmt.Sprintf("kind: Policy\nname: p\nlayer: platform\nrules:\n  - name: r%d\n    effect: allow\n    actions: [\"data.*\"]\n", i)
	return []api.File{{Name: "bundle.yaml", Data: []byte(s)}}
}

func publish(t testing.TB, c *client.Client, files []api.File) api.PublishResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	r, err := c.Publish(ctx, files, client.PublishOptions{Author: "test"})
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	return r
}

// next returns the next event of a watch, failing the test if none comes.
func next(t testing.TB, events <-chan api.WatchEvent) api.WatchEvent {
	t.Helper()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return ev
	case <-time.After(waitLong):
		t.Fatal("no watch event")
	}
	panic("unreachable")
}
