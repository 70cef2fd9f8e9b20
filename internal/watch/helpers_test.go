package watch_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/coder/websocket"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/node"
	"github.com/aibos/kernel/internal/node/nodetest"
)

const waitLong = nodetest.WaitLong

func nodeConfig(t testing.TB, id string) node.Config { return nodetest.Config(t, id) }

func startNode(t testing.TB, cfg node.Config) *node.Node {
	t.Helper()
	n := nodetest.Start(t, cfg)
	rootTokens.Store(n.URL(), nodetest.Token(n))
	return n
}

// rootTokens maps a test node's URL to its cluster's root token, for the
// raw requests of dial and get.
var rootTokens sync.Map

// authorize sets the root token of the node at base on hdr.
func authorize(base string, hdr http.Header) http.Header {
	if tok, ok := rootTokens.Load(base); ok {
		hdr.Set("Authorization", "Bearer "+tok.(string))
	}
	return hdr
}

// startCluster starts one bootstrapping voter and joins the others to it;
// nonVoters of them join as non-voters.
func startCluster(t testing.TB, voters, nonVoters int, mod func(*node.Config)) []*node.Node {
	t.Helper()
	nodes := nodetest.Cluster(t, voters, nonVoters, mod)
	for _, n := range nodes {
		rootTokens.Store(n.URL(), nodetest.Token(n))
	}
	return nodes
}

func newClient(t testing.TB, nodes ...*node.Node) *client.Client {
	t.Helper()
	return nodetest.Client(t, nodes...)
}

// bundle is a valid bundle whose one rule is named after i, so a decision
// or a version's content shows which publish it came from. pad adds a
// comment of that many bytes.
func bundle(i int, pad int) []api.File {
	s := fmt.Sprintf("kind: Policy\nname: p\nlayer: platform\nrules:\n  - name: r%d\n    effect: allow\n    actions: [\"data.*\"]\n", i)
	if pad > 0 {
		s += "# " + strings.Repeat("x", pad) + "\n"
	}
	return []api.File{{Name: "bundle.yaml", Data: []byte(s)}}
}

func publish(t testing.TB, c *client.Client, i, pad int) api.PublishResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	r, err := c.Publish(ctx, bundle(i, pad), client.PublishOptions{Message: fmt.Sprintf("publish %d", i), Author: "test"})
	if err != nil {
		t.Fatalf("publish %d: %v", i, err)
	}
	return r
}

// dial opens a raw watch connection; rcvbuf > 0 pins the socket's receive
// buffer small so that a watcher that does not read fills the server's
// socket quickly.
func dial(t testing.TB, base, query string, rcvbuf int) *websocket.Conn {
	t.Helper()
	d := &net.Dialer{}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	c, _, err := websocket.Dial(ctx, base+"/v1/watch"+query, &websocket.DialOptions{HTTPClient: hc, HTTPHeader: authorize(base, http.Header{})})
	if err != nil {
		t.Fatalf("dial watch %s: %v", query, err)
	}
	c.SetReadLimit(64 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func read(t testing.TB, c *websocket.Conn) (api.WatchEvent, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	_, data, err := c.Read(ctx)
	if err != nil {
		return api.WatchEvent{}, err
	}
	var ev api.WatchEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		t.Fatalf("bad message %q: %v", data, err)
	}
	return ev, nil
}

// readVersions reads bundle events until version upTo, failing on a skip
// or a duplicate, and returns the versions read (from+1 .. upTo).
func readVersions(t testing.TB, c *websocket.Conn, from, upTo uint64) []api.WatchEvent {
	t.Helper()
	var got []api.WatchEvent
	last := from
	for last < upTo {
		ev, err := read(t, c)
		if err != nil {
			t.Fatalf("read after version %d: %v", last, err)
		}
		if ev.Type != api.WatchBundle {
			continue
		}
		if ev.Version != last+1 {
			t.Fatalf("got version %d after %d: skip or duplicate", ev.Version, last)
		}
		last = ev.Version
		got = append(got, ev)
	}
	return got
}
