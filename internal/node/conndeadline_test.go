package node

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// pair is a connection accepted by a connListener with tick, and the
// client's end of it.
func pair(t testing.TB, tick time.Duration) (*conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newConnListener(ln, HTTPLimits{MaxConns: 4})
	l.tick = tick
	t.Cleanup(func() { l.Close() })
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*conn), client
}

// readTimeout reads from c and wants a timeout, at least after and at most
// within of start.
func readTimeout(t *testing.T, c net.Conn, start time.Time, after, within time.Duration) {
	t.Helper()
	_, err := c.Read(make([]byte, 8))
	took := time.Since(start)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read: %v, want a deadline exceeded", err)
	}
	if ne, ok := errors.AsType[net.Error](err); !ok || !ne.Timeout() {
		t.Fatalf("read: %v is not a net.Error timeout", err)
	}
	if took < after || took > within {
		t.Fatalf("the read timed out after %s, want between %s and %s", took, after, within)
	}
}

// A future deadline ends a waiting read once it has passed, never before,
// and at most about a tick late.
func TestDeadlineEndsAWaitingRead(t *testing.T) {
	c, _ := pair(t, 10*time.Millisecond)
	start := time.Now()
	if err := c.SetReadDeadline(start.Add(200 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	readTimeout(t, c, start, 200*time.Millisecond, 2*time.Second)
	// It stays passed: the next read fails at once.
	readTimeout(t, c, time.Now(), 0, 50*time.Millisecond)
}

// A deadline in the past stops a read that is under way at once, as
// net/http's abort of its background read needs, whatever the tick.
func TestPastDeadlineStopsAReadNow(t *testing.T) {
	c, _ := pair(t, time.Hour)
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 8))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	if err := c.SetReadDeadline(time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a past deadline did not stop the read")
	}
	t.Logf("stopped after %s", time.Since(start))
}

// A deadline moved later, or cleared, after the real one was set lets the
// connection read again; one moved while a read waits lets that read go on.
func TestMovedDeadlineLetsReadsGoOn(t *testing.T) {
	c, client := pair(t, 10*time.Millisecond)
	if err := c.SetReadDeadline(time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	readTimeout(t, c, time.Now(), 0, time.Second)
	for _, d := range []time.Time{{}, time.Now().Add(time.Minute)} {
		if err := c.SetReadDeadline(d); err != nil {
			t.Fatal(err)
		}
		if _, err := client.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if n, err := c.Read(make([]byte, 8)); n != 1 || err != nil {
			t.Fatalf("read after the deadline moved to %v: %d %v", d, n, err)
		}
	}

	// A read waits on a deadline 100 ms away; before it passes, the
	// deadline moves a minute on, and the watchdog must not end the read.
	if err := c.SetReadDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := io.ReadFull(c, make([]byte, 1))
		got <- err
	}()
	time.Sleep(30 * time.Millisecond)
	if err := c.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := client.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("the read under a moved deadline: %v", err)
	}

	// The real deadline set and then the wanted one moved while a read
	// waits: the read retries and gets the byte.
	if err := c.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	readTimeout(t, c, time.Now(), 0, 2*time.Second)
	c.rd.want.Store(time.Now().Add(time.Minute).UnixNano()) // moved, the real one still set
	go func() {
		_, err := io.ReadFull(c, make([]byte, 1))
		got <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if _, err := client.Write([]byte("z")); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("a read under a real deadline the wanted one outlives: %v", err)
	}
}

// A write the peer does not take ends at its deadline.
func TestDeadlineEndsABlockedWrite(t *testing.T) {
	c, _ := pair(t, 10*time.Millisecond)
	start := time.Now()
	if err := c.SetWriteDeadline(start.Add(200 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	var err error
	for err == nil && time.Since(start) < 10*time.Second {
		_, err = c.Write(buf)
	}
	took := time.Since(start)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write: %v after %s", err, took)
	}
	if took < 200*time.Millisecond || took > 3*time.Second {
		t.Fatalf("the write timed out after %s", took)
	}
}

// The watchdog stops once no connection is open, and Accept starts it
// again.
func TestWatchdogStopsWhenIdle(t *testing.T) {
	c, _ := pair(t, 10*time.Millisecond)
	l := c.l
	c.Close()
	for i := 0; ; i++ {
		l.mu.Lock()
		w := l.watching
		l.mu.Unlock()
		if !w {
			break
		}
		if i > 500 {
			t.Fatal("the watchdog still runs with no connection open")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := l.open(); n != 0 {
		t.Fatalf("%d open", n)
	}
}

func TestTickFor(t *testing.T) {
	for _, tc := range []struct {
		lim  HTTPLimits
		want time.Duration
	}{
		{HTTPLimits{ReadTimeout: 30 * time.Second, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: time.Minute, IdleTimeout: time.Minute}, 100 * time.Millisecond},
		{HTTPLimits{ReadTimeout: 300 * time.Millisecond, WriteTimeout: -1}, 30 * time.Millisecond},
		{HTTPLimits{IdleTimeout: time.Millisecond}, 10 * time.Millisecond},
		{HTTPLimits{ReadTimeout: -1, WriteTimeout: -1, IdleTimeout: -1, ReadHeaderTimeout: -1}, 100 * time.Millisecond},
	} {
		if got := tickFor(tc.lim); got != tc.want {
			t.Errorf("tickFor(%+v) = %s, want %s", tc.lim, got, tc.want)
		}
	}
}

// BenchmarkRequestDeadlines moves a connection's deadlines as net/http
// does for one keep-alive request with all four timeouts on, on the
// node's connection and on the bare TCP connection.
func BenchmarkRequestDeadlines(b *testing.B) {
	c, _ := pair(b, 100*time.Millisecond)
	for _, bc := range []struct {
		name string
		c    net.Conn
	}{{"node", c}, {"tcp", c.Conn}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				now := time.Now()
				bc.c.SetReadDeadline(now.Add(10 * time.Second))
				bc.c.SetReadDeadline(now.Add(30 * time.Second))
				bc.c.SetWriteDeadline(now.Add(time.Minute))
				bc.c.SetReadDeadline(time.Time{})
				bc.c.SetReadDeadline(time.Unix(1, 0))
				bc.c.SetReadDeadline(time.Time{})
				bc.c.SetWriteDeadline(time.Time{})
				bc.c.SetReadDeadline(now.Add(time.Minute))
			}
		})
	}
}
