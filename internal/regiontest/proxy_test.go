package regiontest

import (
	"bytes"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
)

// echoServer echoes every connection back on loopback until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func newProxy(t *testing.T, target string, delay time.Duration) *Proxy {
	t.Helper()
	p, err := NewProxy("127.0.0.1:0", target, delay)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// roundTrip sends a line through conn and times its echo.
func roundTrip(conn net.Conn, timeout time.Duration) (time.Duration, error) {
	conn.SetDeadline(time.Now().Add(timeout))
	start := time.Now()
	if _, err := conn.Write([]byte("ping\n")); err != nil {
		return 0, err
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(conn, buf); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func TestProxyDelaysBothWays(t *testing.T) {
	const delay = 40 * time.Millisecond
	p := newProxy(t, echoServer(t), delay)
	conn, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := range 3 {
		rtt, err := roundTrip(conn, 5*time.Second)
		if err != nil {
			t.Fatalf("round trip %d: %v", i, err)
		}
		if rtt < 2*delay {
			t.Fatalf("round trip %d took %v, want at least %v", i, rtt, 2*delay)
		}
		if rtt > 2*delay+time.Second {
			t.Fatalf("round trip %d took %v: the delay is not what the proxy adds", i, rtt)
		}
	}

	p.SetDelay(0)
	rtt, err := roundTrip(conn, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if rtt >= 2*delay {
		t.Fatalf("round trip without delay took %v", rtt)
	}
}

func TestProxyCutAndHeal(t *testing.T) {
	p := newProxy(t, echoServer(t), 5*time.Millisecond)
	live, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if _, err := roundTrip(live, 5*time.Second); err != nil {
		t.Fatal(err)
	}

	p.Cut()
	if _, err := roundTrip(live, 2*time.Second); err == nil {
		t.Fatal("a connection live at the cut still works")
	}
	// A new connection is accepted and black-holed: the client times out.
	held, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatalf("dial during cut: %v (want accepted and held)", err)
	}
	defer held.Close()
	_, err = roundTrip(held, 200*time.Millisecond)
	if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("round trip during cut: got %v, want a timeout", err)
	}

	p.Heal()
	fresh, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if _, err := roundTrip(fresh, 5*time.Second); err != nil {
		t.Fatalf("round trip after heal: %v", err)
	}
	// The held connection is forwarded at last, with the ping it sent
	// during the cut.
	held.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(held, buf); err != nil || string(buf) != "ping\n" {
		t.Fatalf("held connection after heal: %q, %v", buf, err)
	}
}

func TestProxyBulkTransfer(t *testing.T) {
	const (
		delay = 40 * time.Millisecond
		size  = 8 << 20
	)
	p := newProxy(t, echoServer(t), delay)
	data := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	conn, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))

	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		_, err := conn.Write(data)
		conn.(*net.TCPConn).CloseWrite()
		errc <- err
	}()
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if !bytes.Equal(got, data) {
		t.Fatalf("echo through the proxy differs: %d bytes, sha256 %x, want %d bytes, sha256 %x",
			len(got), sha256.Sum256(got), len(data), sha256.Sum256(data))
	}
	// Serialized by the delay, 8 MiB in 32 KiB chunks would take 256 ×
	// 2 × 40 ms ≈ 20 s; pipelined it takes little more than a round trip.
	if took > 5*time.Second {
		t.Fatalf("8 MiB round trip took %v: the delay serializes the chunks", took)
	}
	t.Logf("8 MiB echoed through a %v proxy in %v", delay, took)
}

func TestProxyCloseEndsGoroutines(t *testing.T) {
	target := echoServer(t)
	before := runtime.NumGoroutine()
	p, err := NewProxy("127.0.0.1:0", target, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	for range 5 {
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := roundTrip(c, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// One more held by a cut, one more pending data in flight.
	p.Cut()
	h, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	p.Heal()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("in flight"))

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	// The echo server's goroutines for these connections end once they
	// see the proxy close them; give them a moment, then compare.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines after Close, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Fatal("the proxy still accepts after Close")
	}
	for _, c := range conns {
		c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("a connection still reads after Close")
		}
	}
}
