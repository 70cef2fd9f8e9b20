package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/aibos/kernel/api"
)

// WatchOptions tune Watch. The zero value watches metadata only, from the
// version given.
type WatchOptions struct {
	// Content asks for each version's files along with it.
	Content bool
	// FromCurrent starts with the cluster's current version: the from
	// argument is ignored on the first connection.
	FromCurrent bool
	// IdleTimeout is how long a connection may stay silent before it is
	// presumed dead and the watch moves to another node (20 s). Nodes send
	// heartbeats every 5 s by default; keep it well above their interval.
	IdleTimeout time.Duration
	// OnError is told of every connection that failed or dropped; the
	// watch reconnects by itself. Nil: errors are dropped.
	OnError func(error)
	// Buffer is the capacity of the event channel (16).
	Buffer int
	// MaxMessageBytes bounds one message (128 MiB: a 64 MiB bundle with
	// its files base64-encoded).
	MaxMessageBytes int64
}

// ErrWatchGap is reported (through OnError) when a node skipped a version;
// the watch reconnects from the last version it delivered.
var ErrWatchGap = errors.New("client: watch stream skipped a version")

// Watch follows the cluster's bundle versions: every version after from, in
// order, then live ones, as events on the returned channel, along with the
// nodes' heartbeats and any event types later kernels add. When a
// connection drops or a node dies it reconnects — to the next node URL —
// resuming after the last version it delivered, so each version is
// delivered exactly once, in order. The channel is closed when ctx ends or
// when a node refuses the watch (then OnError has the reason).
//
// The first connection is made before Watch returns: its error (no node
// reachable, or from refused) is returned.
func (c *Client) Watch(ctx context.Context, from uint64, opts WatchOptions) (<-chan api.WatchEvent, error) {
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 20 * time.Second
	}
	if opts.Buffer <= 0 {
		opts.Buffer = 16
	}
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = 128 << 20
	}
	w := &watcher{c: c, opts: opts, last: from, fromCurrent: opts.FromCurrent, node: int(c.next.Load())}
	conn, err := w.dialAny(ctx)
	if err != nil {
		return nil, err
	}
	ch := make(chan api.WatchEvent, opts.Buffer)
	go w.run(ctx, conn, ch)
	return ch, nil
}

type watcher struct {
	c           *Client
	opts        WatchOptions
	last        uint64 // the last version delivered (or from)
	fromCurrent bool   // no version delivered yet and none asked for
	anchored    bool   // fromCurrent, and a heartbeat set last to resume from
	node        int    // index of the node URL in use
}

func (w *watcher) report(err error) {
	if w.opts.OnError != nil && err != nil {
		w.opts.OnError(err)
	}
}

// refusedError is a node's HTTP answer refusing the watch: retrying
// elsewhere will not help.
type refusedError struct{ err error }

func (e *refusedError) Error() string { return e.err.Error() }
func (e *refusedError) Unwrap() error { return e.err }

// dialAny connects to the node in use or, failing that, each other node in
// turn, once.
func (w *watcher) dialAny(ctx context.Context) (*websocket.Conn, error) {
	var errs []error
	for range w.c.urls {
		conn, err := w.dial(ctx, w.c.urls[w.node])
		if err == nil {
			return conn, nil
		}
		var ref *refusedError
		if errors.As(err, &ref) || ctx.Err() != nil {
			return nil, err
		}
		errs = append(errs, err)
		w.node = (w.node + 1) % len(w.c.urls)
	}
	return nil, fmt.Errorf("client: watch: no node reachable: %w", errors.Join(errs...))
}

func (w *watcher) dial(ctx context.Context, base string) (*websocket.Conn, error) {
	q := url.Values{}
	if !w.fromCurrent || w.anchored {
		q.Set("from", strconv.FormatUint(w.last, 10))
	}
	if w.opts.Content {
		q.Set("content", "true")
	}
	u := base + "/v1/watch"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	opts := &websocket.DialOptions{HTTPClient: w.c.http, CompressionMode: websocket.CompressionDisabled}
	if w.c.token != "" {
		opts.HTTPHeader = http.Header{"Authorization": {"Bearer " + w.c.token}}
	}
	conn, resp, err := websocket.Dial(ctx, u, opts)
	if err != nil {
		if resp != nil && resp.StatusCode >= 400 && resp.StatusCode < 500 {
			return nil, &refusedError{fmt.Errorf("client: watch refused by %s: %s: %w", base, resp.Status, err)}
		}
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, fmt.Errorf("client: watch on %s: %s: %w", base, resp.Status, err)
		}
		return nil, fmt.Errorf("client: watch on %s: %w", base, err)
	}
	conn.SetReadLimit(w.opts.MaxMessageBytes)
	return conn, nil
}

// run reads from conn, delivers events, and reconnects until ctx ends or a
// node refuses the watch.
func (w *watcher) run(ctx context.Context, conn *websocket.Conn, ch chan<- api.WatchEvent) {
	defer close(ch)
	backoff := 50 * time.Millisecond
	for {
		err := w.follow(ctx, conn, ch)
		conn.CloseNow()
		if ctx.Err() != nil {
			return
		}
		w.report(err)
		// A slow consumer may resume on the same node; any other drop
		// moves on, since the node may be dying.
		if websocket.CloseStatus(err) != api.WatchCloseSlowConsumer {
			w.node = (w.node + 1) % len(w.c.urls)
		}
		for {
			conn, err = w.dialAny(ctx)
			if err == nil {
				backoff = 50 * time.Millisecond
				break
			}
			w.report(err)
			var ref *refusedError
			if errors.As(err, &ref) || ctx.Err() != nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
		}
	}
}

// follow delivers the events of one connection until it fails.
func (w *watcher) follow(ctx context.Context, conn *websocket.Conn, ch chan<- api.WatchEvent) error {
	// One watchdog timer per connection, reset by every message, rather
	// than a deadline context per read: with many watches in one process
	// the contexts were a visible share of the CPU.
	var idle atomic.Bool
	watchdog := time.AfterFunc(w.opts.IdleTimeout, func() {
		idle.Store(true)
		conn.CloseNow()
	})
	defer watchdog.Stop()
	for {
		typ, data, err := conn.Read(ctx)
		if err != nil {
			if idle.Load() {
				return fmt.Errorf("client: watch: nothing heard for %s, presumed dead: %w", w.opts.IdleTimeout, err)
			}
			return err
		}
		// Waiting for the consumer is not silence from the node.
		watchdog.Stop()
		if err := w.deliver(ctx, typ, data, ch); err != nil {
			return err
		}
		watchdog.Reset(w.opts.IdleTimeout)
	}
}

// deliver passes one message on, dropping versions already delivered.
func (w *watcher) deliver(ctx context.Context, typ websocket.MessageType, data []byte, ch chan<- api.WatchEvent) error {
	if typ != websocket.MessageText {
		return nil
	}
	var ev api.WatchEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		return fmt.Errorf("client: watch: bad message: %w", err)
	}
	if ev.Type == api.WatchHeartbeat && w.fromCurrent {
		// Not a version yet, but what "current" was: a reconnect resumes
		// from there rather than from a later current.
		w.last, w.anchored = max(ev.Version, 1)-1, true
	}
	if ev.Type == api.WatchBundle {
		switch {
		case w.fromCurrent:
			// The first version of a watch from the current one.
		case ev.Version <= w.last:
			return nil // already delivered (a resume overlapping)
		case ev.Version > w.last+1:
			return fmt.Errorf("%w: got %d after %d", ErrWatchGap, ev.Version, w.last)
		}
		w.last, w.fromCurrent = ev.Version, false
	}
	select {
	case ch <- ev:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
