// Package watch owns the watch stream of bundle versions (GET /v1/watch):
// subscriptions over WebSocket, ordered delivery, resume from a version,
// heartbeats, and the slow-consumer policy. It reads versions from the local
// replica — the store is the buffer — and is woken by Notify, which the node
// calls from the store's apply hook. See DESIGN.md.
package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/broadcast"
)

// Source is what the hub needs of the local replica. *store.Store is one.
type Source interface {
	// Current is the latest version; false if none was published.
	Current() (api.BundleVersion, bool)
	// Version is version v; false if it does not exist (yet).
	Version(v uint64) (api.BundleVersion, bool)
	// AppliedRevision is the revision the replica has applied.
	AppliedRevision() uint64
}

// RolloutSource is what the hub needs to send rollout events; a Source
// that also implements it (as *store.Store does) gets them.
type RolloutSource interface {
	// Rollout is the latest rollout, active or ended; false if none.
	Rollout() (*api.Rollout, bool)
	// RolloutCandidate is the active rollout's candidate version (staged
	// or published); false if none is active. Its files go to watchers
	// that asked for content, so a local evaluator decides the cohort as
	// the nodes do.
	RolloutCandidate() (*api.BundleVersion, bool)
}

// KillSource is what the hub needs to send kill switch events; a Source
// that also implements it (as *store.Store does) gets them.
type KillSource interface {
	// Kills lists the kill switches the replica keeps, active and lifted.
	Kills() []api.KillSwitch
	// KillRevision is the revision of the last switch set or lifted (0:
	// none); the hub reads Kills only when it moved.
	KillRevision() uint64
}

// Config configures a Hub. The zero value of a field takes the default in
// parentheses.
type Config struct {
	Source Source
	// Heartbeat is the interval of heartbeat messages (5 s).
	Heartbeat time.Duration
	// WriteTimeout bounds one message write; a watcher whose socket stays
	// full longer is cut off (10 s).
	WriteTimeout time.Duration
	// MaxLag is how many versions published since a watcher subscribed it
	// may be behind before it is closed as a slow consumer (1024).
	MaxLag uint64
	// MaxAhead bounds how far beyond this node's current version a from may
	// be: a watcher may wait for a version this replica has not applied
	// yet, but not for one no cluster is near (1,000,000).
	MaxAhead uint64
	// CloseTimeout bounds a graceful Close: watchers still being written to
	// after it are cut off (5 s).
	CloseTimeout time.Duration
	Logger       *slog.Logger
}

// ErrFromAhead is returned by Validate when from is absurdly far beyond the
// node's current version.
var ErrFromAhead = errors.New("from is beyond this node's current version by more than the allowed bound")

// ErrClosed is returned by Serve once the hub is closed.
var ErrClosed = errors.New("watch: hub closed")

// Hub serves watchers. Create it with New; it is safe for concurrent use.
type Hub struct {
	cfg Config
	src Source
	log *slog.Logger

	wake broadcast.Notifier

	// closing is closed by Close: subscribers say goodbye and return.
	// ctx is cancelled by Kill (or at the end of Close): in-flight writes
	// are aborted.
	closing   chan struct{}
	ctx       context.Context
	cancel    context.CancelFunc
	closeOnce sync.Once

	mu     sync.Mutex
	closed bool           // guarded by mu
	wg     sync.WaitGroup // Add guarded by mu (with closed)

	subs atomic.Int64

	rollouts RolloutSource // nil: the source has no rollouts
	kills    KillSource    // nil: the source has no kill switches

	// encoded holds the last version's message without and with content.
	encoded [2]atomic.Pointer[encodedVersion]
}

// New validates cfg, applies defaults and returns a hub.
func New(cfg Config) (*Hub, error) {
	if cfg.Source == nil {
		return nil, errors.New("watch: Source is required")
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 5 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.MaxLag == 0 {
		cfg.MaxLag = 1024
	}
	if cfg.MaxAhead == 0 {
		cfg.MaxAhead = 1_000_000
	}
	if cfg.CloseTimeout <= 0 {
		cfg.CloseTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hub{cfg: cfg, src: cfg.Source, log: cfg.Logger, closing: make(chan struct{}), ctx: ctx, cancel: cancel}
	h.rollouts, _ = cfg.Source.(RolloutSource)
	h.kills, _ = cfg.Source.(KillSource)
	return h, nil
}

// Notify wakes every watcher to look for new versions. It never blocks on
// watchers (one mutex and one channel close), so it is safe to call from
// Raft's apply goroutine; call it after the new version is readable from
// the Source.
func (h *Hub) Notify() { h.wake.Broadcast() }

// Subscribers is the number of connected watchers.
func (h *Hub) Subscribers() int { return int(h.subs.Load()) }

// Subscription is what a watcher asked for.
type Subscription struct {
	// From is the last version the watcher has: it receives every later
	// version. Ignored when FromCurrent is set.
	From uint64
	// FromCurrent starts with the node's current version (the watcher has
	// none yet): From becomes current-1.
	FromCurrent bool
	// Content sends each version's files with it.
	Content bool
}

// Validate rejects a subscription the hub would not serve, before the
// connection is upgraded (so the error can be an ordinary HTTP answer).
func (h *Hub) Validate(sub Subscription) error {
	if sub.FromCurrent {
		return nil
	}
	if cur := h.current(); sub.From > cur+h.cfg.MaxAhead {
		return fmt.Errorf("%w: from=%d, this node is at version %d (bound %d): resume with a version this cluster published",
			ErrFromAhead, sub.From, cur, h.cfg.MaxAhead)
	}
	return nil
}

// Serve streams versions to one watcher until it disconnects, falls too far
// behind, or the hub closes; then it closes c. It runs on the caller's
// goroutine (the HTTP handler's).
func (h *Hub) Serve(ctx context.Context, c *websocket.Conn, sub Subscription) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		c.Close(websocket.StatusGoingAway, "node shutting down: resume on another node")
		return ErrClosed
	}
	h.wg.Add(1)
	h.mu.Unlock()
	defer h.wg.Done()
	h.subs.Add(1)
	defer h.subs.Add(-1)

	// Watchers send nothing; reading is only for control frames (close,
	// ping). The context ends when the watcher goes away.
	ctx = c.CloseRead(ctx)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(h.ctx, cancel)
	defer stop()

	s := &subscriber{h: h, c: c, content: sub.Content}
	start := h.current()
	s.last = sub.From
	if sub.FromCurrent {
		s.last = start
		if start > 0 {
			s.last = start - 1
		}
	}
	err := s.run(ctx, max(start, s.last))
	return s.close(err)
}

// Close says goodbye to every watcher (close status 1001 with the version
// to resume from) and waits for them, cutting off those that do not finish
// within CloseTimeout. Later subscriptions are refused.
func (h *Hub) Close() { h.shutdown(true) }

// Kill cuts every watcher's connection at once, as a crash would.
func (h *Hub) Kill() { h.shutdown(false) }

func (h *Hub) shutdown(graceful bool) {
	h.closeOnce.Do(func() {
		h.mu.Lock()
		h.closed = true
		h.mu.Unlock()
		if graceful {
			close(h.closing)
			done := make(chan struct{})
			go func() { h.wg.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(h.cfg.CloseTimeout):
			}
		}
		h.cancel()
		h.wg.Wait()
	})
}

// current is the latest version number of the replica (0: none).
func (h *Hub) current() uint64 {
	v, ok := h.src.Current()
	if !ok {
		return 0
	}
	return v.Version
}
