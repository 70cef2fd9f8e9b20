package limits

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aibos/kernel/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// quiet drops go-redis's log lines (dial failures while a test has stopped
// Redis on purpose); the errors themselves are asserted.
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

func TestMain(m *testing.M) {
	redis.SetLogger(quiet{})
	os.Exit(m.Run())
}

// openRedis opens a client with a timeout far above the 200ms default: the
// behavioural tests run under -race beside other packages' tests on a busy
// CI machine, and a scheduling pause must not fail them. The tests of the
// timeout itself set their own.
func openRedis(t testing.TB, addr string) *Redis {
	t.Helper()
	r, err := NewRedis(RedisOptions{Addr: addr, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestRedis(t *testing.T) {
	runSuite(t, backend{name: "redis", open: func(t *testing.T) (Counter, func() Counter) {
		s := redistest.Start(t)
		return openRedis(t, s.Addr()), func() Counter { return openRedis(t, s.Addr()) }
	}})
}

func TestRedisDownFailsClosedAndRecovers(t *testing.T) {
	s := redistest.Start(t)
	r := openRedis(t, s.Addr())
	ctx, now := context.Background(), base()
	if res, err := r.Allow(ctx, "rl|a", 10, time.Minute, now); err != nil || !res.Allowed {
		t.Fatalf("%+v %v", res, err)
	}
	s.Stop()
	calls := map[string]func() error{
		"Allow":    func() error { _, err := r.Allow(ctx, "rl|a", 10, time.Minute, now); return err },
		"Reserve":  func() error { _, _, err := r.Reserve(ctx, "b|a", 1, 10, time.Minute, now); return err },
		"Settle":   func() error { return r.Settle(ctx, Reservation{Key: "b|a", Per: time.Minute, Amount: 1}, 2) },
		"Usage":    func() error { _, err := r.Usage(ctx, "rl|a", time.Minute, now); return err },
		"Claim":    func() error { _, err := r.Claim(ctx, "idem|a", time.Minute); return err },
		"Complete": func() error { return r.Complete(ctx, "idem|a", nil, time.Minute) },
		"Release":  func() error { return r.Release(ctx, "idem|a") },
	}
	for name, call := range calls {
		start := time.Now()
		err := call()
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("%s with Redis down: %v, want ErrUnavailable", name, err)
		}
		if !strings.Contains(err.Error(), s.Addr()) || !strings.Contains(err.Error(), "failing closed") {
			t.Fatalf("%s: message %q does not name the address and the consequence", name, err)
		}
		// Loose: the point is "not the 5 s defaults", not a precise figure.
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("%s took %v with Redis down", name, d)
		}
	}

	s.Restart() // empty, as a Redis without persistence comes back
	deadline := time.Now().Add(5 * time.Second)
	for {
		res, err := r.Allow(ctx, "rl|a", 10, time.Minute, now)
		if err == nil {
			if !res.Allowed || res.Used != 1 {
				t.Fatalf("after restart: %+v", res)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing 5s after Redis came back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if cl, err := r.Claim(ctx, "idem|after", time.Minute); err != nil || !cl.Claimed {
		t.Fatalf("claim after restart: %+v %v", cl, err)
	}
}

// A Redis that accepts connections and never answers (hung, or a black hole
// on the network) costs a call its timeout, not more.
func TestRedisTimeoutOnAHungServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-accepted
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	r, err := NewRedis(RedisOptions{Addr: l.Addr().String(), Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	start := time.Now()
	_, err = r.Allow(context.Background(), "k", 1, time.Minute, base())
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Allow on a hung Redis: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Allow waited %v for a hung Redis with a 100ms timeout", d)
	}
}

func TestNewRedisValidates(t *testing.T) {
	if _, err := NewRedis(RedisOptions{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty address: %v", err)
	}
}

func BenchmarkRedisAllow(b *testing.B) {
	s := redistest.Start(b)
	r := openRedis(b, s.Addr())
	ctx, now := context.Background(), time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Allow(ctx, "rl|agent:a1|action:crm.read", 1<<50, time.Minute, now); err != nil {
			b.Fatal(err)
		}
	}
}
