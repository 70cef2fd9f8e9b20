package mcp

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/gateway"
)

// upstream is the session of one mcp orchestra, kept up by run.
type upstream struct {
	m       *Manager
	name    string
	backend api.Backend
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{} // closed when run returns
	relist  chan struct{} // tools/list_changed from the server (cap 1)

	mu       sync.Mutex
	sess     *mcp.ClientSession // nil while not connected; guarded by mu
	up       chan struct{}      // closed when sess is set, replaced when it goes; guarded by mu
	digests  map[string]string  // tool → digest as last listed; nil: never listed; guarded by mu
	progress map[string]progressSink
	tokens   atomic.Uint64
	lists    lists // the server's resource, template and prompt lists
}

// progressSink receives an upstream call's progress notifications.
type progressSink func(*mcp.ProgressNotificationParams)

func (m *Manager) newUpstream(name string, b api.Backend) *upstream {
	ctx, cancel := context.WithCancel(m.ctx)
	return &upstream{m: m, name: name, backend: b, ctx: ctx, cancel: cancel,
		done: make(chan struct{}), relist: make(chan struct{}, 1), up: make(chan struct{}),
		progress: make(map[string]progressSink)}
}

func (u *upstream) stop() {
	u.cancel()
	<-u.done
}

// run connects, lists, watches for list changes and reconnects with
// backoff (100 ms doubling to MaxBackoff; back to 100 ms after a session
// that lasted a minute) until stopped.
func (u *upstream) run() {
	defer u.m.wg.Done()
	defer close(u.done)
	log := u.m.log.With("orchestra", u.name)
	backoff := 100 * time.Millisecond
	opts := &mcp.ClientOptions{
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) {
			select {
			case u.relist <- struct{}{}:
			default:
			}
		},
		ResourceListChangedHandler: func(context.Context, *mcp.ResourceListChangedRequest) {
			u.lists.invalidate()
			u.m.notifyList("resources")
		},
		ResourceUpdatedHandler: func(_ context.Context, r *mcp.ResourceUpdatedNotificationRequest) {
			if r.Params != nil {
				u.m.resourceUpdated(u.name, r.Params.URI)
			}
		},
		PromptListChangedHandler: func(context.Context, *mcp.PromptListChangedRequest) {
			u.lists.invalidate()
			u.m.notifyList("prompts")
		},
		ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) {
			tok := fmt.Sprint(r.Params.ProgressToken)
			u.mu.Lock()
			sink := u.progress[tok]
			u.mu.Unlock()
			if sink != nil {
				sink(r.Params)
			}
		},
	}
	for u.ctx.Err() == nil {
		s, tools, err := u.m.connect(u.ctx, u.backend, opts)
		if err != nil {
			log.Warn("mcp server unavailable; retrying", "err", err, "in", backoff)
			u.m.cfg.Metrics.setUp(u.name, false)
			select {
			case <-u.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, u.m.cfg.MaxBackoff)
			continue
		}
		started := time.Now()
		u.setSession(s, tools)
		u.m.cfg.Metrics.setUp(u.name, true)
		log.Info("mcp server connected", "tools", len(tools))
		u.m.connected(u.name)
		u.serve(s)
		u.setSession(nil, nil)
		u.m.cfg.Metrics.setUp(u.name, false)
		s.Close()
		if time.Since(started) > time.Minute {
			backoff = 100 * time.Millisecond
		}
		if u.ctx.Err() == nil {
			log.Warn("mcp server session ended; restarting", "in", backoff)
			select {
			case <-u.ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, u.m.cfg.MaxBackoff)
		}
	}
}

// serve waits for the session to end or to be stopped, listing the tools
// again after a burst of list_changed has been quiet for Debounce.
func (u *upstream) serve(s *mcp.ClientSession) {
	ended := make(chan struct{})
	go func() { s.Wait(); close(ended) }()
	var timer <-chan time.Time
	for {
		select {
		case <-u.ctx.Done():
			s.Close()
			<-ended
			return
		case <-ended:
			return
		case <-u.relist:
			timer = time.After(u.m.cfg.Debounce)
		case <-timer:
			timer = nil
			ctx, cancel := context.WithTimeout(u.ctx, u.m.cfg.ConnectTimeout)
			tools, err := listTools(ctx, s)
			cancel()
			if err != nil {
				u.m.log.Warn("mcp: listing tools again failed", "orchestra", u.name, "err", err)
				continue
			}
			u.setSession(s, tools)
		}
	}
}

func (u *upstream) setSession(s *mcp.ClientSession, tools []*mcp.Tool) {
	var digests map[string]string
	if s != nil {
		digests = make(map[string]string, len(tools))
		for _, t := range tools {
			if _, d, err := PinTool(t); err == nil {
				digests[t.Name] = d
			} else {
				digests[t.Name] = "unpinnable: " + err.Error()
			}
		}
	}
	u.mu.Lock()
	changed := false
	if s != nil {
		changed = !equalDigests(u.digests, digests)
		u.digests = digests
		if u.sess == nil {
			close(u.up)
		}
	} else if u.sess != nil {
		u.up = make(chan struct{})
	}
	replaced := u.sess != s
	u.sess = s
	u.mu.Unlock()
	if replaced {
		u.lists.invalidate()
	}
	if changed {
		u.m.cfg.Metrics.setQuarantined(u.name, u.countQuarantined())
		u.m.notify()
	}
}

func equalDigests(a, b map[string]string) bool {
	if len(a) != len(b) || (a == nil) != (b == nil) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func (u *upstream) quarantine(pin *api.MCPTool) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.digests == nil {
		return ""
	}
	d, ok := u.digests[pin.Tool]
	switch {
	case !ok:
		return fmt.Sprintf("the server no longer lists tool %q", pin.Tool)
	case d != pin.Digest:
		return fmt.Sprintf("the server changed the definition of tool %q (pinned %.12s, now %.12s)", pin.Tool, pin.Digest, d)
	}
	return ""
}

func (u *upstream) countQuarantined() int {
	o, ok := u.m.cfg.Store.Orchestra(u.name)
	if !ok {
		return 0
	}
	n := 0
	for _, a := range o.Actions {
		if a.MCP != nil && u.quarantine(a.MCP) != "" {
			n++
		}
	}
	return n
}

// session waits for a connected session (bounded by ctx).
func (u *upstream) session(ctx context.Context) (*mcp.ClientSession, error) {
	u.mu.Lock()
	s, up := u.sess, u.up
	u.mu.Unlock()
	if s != nil {
		return s, nil
	}
	select {
	case <-up:
		u.mu.Lock()
		s = u.sess
		u.mu.Unlock()
		if s == nil {
			return nil, fmt.Errorf("%w: the session of orchestra %q ended", ErrNotRunning, u.name)
		}
		return s, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: orchestra %q is not connected to its server yet: %w", ErrNotRunning, u.name, context.Cause(ctx))
	}
}

// call runs one tools/call, forwarding progress to the sink in ctx and
// cancelling the server's request (notifications/cancelled) if ctx ends.
func (u *upstream) call(ctx context.Context, c gateway.MCPCall) (*mcp.CallToolResult, error) {
	s, err := u.session(ctx)
	if err != nil {
		return nil, err
	}
	if q := u.quarantine(&api.MCPTool{Tool: c.Tool, Digest: c.Digest}); q != "" {
		return nil, fmt.Errorf("%w: %s; an operator accepts it with aibos orchestra accept %s %s", ErrQuarantined, q, c.Orchestra, c.Tool)
	}
	params := &mcp.CallToolParams{Name: c.Tool, Arguments: c.Input}
	if sink := progressFrom(ctx); sink != nil {
		tok := "aibos-" + strconv.FormatUint(u.tokens.Add(1), 10)
		params.SetProgressToken(tok)
		u.mu.Lock()
		u.progress[tok] = sink
		u.mu.Unlock()
		defer func() {
			u.mu.Lock()
			delete(u.progress, tok)
			u.mu.Unlock()
		}()
	}
	return s.CallTool(ctx, params)
}

type progressKey struct{}

// WithProgress attaches a sink for the progress of the upstream call made
// under ctx.
func WithProgress(ctx context.Context, sink func(*mcp.ProgressNotificationParams)) context.Context {
	return context.WithValue(ctx, progressKey{}, progressSink(sink))
}

func progressFrom(ctx context.Context) progressSink {
	s, _ := ctx.Value(progressKey{}).(progressSink)
	return s
}
