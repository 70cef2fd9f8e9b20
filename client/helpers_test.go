package client_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/node"
	"github.com/aibos/kernel/internal/node/nodetest"
)

const waitLong = nodetest.WaitLong

// startCluster starts n voters on loopback: the first bootstraps, the
// others join it.
func startCluster(t testing.TB, n int, mod func(*node.Config)) []*node.Node {
	t.Helper()
	return nodetest.Cluster(t, n, 0, mod)
}

func newClient(t testing.TB, nodes ...*node.Node) *client.Client {
	t.Helper()
	return nodetest.Client(t, nodes...)
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
