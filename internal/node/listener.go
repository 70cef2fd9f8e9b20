package node

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// HTTPLimits bound the connections of the node's HTTP API, so that slow or
// idle clients cannot hold them, or the node's file descriptors, without
// end. The zero value of a field takes the default in parentheses; a
// negative value turns the bound off (an idle timeout turned off falls back
// to the read timeout, as in net/http).
type HTTPLimits struct {
	// ReadTimeout bounds reading one request, its line, headers and body
	// (30 s); the headers alone must arrive within ReadHeaderTimeout
	// (10 s).
	ReadTimeout       time.Duration
	ReadHeaderTimeout time.Duration
	// WriteTimeout bounds a request from the end of its headers to the end
	// of its answer (60 s). The handlers that run longer on purpose move
	// their own deadline (internal/server/deadlines.go): the WebSocket of
	// /v1/watch, approval waits, exports, publishes, simulations and
	// invocations.
	WriteTimeout time.Duration
	// IdleTimeout is how long a keep-alive connection may wait for its
	// next request (60 s).
	//
	// Each timeout takes effect at most a tick of the connections'
	// watchdog late, never early (conndeadline.go).
	IdleTimeout time.Duration
	// MaxConns bounds the connections open at once, watchers included
	// (16,384). Once it is reached the node accepts no more until one
	// closes: a new connection waits in the operating system's accept
	// queue (and is refused by it once that is full).
	MaxConns int
}

func (l *HTTPLimits) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&l.ReadTimeout, 30*time.Second)
	def(&l.ReadHeaderTimeout, 10*time.Second)
	def(&l.WriteTimeout, 60*time.Second)
	def(&l.IdleTimeout, 60*time.Second)
	if l.MaxConns == 0 {
		l.MaxConns = 16384
	}
}

// bound is a timeout as net/http takes it: zero for none.
func bound(d time.Duration) time.Duration { return max(d, 0) }

// connListener is the node's HTTP listener. It accepts at most cap(sem)
// connections at once (sem is nil for no limit): Accept takes a slot
// before it accepts, and a connection gives its slot back when it is
// closed (also after a hijack, which hands over the same connection). And
// it keeps its connections' deadlines (conndeadline.go): a watchdog
// goroutine, running while connections are open, expires them each tick.
type connListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	tick      time.Duration

	// lastTick is when the watchdog last looked, in Unix nanoseconds.
	lastTick atomic.Int64

	mu       sync.Mutex
	conns    map[*conn]struct{}
	watching bool
}

func newConnListener(ln net.Listener, lim HTTPLimits) *connListener {
	l := &connListener{Listener: ln, done: make(chan struct{}), tick: tickFor(lim), conns: map[*conn]struct{}{}}
	if lim.MaxConns > 0 {
		l.sem = make(chan struct{}, lim.MaxConns)
	}
	return l
}

func (l *connListener) Accept() (net.Conn, error) {
	if l.sem != nil {
		select {
		case l.sem <- struct{}{}:
		case <-l.done:
			return nil, net.ErrClosed
		}
	}
	nc, err := l.Listener.Accept()
	if err != nil {
		if l.sem != nil {
			<-l.sem
		}
		return nil, err
	}
	c := &conn{Conn: nc, l: l}
	l.mu.Lock()
	l.conns[c] = struct{}{}
	if !l.watching {
		l.watching = true
		l.lastTick.Store(time.Now().UnixNano())
		go l.watch()
	}
	l.mu.Unlock()
	return c, nil
}

// release forgets a closed connection and gives its slot back.
func (l *connListener) release(c *conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
	if l.sem != nil {
		<-l.sem
	}
}

// watch expires the deadlines of the open connections each tick; it ends
// when none is open (Accept starts it again).
func (l *connListener) watch() {
	t := time.NewTicker(l.tick)
	defer t.Stop()
	var batch []*conn
	for now := range t.C {
		l.mu.Lock()
		if len(l.conns) == 0 {
			l.watching = false
			l.mu.Unlock()
			return
		}
		batch = batch[:0]
		for c := range l.conns {
			batch = append(batch, c)
		}
		l.mu.Unlock()
		ns := now.UnixNano()
		l.lastTick.Store(ns)
		for _, c := range batch {
			c.expire(ns)
		}
		clear(batch)
	}
}

// Close stops accepting; it also ends an Accept waiting for a slot.
func (l *connListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// open is the number of connections open.
func (l *connListener) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}
