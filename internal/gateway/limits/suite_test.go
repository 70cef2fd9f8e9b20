package limits

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// backend opens an empty store for a test. another opens a second client of
// the same store, as a second node of a cluster would (for Local, the same
// value: a Local is one node's).
type backend struct {
	name string
	open func(t *testing.T) (c Counter, another func() Counter)
}

// base is a UTC midnight a little in the future: windows of a minute, an
// hour or a day start there, and Redis (which expires keys by its own
// clock) keeps the keys of its windows.
func base() time.Time { return time.Now().UTC().Truncate(24 * time.Hour).Add(48 * time.Hour) }

// runSuite runs the behaviour every Counter must have against each backend.
func runSuite(t *testing.T, b backend) {
	t.Run("AllowIsExactAtTheLimit", func(t *testing.T) { testAllowBoundary(t, b) })
	t.Run("WindowRollsOverOnItsBoundary", func(t *testing.T) { testRollover(t, b) })
	t.Run("ReserveAndSettle", func(t *testing.T) { testReserveSettle(t, b) })
	t.Run("SettleLandsInTheReservationsWindow", func(t *testing.T) { testSettleOldWindow(t, b) })
	t.Run("ConcurrentAllowNeverExceedsTheLimit", func(t *testing.T) { testConcurrentAllow(t, b) })
	t.Run("ConcurrentReserveNeverExceedsTheLimit", func(t *testing.T) { testConcurrentReserve(t, b) })
	t.Run("Idempotency", func(t *testing.T) { testIdempotency(t, b) })
	t.Run("IdempotencyRace", func(t *testing.T) { testIdempotencyRace(t, b) })
	t.Run("ClaimExpires", func(t *testing.T) { testClaimExpires(t, b) })
	t.Run("InvalidArguments", func(t *testing.T) { testInvalid(t, b) })
}

func testAllowBoundary(t *testing.T, b backend) {
	c, _ := b.open(t)
	ctx, now := context.Background(), base().Add(30*time.Second)
	for i := 1; i <= 3; i++ {
		r, err := c.Allow(ctx, "rl|a1", 3, time.Minute, now)
		if err != nil || !r.Allowed || r.Used != float64(i) || r.Limit != 3 {
			t.Fatalf("call %d: %+v, %v; want allowed with used %d", i, r, err, i)
		}
		if want := base().Add(time.Minute); !r.ResetAt.Equal(want) {
			t.Fatalf("ResetAt %v, want %v", r.ResetAt, want)
		}
	}
	for range 2 {
		r, err := c.Allow(ctx, "rl|a1", 3, time.Minute, now)
		if err != nil || r.Allowed || r.Used != 3 {
			t.Fatalf("over the limit: %+v, %v; want refused with used 3", r, err)
		}
	}
	if u, err := c.Usage(ctx, "rl|a1", time.Minute, now); err != nil || u != 3 {
		t.Fatalf("Usage %v, %v; want 3 (refused calls do not count)", u, err)
	}
	// Another key and another window length are other counters.
	if r, _ := c.Allow(ctx, "rl|a2", 3, time.Minute, now); !r.Allowed || r.Used != 1 {
		t.Fatalf("another key: %+v", r)
	}
	if r, _ := c.Allow(ctx, "rl|a1", 3, time.Hour, now); !r.Allowed || r.Used != 1 {
		t.Fatalf("another window length: %+v", r)
	}
	if r, _ := c.Allow(ctx, "rl|zero", 0, time.Minute, now); r.Allowed {
		t.Fatalf("limit 0 allowed a call: %+v", r)
	}
}

func testRollover(t *testing.T, b backend) {
	c, _ := b.open(t)
	ctx := context.Background()
	last := base().Add(time.Minute - time.Nanosecond) // the last instant of the first minute
	for range 2 {
		if r, _ := c.Allow(ctx, "rl|roll", 2, time.Minute, last); !r.Allowed {
			t.Fatalf("refused within the limit: %+v", r)
		}
	}
	if r, _ := c.Allow(ctx, "rl|roll", 2, time.Minute, last); r.Allowed {
		t.Fatalf("allowed over the limit: %+v", r)
	}
	next := base().Add(time.Minute)
	r, err := c.Allow(ctx, "rl|roll", 2, time.Minute, next)
	if err != nil || !r.Allowed || r.Used != 1 || !r.ResetAt.Equal(next.Add(time.Minute)) {
		t.Fatalf("first call of the next window: %+v, %v", r, err)
	}
	// A daily window is a UTC day.
	day := 24 * time.Hour
	if r, _ := c.Allow(ctx, "rl|day", 1, day, base().Add(-time.Second)); !r.Allowed || !r.ResetAt.Equal(base()) {
		t.Fatalf("23:59:59: %+v", r)
	}
	if r, _ := c.Allow(ctx, "rl|day", 1, day, base().Add(-12*time.Hour)); r.Allowed {
		t.Fatalf("same UTC day allowed twice: %+v", r)
	}
	if r, _ := c.Allow(ctx, "rl|day", 1, day, base()); !r.Allowed || !r.ResetAt.Equal(base().Add(day)) {
		t.Fatalf("midnight starts a new day: %+v", r)
	}
}

func usage(t *testing.T, c Counter, key string, per time.Duration, now time.Time) float64 {
	t.Helper()
	u, err := c.Usage(context.Background(), key, per, now)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func testReserveSettle(t *testing.T, b backend) {
	c, _ := b.open(t)
	ctx, now, day := context.Background(), base().Add(time.Hour), 24*time.Hour
	r1, res, err := c.Reserve(ctx, "budget|a1", 4, 10, day, now)
	if err != nil || !res.Allowed || res.Used != 4 || r1.Amount != 4 || r1.Key != "budget|a1" || r1.Per != day {
		t.Fatalf("reserve 4 of 10: %+v %+v %v", r1, res, err)
	}
	r2, res, err := c.Reserve(ctx, "budget|a1", 7, 10, day, now)
	if err != nil || res.Allowed || res.Used != 4 || r2 != (Reservation{}) {
		t.Fatalf("reserve 7 more: %+v %+v %v; want refused, nothing taken", r2, res, err)
	}
	if err := c.Settle(ctx, r1, 2.5); err != nil { // under-spend: 1.5 comes back
		t.Fatal(err)
	}
	if u := usage(t, c, "budget|a1", day, now); u != 2.5 {
		t.Fatalf("after settling 2.5: used %v", u)
	}
	r3, res, err := c.Reserve(ctx, "budget|a1", 7.5, 10, day, now)
	if err != nil || !res.Allowed || res.Used != 10 {
		t.Fatalf("reserve exactly up to the limit: %+v %v", res, err)
	}
	if err := c.Settle(ctx, r3, 8.25); err != nil { // over-spend: 0.75 more is charged
		t.Fatal(err)
	}
	if u := usage(t, c, "budget|a1", day, now); u != 10.75 {
		t.Fatalf("after over-spending: used %v, want 10.75", u)
	}
	if _, res, _ := c.Reserve(ctx, "budget|a1", 0.5, 10, day, now); res.Allowed || res.Used != 10.75 {
		t.Fatalf("reserve over an over-spent budget: %+v", res)
	}
	// A call that did not run settles with 0 and returns its reservation.
	r4, res, err := c.Reserve(ctx, "budget|b", 3, 5, day, now)
	if err != nil || !res.Allowed {
		t.Fatalf("%+v %v", res, err)
	}
	if err := c.Settle(ctx, r4, 0); err != nil {
		t.Fatal(err)
	}
	if u := usage(t, c, "budget|b", day, now); u != 0 {
		t.Fatalf("after releasing: used %v", u)
	}
	if err := c.Settle(ctx, r4, 0); err != nil { // settling at the reserved amount is a no-op
		t.Fatal(err)
	}
}

func testSettleOldWindow(t *testing.T, b backend) {
	c, _ := b.open(t)
	ctx, per := context.Background(), time.Minute
	then, later := base().Add(10*time.Second), base().Add(90*time.Second)
	r, res, err := c.Reserve(ctx, "budget|slow", 5, 5, per, then)
	if err != nil || !res.Allowed {
		t.Fatalf("%+v %v", res, err)
	}
	if _, res, _ := c.Reserve(ctx, "budget|slow", 5, 5, per, later); !res.Allowed {
		t.Fatalf("the next window is full: %+v", res)
	}
	if err := c.Settle(ctx, r, 1); err != nil {
		t.Fatal(err)
	}
	if u := usage(t, c, "budget|slow", per, then); u != 1 {
		t.Fatalf("old window after settling: %v, want 1", u)
	}
	if u := usage(t, c, "budget|slow", per, later); u != 5 {
		t.Fatalf("current window changed by an old settlement: %v, want 5", u)
	}
}

func testConcurrentAllow(t *testing.T, b backend) {
	c, another := b.open(t)
	clients := []Counter{c, another()}
	const goroutines, calls, limit = 50, 10, 137
	now := base().Add(time.Second)
	var allowed atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for range calls {
				r, err := clients[g%2].Allow(context.Background(), "rl|hammer", limit, time.Minute, now)
				if err != nil {
					errs <- err
					return
				}
				if r.Allowed {
					allowed.Add(1)
				}
				if r.Used > limit {
					errs <- fmt.Errorf("used %v over limit %d", r.Used, limit)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if allowed.Load() != limit {
		t.Fatalf("allowed %d of %d calls, want exactly %d", allowed.Load(), goroutines*calls, limit)
	}
	if u := usage(t, c, "rl|hammer", time.Minute, now); u != limit {
		t.Fatalf("usage %v, want %d", u, limit)
	}
}

func testConcurrentReserve(t *testing.T, b backend) {
	c, another := b.open(t)
	clients := []Counter{c, another()}
	const goroutines = 50
	now := base().Add(time.Second)
	var taken atomic.Int64 // in quarters
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for range 4 {
				_, r, err := clients[g%2].Reserve(context.Background(), "budget|hammer", 0.25, 20, time.Hour, now)
				if err != nil {
					t.Error(err)
					return
				}
				if r.Allowed {
					taken.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if taken.Load() != 80 {
		t.Fatalf("took %d quarters of a budget of 20, want exactly 80", taken.Load())
	}
	if u := usage(t, c, "budget|hammer", time.Hour, now); u != 20 {
		t.Fatalf("usage %v, want 20", u)
	}
}

func testIdempotency(t *testing.T, b backend) {
	c, another := b.open(t)
	other := another()
	ctx, ttl := context.Background(), time.Minute
	if cl, err := c.Claim(ctx, "idem|k1", ttl); err != nil || !cl.Claimed {
		t.Fatalf("first claim: %+v, %v", cl, err)
	}
	if cl, err := other.Claim(ctx, "idem|k1", ttl); err != nil || cl.Claimed || !cl.InProgress {
		t.Fatalf("claim while running: %+v, %v; want InProgress", cl, err)
	}
	if err := c.Complete(ctx, "idem|k1", []byte(`{"ok":true}`), ttl); err != nil {
		t.Fatal(err)
	}
	cl, err := other.Claim(ctx, "idem|k1", ttl)
	if err != nil || cl.Claimed || cl.InProgress || string(cl.Response) != `{"ok":true}` {
		t.Fatalf("claim after completion: %+v, %v; want the stored response", cl, err)
	}
	if err := other.Release(ctx, "idem|k1"); err != nil {
		t.Fatal(err)
	}
	if cl, _ := c.Claim(ctx, "idem|k1", ttl); cl.Claimed {
		t.Fatal("Release forgot a completed call")
	}

	// A call that failed before running is released and can be retried.
	if cl, _ := c.Claim(ctx, "idem|k2", ttl); !cl.Claimed {
		t.Fatalf("claim k2: %+v", cl)
	}
	if err := c.Release(ctx, "idem|k2"); err != nil {
		t.Fatal(err)
	}
	if cl, _ := other.Claim(ctx, "idem|k2", ttl); !cl.Claimed {
		t.Fatalf("claim after release: %+v, want Claimed", cl)
	}
	if err := c.Complete(ctx, "idem|never-claimed", []byte("x"), ttl); !errors.Is(err, ErrNoClaim) {
		t.Fatalf("Complete without a claim: %v, want ErrNoClaim", err)
	}
	if err := c.Release(ctx, "idem|never-claimed"); err != nil {
		t.Fatalf("Release without a claim: %v", err)
	}
	// An empty response is a response.
	if cl, _ := c.Claim(ctx, "idem|empty", ttl); !cl.Claimed {
		t.Fatal(cl)
	}
	if err := c.Complete(ctx, "idem|empty", nil, ttl); err != nil {
		t.Fatal(err)
	}
	if cl, _ := c.Claim(ctx, "idem|empty", ttl); cl.Claimed || cl.InProgress {
		t.Fatalf("claim after an empty completion: %+v", cl)
	}
}

func testIdempotencyRace(t *testing.T, b backend) {
	c, another := b.open(t)
	clients := []Counter{c, another()}
	for round := range 5 {
		key := fmt.Sprintf("idem|race%d", round)
		var claimed, inProgress, completed atomic.Int64
		var wg sync.WaitGroup
		for g := range 50 {
			wg.Go(func() {
				cl, err := clients[g%2].Claim(context.Background(), key, time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				switch {
				case cl.Claimed:
					claimed.Add(1)
					// The winner fails in some rounds and completes in others.
					if round%2 == 0 {
						err = clients[g%2].Complete(context.Background(), key, []byte("done"), time.Minute)
					} else {
						err = clients[g%2].Release(context.Background(), key)
					}
					if err != nil {
						t.Error(err)
					}
				case cl.InProgress:
					inProgress.Add(1)
				case string(cl.Response) == "done":
					completed.Add(1)
				default:
					t.Errorf("claim %+v", cl)
				}
			})
		}
		wg.Wait()
		if round%2 == 0 && claimed.Load() != 1 {
			t.Fatalf("round %d: %d callers claimed the key, want 1", round, claimed.Load())
		}
		if round%2 == 1 && claimed.Load() < 1 {
			t.Fatalf("round %d: nobody claimed the key", round)
		}
		if claimed.Load()+inProgress.Load()+completed.Load() != 50 {
			t.Fatalf("round %d: %d+%d+%d outcomes", round, claimed.Load(), inProgress.Load(), completed.Load())
		}
	}
}

func testClaimExpires(t *testing.T, b backend) {
	c, _ := b.open(t)
	ctx := context.Background()
	if cl, _ := c.Claim(ctx, "idem|short", 50*time.Millisecond); !cl.Claimed {
		t.Fatal(cl)
	}
	time.Sleep(120 * time.Millisecond)
	if err := c.Complete(ctx, "idem|short", []byte("late"), time.Minute); !errors.Is(err, ErrNoClaim) {
		t.Fatalf("Complete after the claim expired: %v, want ErrNoClaim", err)
	}
	if cl, _ := c.Claim(ctx, "idem|short", time.Minute); !cl.Claimed {
		t.Fatalf("claim after expiry: %+v, want Claimed", cl)
	}
}

func testInvalid(t *testing.T, b backend) {
	c, _ := b.open(t)
	ctx, now := context.Background(), base()
	for name, err := range map[string]error{
		"empty key":       func() error { _, err := c.Allow(ctx, "", 1, time.Minute, now); return err }(),
		"zero window":     func() error { _, err := c.Allow(ctx, "k", 1, 0, now); return err }(),
		"negative limit":  func() error { _, err := c.Allow(ctx, "k", -1, time.Minute, now); return err }(),
		"negative amount": func() error { _, _, err := c.Reserve(ctx, "k", -1, 1, time.Minute, now); return err }(),
		"NaN limit": func() error {
			var zero float64
			_, _, err := c.Reserve(ctx, "k", 1, zero/zero, time.Minute, now)
			return err
		}(),
		"settle nothing": c.Settle(ctx, Reservation{}, 1),
		"zero ttl":       func() error { _, err := c.Claim(ctx, "k", 0); return err }(),
	} {
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

func TestCrossed(t *testing.T) {
	for _, tc := range []struct {
		before, after, limit, fraction float64
		want                           bool
	}{
		{79, 80, 100, 0.8, true}, {80, 81, 100, 0.8, false}, {70, 95, 100, 0.8, true},
		{0, 10, 100, 0.8, false}, {7.9, 8, 10, 0.8, true}, {99, 100, 100, 1, true},
	} {
		if got := Crossed(tc.before, tc.after, tc.limit, tc.fraction); got != tc.want {
			t.Errorf("Crossed(%v, %v, %v, %v) = %v", tc.before, tc.after, tc.limit, tc.fraction, got)
		}
	}
}

func TestWindowOf(t *testing.T) {
	for _, tc := range []struct {
		now  time.Time
		per  time.Duration
		want int64
	}{
		{time.Unix(0, 0), time.Minute, 0},
		{time.Unix(59, 999999999), time.Minute, 0},
		{time.Unix(60, 0), time.Minute, 1},
		{time.Unix(-1, 0), time.Minute, -1},
		{time.Date(2026, 3, 1, 23, 59, 59, 0, time.UTC), 24 * time.Hour, 20513},
		{time.Date(2026, 3, 2, 0, 0, 0, 0, time.FixedZone("CET", 3600)), 24 * time.Hour, 20513},
	} {
		if got := windowOf(tc.now, tc.per); got != tc.want {
			t.Errorf("windowOf(%v, %v) = %d, want %d", tc.now, tc.per, got, tc.want)
		}
	}
}
