package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/node"
	"github.com/aibos/kernel/internal/node/nodetest"
)

// The node a watch is connected to dies while versions are being
// published; the watch continues on another node and delivers every
// version exactly once, in order.
func TestWatchSurvivesNodeKill(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	wc := newClient(t, nodes...)
	pub := newClient(t, nodes[1], nodes[2])
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var errs []error
	events, err := wc.Watch(ctx, 0, client.WatchOptions{OnError: func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	// The watch starts on the first URL.
	waitFor(t, func() bool { return nodes[0].Watch.Subscribers() == 1 })

	const target = 30
	var done sync.WaitGroup
	done.Add(1)
	go func() {
		// Publishes through the survivors. A publish cut off by the kill may
		// or may not have committed; the versions are counted at the end.
		defer done.Done()
		for i := 1; ctx.Err() == nil; i++ {
			cur, err := pub.Current(ctx)
			if err == nil && cur.Version >= target {
				return
			}
			pctx, pcancel := context.WithTimeout(ctx, waitLong)
			pub.Publish(pctx, versionedBundle(i), client.PublishOptions{})
			pcancel()
		}
	}()

	var last uint64
	killed := false
	for last < target {
		ev := next(t, events)
		if ev.Type != api.WatchBundle {
			continue
		}
		if ev.Version != last+1 {
			t.Fatalf("got version %d after %d", ev.Version, last)
		}
		last = ev.Version
		if last == 10 && !killed {
			nodes[0].Kill()
			killed = true
		}
	}
	done.Wait()
	cur, err := pub.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Anything published after the watch reached the target arrives too.
	for last < cur.Version {
		if ev := next(t, events); ev.Type == api.WatchBundle {
			if ev.Version != last+1 {
				t.Fatalf("got version %d after %d", ev.Version, last)
			}
			last = ev.Version
		}
	}
	if nodes[1].Watch.Subscribers()+nodes[2].Watch.Subscribers() != 1 {
		t.Fatalf("the watch is not on a surviving node")
	}
	mu.Lock()
	t.Logf("reconnected after: %v", errs)
	mu.Unlock()
}

func TestWatchFromCurrentAndWithContent(t *testing.T) {
	nodes := startCluster(t, 1, nil)
	c := newClient(t, nodes...)
	for i := 1; i <= 3; i++ {
		publish(t, c, versionedBundle(i))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := c.Watch(ctx, 0, client.WatchOptions{FromCurrent: true, Content: true})
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(t, events); ev.Type != api.WatchHeartbeat || ev.Version != 3 {
		t.Fatalf("first event %+v; want a heartbeat at version 3", ev)
	}
	if ev := next(t, events); ev.Type != api.WatchBundle || ev.Version != 3 || len(ev.Files) != 1 {
		t.Fatalf("second event %+v; want version 3 with its file", ev)
	}
	publish(t, c, versionedBundle(4))
	if ev := next(t, events); ev.Version != 4 || string(ev.Files[0].Data) != string(versionedBundle(4)[0].Data) {
		t.Fatalf("got %+v; want version 4 with its file", ev)
	}
	cancel()
	for range events {
	}
}

func TestWatchRefused(t *testing.T) {
	nodes := startCluster(t, 1, nil)
	c := newClient(t, nodes...)
	if _, err := c.Watch(context.Background(), 1<<40, client.WatchOptions{}); err == nil {
		t.Fatal("a from far beyond the current version was accepted")
	}
}

// A consumer that stops taking events is closed by the node as a slow
// consumer; the watch resumes by itself and, once the consumer reads
// again, delivers everything exactly once, in order.
func TestWatchResumesAfterSlowConsumerClose(t *testing.T) {
	nodes := startCluster(t, 1, func(c *node.Config) { c.Watch.MaxLag = 2 })
	c := newClient(t, nodes...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var errs []error
	events, err := c.Watch(ctx, 0, client.WatchOptions{Content: true, Buffer: 1, OnError: func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	const N = 16
	pad := make([]byte, 512<<10)
	for i := range pad {
		pad[i] = 'x'
	}
	for i := 1; i <= N; i++ {
		f := versionedBundle(i)
		f[0].Data = append(append(f[0].Data, "# "...), append(pad, '\n')...)
		publish(t, c, f)
	}
	var last uint64
	for last < N {
		if ev := next(t, events); ev.Type == api.WatchBundle {
			if ev.Version != last+1 {
				t.Fatalf("got version %d after %d", ev.Version, last)
			}
			last = ev.Version
		}
	}
	mu.Lock()
	t.Logf("errors seen: %v", errs)
	mu.Unlock()
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A node that accepts the watch and then says nothing is presumed dead
// after IdleTimeout; the watch moves to the next node.
func TestWatchLeavesASilentNode(t *testing.T) {
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.Read(context.Background()) // until the watch gives up on it
	}))
	defer silent.Close()
	nodes := startCluster(t, 1, nil)
	publish(t, newClient(t, nodes...), versionedBundle(1))
	c, err := client.New([]string{silent.URL, nodes[0].URL()}, client.Options{Token: nodetest.Token(nodes[0])})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var errs []error
	events, err := c.Watch(ctx, 0, client.WatchOptions{IdleTimeout: 200 * time.Millisecond, OnError: func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if ev := next(t, events); ev.Type == api.WatchBundle {
			if ev.Version != 1 {
				t.Fatalf("got version %d; want 1", ev.Version)
			}
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(errs) == 0 || !strings.Contains(errs[0].Error(), "presumed dead") {
		t.Fatalf("errors %v; want the silent node presumed dead", errs)
	}
}
