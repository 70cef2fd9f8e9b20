package node

import (
	"net"
	"sync"
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

// limitListener accepts at most cap(sem) connections at once: Accept
// takes a slot before it accepts, and a connection gives its slot back
// when it is closed (also after a hijack, which hands over the same
// connection).
type limitListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func newLimitListener(ln net.Listener, max int) *limitListener {
	return &limitListener{Listener: ln, sem: make(chan struct{}, max), done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, l: l}, nil
}

// Close stops accepting; it also ends an Accept waiting for a slot.
func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// open is the number of connections holding a slot.
func (l *limitListener) open() int { return len(l.sem) }

type limitConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { <-c.l.sem })
	return err
}
