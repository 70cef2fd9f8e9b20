package limits

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Local is an exact Counter for a single node: counters in memory under one
// mutex, persisted to a file every second and on Close, and reloaded by
// NewLocal, so budgets survive a restart. A crash loses at most the last
// second of counts.
type Local struct {
	path string // "" keeps everything in memory only

	mu       sync.Mutex
	counters map[windowKey]float64 // guarded by mu
	claims   map[string]claim      // guarded by mu
	latest   time.Time             // guarded by mu; the latest now a caller passed
	dirty    bool                  // guarded by mu; changed since the last save
	closed   bool                  // guarded by mu

	saveMu sync.Mutex // serializes writes of the file

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

type windowKey struct {
	key    string
	per    time.Duration
	window int64
}

type claim struct {
	done     bool
	response []byte
	expires  time.Time
}

var _ Counter = (*Local)(nil)

// NewLocal opens the counters persisted at path (creating none until the
// first save) and starts saving them every second. Windows and claims that
// have expired are dropped on load. An empty path keeps counters in memory
// only. Close stops the saver and saves a last time.
func NewLocal(path string) (*Local, error) {
	l := &Local{
		path:     path,
		counters: map[windowKey]float64{},
		claims:   map[string]claim{},
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if path != "" {
		if err := l.load(time.Now()); err != nil {
			return nil, err
		}
	}
	go l.run()
	return l, nil
}

// run saves and drops expired entries every second until Close.
func (l *Local) run() {
	defer close(l.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.expire(time.Now())
			// A failed save is retried on the next tick; Close reports the last one.
			_ = l.save()
		}
	}
}

// Close stops the background saver and saves the counters one last time.
func (l *Local) Close() error {
	l.closeOnce.Do(func() {
		close(l.stop)
		<-l.done
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		l.closeErr = l.save()
	})
	return l.closeErr
}

// expire drops windows that ended more than slack before the latest time a
// caller passed (so that injected clocks are respected), and claims whose ttl
// has passed by the wall clock (Claim takes no now).
func (l *Local) expire(wall time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k := range l.counters {
		if windowEnd(k.window, k.per).Add(slack).Before(l.latest) {
			delete(l.counters, k)
			l.dirty = true
		}
	}
	for k, c := range l.claims {
		if !wall.Before(c.expires) {
			delete(l.claims, k)
			l.dirty = true
		}
	}
}

// lock takes mu for a call at now; it fails after Close.
func (l *Local) lock(now time.Time) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	if now.After(l.latest) {
		l.latest = now
	}
	return nil
}

// Allow implements Counter.
func (l *Local) Allow(_ context.Context, key string, limit int64, per time.Duration, now time.Time) (Result, error) {
	if err := checkPer(key, per); err != nil {
		return Result{}, err
	}
	if limit < 0 {
		return Result{}, fmt.Errorf("%w: limit %d for %q, want >= 0", ErrInvalid, limit, key)
	}
	w := windowOf(now, per)
	k := windowKey{key, per, w}
	if err := l.lock(now); err != nil {
		return Result{}, err
	}
	defer l.mu.Unlock()
	r := Result{Used: l.counters[k], Limit: float64(limit), ResetAt: windowEnd(w, per)}
	if r.Used+1 > r.Limit {
		return r, nil
	}
	r.Used++
	r.Allowed = true
	l.counters[k] = r.Used
	l.dirty = true
	return r, nil
}

// Reserve implements Counter.
func (l *Local) Reserve(_ context.Context, key string, amount, limit float64, per time.Duration, now time.Time) (Reservation, Result, error) {
	if err := checkPer(key, per); err != nil {
		return Reservation{}, Result{}, err
	}
	if err := checkAmount("amount", amount); err != nil {
		return Reservation{}, Result{}, err
	}
	if err := checkAmount("limit", limit); err != nil {
		return Reservation{}, Result{}, err
	}
	w := windowOf(now, per)
	k := windowKey{key, per, w}
	if err := l.lock(now); err != nil {
		return Reservation{}, Result{}, err
	}
	defer l.mu.Unlock()
	r := Result{Used: l.counters[k], Limit: limit, ResetAt: windowEnd(w, per)}
	if r.Used+amount > limit {
		return Reservation{}, r, nil
	}
	r.Used += amount
	r.Allowed = true
	l.counters[k] = r.Used
	l.dirty = true
	return Reservation{Key: key, Window: w, Per: per, Amount: amount}, r, nil
}

// Settle implements Counter.
func (l *Local) Settle(_ context.Context, r Reservation, actual float64) error {
	if noop, err := checkSettle(r, actual); noop || err != nil {
		return err
	}
	if err := l.lock(time.Time{}); err != nil {
		return err
	}
	defer l.mu.Unlock()
	l.counters[windowKey{r.Key, r.Per, r.Window}] += actual - r.Amount
	l.dirty = true
	return nil
}

// Usage implements Counter.
func (l *Local) Usage(_ context.Context, key string, per time.Duration, now time.Time) (float64, error) {
	if err := checkPer(key, per); err != nil {
		return 0, err
	}
	if err := l.lock(now); err != nil {
		return 0, err
	}
	defer l.mu.Unlock()
	return l.counters[windowKey{key, per, windowOf(now, per)}], nil
}

// Claim implements Counter.
func (l *Local) Claim(_ context.Context, key string, ttl time.Duration) (Claim, error) {
	if err := checkKey(key); err != nil {
		return Claim{}, err
	}
	if err := checkTTL(ttl); err != nil {
		return Claim{}, err
	}
	now := time.Now()
	if err := l.lock(time.Time{}); err != nil {
		return Claim{}, err
	}
	defer l.mu.Unlock()
	if c, ok := l.claims[key]; ok && now.Before(c.expires) {
		if c.done {
			return Claim{Response: slices.Clone(c.response)}, nil
		}
		return Claim{InProgress: true}, nil
	}
	l.claims[key] = claim{expires: now.Add(ttl)}
	l.dirty = true
	return Claim{Claimed: true}, nil
}

// Complete implements Counter.
func (l *Local) Complete(_ context.Context, key string, response []byte, ttl time.Duration) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := checkTTL(ttl); err != nil {
		return err
	}
	now := time.Now()
	if err := l.lock(time.Time{}); err != nil {
		return err
	}
	defer l.mu.Unlock()
	if c, ok := l.claims[key]; !ok || !now.Before(c.expires) {
		return fmt.Errorf("%w: %q", ErrNoClaim, key)
	}
	if response == nil {
		response = []byte{}
	}
	l.claims[key] = claim{done: true, response: slices.Clone(response), expires: now.Add(ttl)}
	l.dirty = true
	return nil
}

// Release implements Counter.
func (l *Local) Release(_ context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := l.lock(time.Time{}); err != nil {
		return err
	}
	defer l.mu.Unlock()
	if c, ok := l.claims[key]; ok && !c.done {
		delete(l.claims, key)
		l.dirty = true
	}
	return nil
}
