package node

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Deadlines kept by the node, not the runtime.
//
// net/http moves a connection's deadlines about eight times per request: a
// header deadline once the next request's first bytes arrive, the read
// timeout after the headers, the write timeout, no read deadline for its
// background read while the handler runs, a deadline in the past and none
// again to stop that read, no write deadline after the answer, the idle
// timeout. Each move of a real deadline re-arms a runtime timer, and on a
// busy core that cost 4.7 % of a single check's CPU (perf, the refund
// check at c=8), where a server without timeouts pays only for the three
// moves of the background read.
//
// So a connection of the node keeps the deadline asked for as a number,
// and arms the real one only when it matters:
//
//   - A deadline before the watchdog's last tick is set at once: net/http
//     uses one long past to stop a read that is under way, and it must stop
//     it now.
//   - A future deadline is only recorded. The listener's watchdog, which
//     looks at every connection each tick, sets a recorded deadline that
//     has passed on the real connection, which ends the read or write
//     waiting on it with os.ErrDeadlineExceeded, as the runtime would have.
//   - A read or write that fails with a timeout while its recorded
//     deadline has not passed (it was moved after the real one was set)
//     clears the real deadline and goes on.
//
// A deadline therefore takes effect at most one tick late and never
// early. The tick is a tenth of the shortest of the node's HTTP timeouts,
// between 10 and 100 ms; against timeouts of seconds that lateness does not
// matter, and the tests of the bounds (http_test.go) see them enforced.

// deadline is one direction's deadline of a connection.
type deadline struct {
	// want is the deadline asked for, in Unix nanoseconds; 0 is none.
	want atomic.Int64
	// armed is whether the real connection has a deadline set (always one
	// that has passed): only then does a move need a call on it.
	armed atomic.Bool
	mu    sync.Mutex
}

// set records t for the direction and arms or clears the real deadline
// where that is needed, through setReal. A deadline before tick, the
// watchdog's last look, is set at once; a later one, even if it has
// passed by now, waits for the next look (that saves reading the clock).
//
// The common move, to none or a later deadline while no real one is set,
// takes no lock: a watchdog that sets the real deadline for the value
// before it makes a read or write time out early, and retry lets it go
// on.
func (d *deadline) set(t time.Time, tick int64, setReal func(time.Time) error) error {
	var w int64 // none
	if !t.IsZero() {
		w = max(t.UnixNano(), 1) // 0 would be none
	}
	if w == 0 || w > tick {
		d.want.Store(w)
		if !d.armed.Load() {
			return nil
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.want.Store(w)
	if w != 0 && w <= tick {
		d.armed.Store(true)
		return setReal(t)
	}
	if d.armed.Load() {
		d.armed.Store(false)
		return setReal(time.Time{})
	}
	return nil
}

// expire arms the real deadline if the one asked for has passed by now;
// the watchdog calls it.
func (d *deadline) expire(now int64, setReal func(time.Time) error) {
	if w := d.want.Load(); w == 0 || w > now || d.armed.Load() {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if w := d.want.Load(); w != 0 && w <= now && !d.armed.Load() {
		d.armed.Store(true)
		_ = setReal(time.Unix(0, w))
	}
}

// retry reports whether err, a timeout of the real connection, came before
// the deadline asked for (which was moved since), and if so clears the
// real deadline so that the read or write can go on.
func (d *deadline) retry(err error, tick int64, setReal func(time.Time) error) bool {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	if w := d.want.Load(); w != 0 && w <= tick {
		return false // passed: the common case, net/http stopping its read
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if w := d.want.Load(); w != 0 && w <= time.Now().UnixNano() {
		return false
	}
	d.armed.Store(false)
	return setReal(time.Time{}) == nil
}

// conn is a connection of the node's HTTP listener: it gives its slot of
// the connection limit back when closed and keeps its deadlines as above.
type conn struct {
	net.Conn
	l      *connListener
	once   sync.Once
	rd, wd deadline
}

func (c *conn) Read(p []byte) (int, error) {
	for {
		n, err := c.Conn.Read(p)
		if err == nil || !c.rd.retry(err, c.l.lastTick.Load(), c.Conn.SetReadDeadline) {
			return n, err
		}
		if n > 0 {
			return n, nil
		}
	}
}

func (c *conn) Write(p []byte) (int, error) {
	written := 0
	for {
		n, err := c.Conn.Write(p[written:])
		written += n
		if err == nil || !c.wd.retry(err, c.l.lastTick.Load(), c.Conn.SetWriteDeadline) {
			return written, err
		}
	}
}

func (c *conn) SetDeadline(t time.Time) error {
	return errors.Join(c.SetReadDeadline(t), c.SetWriteDeadline(t))
}

func (c *conn) SetReadDeadline(t time.Time) error {
	return c.rd.set(t, c.l.lastTick.Load(), c.Conn.SetReadDeadline)
}

func (c *conn) SetWriteDeadline(t time.Time) error {
	return c.wd.set(t, c.l.lastTick.Load(), c.Conn.SetWriteDeadline)
}

// expire is the watchdog's look at c.
func (c *conn) expire(now int64) {
	c.rd.expire(now, c.Conn.SetReadDeadline)
	c.wd.expire(now, c.Conn.SetWriteDeadline)
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c) })
	return err
}

// tickFor is the watchdog's tick for the node's HTTP timeouts: a tenth of
// the shortest that is on, between 10 and 100 ms.
func tickFor(l HTTPLimits) time.Duration {
	tick := 100 * time.Millisecond
	for _, d := range []time.Duration{l.ReadTimeout, l.ReadHeaderTimeout, l.WriteTimeout, l.IdleTimeout} {
		if d > 0 {
			tick = min(tick, d/10)
		}
	}
	return max(tick, 10*time.Millisecond)
}
