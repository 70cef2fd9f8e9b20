package node_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/node"
	"github.com/aibos/kernel/internal/node/nodetest"
)

// Short bounds, so that the tests see the node enforce them. Every wait
// of a test is far longer than the bound it checks (the machine is shared
// and slow), and shorter than a connection left open would take.
const (
	shortTimeout = 300 * time.Millisecond
	closedWithin = 5 * time.Second
)

func startLimited(t *testing.T, lim node.HTTPLimits) *node.Node {
	t.Helper()
	cfg := nodetest.Config(t, "n1")
	cfg.HTTP = lim
	return nodetest.Start(t, cfg)
}

func dial(t *testing.T, n *node.Node) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", n.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedBy reads c until the server closes it and reports how long after
// start that was; it fails the test if c is still open at closedWithin.
func closedBy(t *testing.T, c net.Conn, start time.Time) time.Duration {
	t.Helper()
	c.SetReadDeadline(start.Add(closedWithin))
	_, err := io.Copy(io.Discard, c)
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		t.Fatalf("the connection is still open after %s", closedWithin)
	}
	return time.Since(start)
}

// TestSlowBodyIsCut: a client that sends its headers and then trickles its
// body is disconnected at the read timeout.
func TestSlowBodyIsCut(t *testing.T) {
	n := startLimited(t, node.HTTPLimits{ReadTimeout: shortTimeout})
	c := dial(t, n)
	start := time.Now()
	if _, err := io.WriteString(c, "POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	go func() {
		for range 100 {
			time.Sleep(50 * time.Millisecond)
			if _, err := io.WriteString(c, " "); err != nil {
				return
			}
		}
	}()
	t.Logf("closed after %s", closedBy(t, c, start))
}

// TestIdleKeepAliveIsClosed: a keep-alive connection that sends no next
// request is closed at the idle timeout.
func TestIdleKeepAliveIsClosed(t *testing.T) {
	n := startLimited(t, node.HTTPLimits{IdleTimeout: shortTimeout})
	c := dial(t, n)
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Close {
		t.Fatalf("healthz: %d, close %v", resp.StatusCode, resp.Close)
	}
	t.Logf("closed after %s idle", closedBy(t, c, time.Now()))
}

// TestLongHandlersOutliveTheTimeouts: the watch stream and an approval
// wait run past read and write timeouts that cut ordinary requests.
func TestLongHandlersOutliveTheTimeouts(t *testing.T) {
	n := startLimited(t, node.HTTPLimits{ReadTimeout: shortTimeout, WriteTimeout: shortTimeout})
	ctx, cancel := context.WithTimeout(context.Background(), nodetest.WaitLong)
	defer cancel()

	ws, _, err := websocket.Dial(ctx, "ws://"+n.HTTPAddr()+"/v1/watch?from=0",
		&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + nodetest.Token(n)}}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()

	now := time.Now()
	if _, err := n.Store.CreateApproval(ctx, api.Approval{ID: "ap1", Agent: "a1", AgentVersion: "1", Action: "data.query",
		ArgsDigest: "d", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	req, _ := http.NewRequest(http.MethodGet, n.URL()+"/v1/approvals/ap1?wait=1s", nil)
	resp, err := http.DefaultClient.Do(nodetest.Authorize(req, n))
	if err != nil {
		t.Fatalf("approval wait cut after %s: %v", time.Since(start), err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || !strings.Contains(string(body), `"state":"pending"`) {
		t.Fatalf("approval wait after %s: %d %v %s", time.Since(start), resp.StatusCode, err, body)
	}
	if d := time.Since(start); d < time.Second {
		t.Fatalf("the wait answered after %s, before its 1s", d)
	}

	// The watcher has been connected for longer than both timeouts now.
	c := nodetest.Client(t, n)
	if _, err := c.Publish(ctx, []api.File{{Name: "b.yaml", Data: []byte("kind: Policy\nname: p\nlayer: platform\nrules:\n  - {name: r, effect: allow, actions: [\"*\"]}\n")}}, client.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		_, msg, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("watch stream cut: %v", err)
		}
		if strings.Contains(string(msg), `"type":"bundle"`) {
			return
		}
	}
}

// TestConnectionLimit: with MaxConns connections open, the next one is not
// served until one of them closes; then it is.
func TestConnectionLimit(t *testing.T) {
	const limit = 2
	n := startLimited(t, node.HTTPLimits{MaxConns: limit})
	get := func(c net.Conn) (chan *http.Response, chan error) {
		resps, errs := make(chan *http.Response, 1), make(chan error, 1)
		go func() {
			if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				errs <- err
				return
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				errs <- err
				return
			}
			resp.Body.Close()
			resps <- resp
		}()
		return resps, errs
	}
	var held []net.Conn
	for range limit {
		c := dial(t, n)
		resps, errs := get(c)
		select {
		case <-resps:
		case err := <-errs:
			t.Fatal(err)
		case <-time.After(closedWithin):
			t.Fatal("a connection under the limit was not served")
		}
		held = append(held, c) // kept alive, idle
	}
	extra := dial(t, n) // the TCP handshake completes in the kernel's accept queue
	resps, errs := get(extra)
	select {
	case resp := <-resps:
		t.Fatalf("connection %d was served (%d) while %d were open", limit+1, resp.StatusCode, limit)
	case err := <-errs:
		t.Fatalf("connection %d: %v; want it to wait", limit+1, err)
	case <-time.After(time.Second):
	}
	held[0].Close()
	select {
	case resp := <-resps:
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	case err := <-errs:
		t.Fatal(err)
	case <-time.After(closedWithin):
		t.Fatalf("connection %d not served after one of the others closed", limit+1)
	}
}
