package watch_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/aibos/kernel/api"
)

func TestOrderedDeliveryThenLive(t *testing.T) {
	n := startNode(t, nodeConfig(t, "n1"))
	c := newClient(t, n)
	live := dial(t, n.URL(), "?from=0", 0)

	// The first message is a heartbeat with the node's state.
	ev, err := read(t, live)
	if err != nil || ev.Type != api.WatchHeartbeat || ev.Version != 0 {
		t.Fatalf("first message = %+v, %v; want a heartbeat at version 0", ev, err)
	}
	const N = 20
	var revs []uint64
	for i := 1; i <= N; i++ {
		revs = append(revs, publish(t, c, i, 0).Revision)
	}
	got := readVersions(t, live, 0, N)
	for i, ev := range got {
		if ev.Revision != revs[i] || ev.Hash == "" || ev.Author != "test" || ev.Message != fmt.Sprintf("publish %d", i+1) || ev.Time.IsZero() {
			t.Errorf("version %d: %+v; want revision %d and its metadata", ev.Version, ev, revs[i])
		}
		if ev.Files != nil {
			t.Errorf("version %d carries files without content=true", ev.Version)
		}
		if ev.Parent != ev.Version-1 {
			t.Errorf("version %d: parent %d", ev.Version, ev.Parent)
		}
	}

	// A watcher that connects later gets the backlog from its from, with
	// content when it asks.
	late := dial(t, n.URL(), "?from=15&content=true", 0)
	got = readVersions(t, late, 15, N)
	if want := string(bundle(16, 0)[0].Data); len(got[0].Files) != 1 || string(got[0].Files[0].Data) != want {
		t.Errorf("version 16 files = %+v; want %q", got[0].Files, want)
	}
	// Without from: the current version, then live ones.
	cur := dial(t, n.URL(), "", 0)
	readVersions(t, cur, N-1, N)
	publish(t, c, N+1, 0)
	readVersions(t, cur, N, N+1)
	readVersions(t, live, N, N+1)
	readVersions(t, late, N, N+1)

	// A rollback is a new version that says what it rolled back to.
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if _, err := c.Rollback(ctx, 3, "back"); err != nil {
		t.Fatal(err)
	}
	if got := readVersions(t, live, N+1, N+2); got[0].RollbackOf != 3 {
		t.Errorf("rollback event = %+v; want rollback_of 3", got[0])
	}
}

func TestResumeFromVersion(t *testing.T) {
	n := startNode(t, nodeConfig(t, "n1"))
	c := newClient(t, n)
	for i := 1; i <= 10; i++ {
		publish(t, c, i, 0)
	}
	w := dial(t, n.URL(), "?from=0", 0)
	readVersions(t, w, 0, 6)
	w.Close(websocket.StatusNormalClosure, "")
	for i := 11; i <= 15; i++ {
		publish(t, c, i, 0)
	}
	w = dial(t, n.URL(), "?from=6", 0)
	readVersions(t, w, 6, 15)

	// A from beyond the current version waits for it.
	ahead := dial(t, n.URL(), "?from=17", 0)
	for i := 16; i <= 18; i++ {
		publish(t, c, i, 0)
	}
	readVersions(t, ahead, 17, 18)
}

func TestBadWatchRequests(t *testing.T) {
	n := startNode(t, nodeConfig(t, "n1"))
	for _, q := range []string{"?from=x", "?from=-1", "?content=maybe", "?from=99999999999"} {
		req, _ := http.NewRequest(http.MethodGet, n.URL()+"/v1/watch"+q, nil)
		req.Header = authorize(n.URL(), req.Header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"bad_request"`) && !strings.Contains(string(body), "error") {
			t.Errorf("%s: %s %s; want 400 with an error body", q, resp.Status, body)
		}
	}
}

func TestHeartbeatsCarryCurrentVersion(t *testing.T) {
	cfg := nodeConfig(t, "n1")
	cfg.Watch.Heartbeat = 20 * time.Millisecond
	n := startNode(t, cfg)
	c := newClient(t, n)
	r := publish(t, c, 1, 0)
	w := dial(t, n.URL(), "?from=1", 0)
	for beats := 0; beats < 3; {
		ev, err := read(t, w)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type != api.WatchHeartbeat {
			t.Fatalf("got %+v; want only heartbeats", ev)
		}
		if ev.Version != 1 || ev.Revision < r.Revision {
			t.Fatalf("heartbeat %+v; want version 1, revision >= %d", ev, r.Revision)
		}
		beats++
	}
}

// A watcher that stops reading while versions keep coming is closed with a
// reason that says where to resume; resuming there misses nothing.
func TestSlowConsumerIsClosedAndResumes(t *testing.T) {
	cfg := nodeConfig(t, "n1")
	cfg.Watch.MaxLag = 3
	cfg.Watch.WriteTimeout = 5 * waitLong // only the lag rule may close it
	n := startNode(t, cfg)
	c := newClient(t, n)

	// 24 versions of 256 KiB each, with content, to a socket whose receive
	// buffer is pinned small: more than the server's socket can hold, so
	// the hub blocks while versions pile up.
	const N, pad = 24, 256 << 10
	slow := dial(t, n.URL(), "?from=0&content=true", 4096)
	for i := 1; i <= N; i++ {
		publish(t, c, i, pad)
	}
	var last uint64
	for last < N {
		ev, err := read(t, slow)
		if err != nil {
			if websocket.CloseStatus(err) != api.WatchCloseSlowConsumer {
				t.Fatalf("after version %d: %v; want close status %d", last, err, api.WatchCloseSlowConsumer)
			}
			var ce websocket.CloseError
			errors.As(err, &ce)
			if want := fmt.Sprintf("resume with from=%d", last); !strings.Contains(ce.Reason, want) || !strings.Contains(ce.Reason, "slow consumer") {
				t.Fatalf("close reason %q; want it to say slow consumer and %q", ce.Reason, want)
			}
			break
		}
		if ev.Type != api.WatchBundle {
			continue
		}
		if ev.Version != last+1 {
			t.Fatalf("got version %d after %d", ev.Version, last)
		}
		last = ev.Version
	}
	if last == N {
		t.Fatalf("received all %d versions before being closed: the test did not fill the socket", N)
	}
	t.Logf("closed as a slow consumer after version %d of %d", last, N)
	w := dial(t, n.URL(), fmt.Sprintf("?from=%d", last), 0)
	readVersions(t, w, last, N)
}

func TestNonVoterServesTheStream(t *testing.T) {
	nodes := startCluster(t, 1, 1, nil)
	c := newClient(t, nodes[0])
	w := dial(t, nodes[1].URL(), "?from=0", 0)
	for i := 1; i <= 5; i++ {
		publish(t, c, i, 0)
	}
	readVersions(t, w, 0, 5)
}

func TestCloseTellsWatchersWhereToResume(t *testing.T) {
	n := startNode(t, nodeConfig(t, "n1"))
	c := newClient(t, n)
	publish(t, c, 1, 0)
	publish(t, c, 2, 0)
	w := dial(t, n.URL(), "?from=0", 0)
	readVersions(t, w, 0, 2)
	done := make(chan struct{})
	go func() { defer close(done); n.Close() }()
	for {
		_, err := read(t, w)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway || !strings.Contains(ce.Reason, "from=2") {
			t.Fatalf("got %v; want close status 1001 saying from=2", err)
		}
		break
	}
	select {
	case <-done:
	case <-time.After(waitLong):
		t.Fatal("node close did not return")
	}
	if n.Watch.Subscribers() != 0 {
		t.Fatalf("%d subscribers after close", n.Watch.Subscribers())
	}
}

// Notify never waits for watchers: it is called from Raft's apply loop.
func TestPublishesDoNotWaitForStuckWatchers(t *testing.T) {
	cfg := nodeConfig(t, "n1")
	cfg.Watch.MaxLag = 1 << 20
	cfg.Watch.WriteTimeout = 5 * waitLong
	n := startNode(t, cfg)
	c := newClient(t, n)
	for range 3 {
		dial(t, n.URL(), "?from=0&content=true", 4096) // never read
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	for i := 1; i <= 12; i++ {
		publish(t, c, i, 64<<10)
	}
	// Decisions and reads keep being served at the newest version.
	d, err := c.Check(ctx, api.CheckRequest{Subject: api.Entity{Type: "agent", ID: "a"}, Action: api.Action{Name: "data.query"}, Resource: api.Entity{Type: "t", ID: "t"}})
	if err != nil || d.Version != 12 {
		t.Fatalf("check = %+v, %v; want version 12", d, err)
	}
}

// A watcher that reads nothing at all is cut off once a write cannot finish
// within WriteTimeout.
func TestStuckWatcherIsCutOff(t *testing.T) {
	cfg := nodeConfig(t, "n1")
	cfg.Watch.MaxLag = 1 << 20
	cfg.Watch.WriteTimeout = 200 * time.Millisecond
	n := startNode(t, cfg)
	c := newClient(t, n)
	dial(t, n.URL(), "?from=0&content=true", 4096) // never read
	waitUntil(t, func() bool { return n.Watch.Subscribers() == 1 })
	for i := 1; n.Watch.Subscribers() > 0; i++ {
		if i > 200 {
			t.Fatal("a watcher that reads nothing was never cut off")
		}
		publish(t, c, i, 256<<10)
	}
}
