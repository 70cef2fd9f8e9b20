// Package limits owns the counters behind the agent gateway's rate limits,
// budgets and idempotency keys: how many calls an agent made this minute, how
// much of its budget it spent today, and whether a call with this
// idempotency key already ran.
//
// Windows are fixed and aligned to multiples of their length since the Unix
// epoch: per=1m counts each calendar minute, per=24h each UTC day. A limit is
// therefore exact (never more than limit in a window) and means the same on
// every backend and every node. The caller passes "now", so tests and the
// gateway decide the time, not the counter.
//
// Two backends implement Counter: Local, exact and in-memory for a single
// node, persisted to a file; and Redis, shared by every node of a cluster,
// atomic through Lua scripts. A Redis that cannot be reached yields errors
// wrapping ErrUnavailable, on which the gateway fails closed.
package limits

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// Counter counts rate limits and budgets in fixed windows and remembers
// idempotent calls. Keys are opaque strings built by the caller (e.g.
// "rl|agent:a1|action:crm.read"); a key is used either with Allow or with
// Reserve, never both.
type Counter interface {
	// Allow counts one action against limit in key's window. It is refused
	// if the count would exceed limit, and then it does not count.
	Allow(ctx context.Context, key string, limit int64, per time.Duration, now time.Time) (Result, error)
	// Reserve takes amount from key's budget window if used+amount <= limit;
	// otherwise it refuses without taking anything.
	Reserve(ctx context.Context, key string, amount, limit float64, per time.Duration, now time.Time) (Reservation, Result, error)
	// Settle reconciles a reservation with the actual cost, which may be less,
	// equal or more; a call that did not run settles with 0 to release it.
	// The adjustment lands in the reservation's window even if the clock has
	// moved on.
	Settle(ctx context.Context, r Reservation, actual float64) error
	// Claim starts an idempotent call. The first claimer of key gets
	// Claimed; later ones get the stored response if Complete was called,
	// or InProgress if not yet. ttl bounds how long the claim is remembered.
	Claim(ctx context.Context, key string, ttl time.Duration) (Claim, error)
	// Complete stores the response of a claimed call for ttl. It returns
	// ErrNoClaim if the claim was released or has expired.
	Complete(ctx context.Context, key string, response []byte, ttl time.Duration) error
	// Release forgets an unfinished claim (the call failed before running)
	// so that a retry can run. A completed call is not forgotten.
	Release(ctx context.Context, key string) error
	// Usage is the amount used in the window that contains now.
	Usage(ctx context.Context, key string, per time.Duration, now time.Time) (float64, error)
	Close() error
}

// Result is the state of a window after Allow or Reserve.
type Result struct {
	Allowed bool
	Used    float64   // in the window, including this call if it was allowed
	Limit   float64   //
	ResetAt time.Time // when the window ends
}

// Reservation is an amount taken from a budget window, to be settled.
type Reservation struct {
	Key    string
	Window int64 // index of the window: start = Window × Per since the epoch
	Per    time.Duration
	Amount float64
}

// Claim is the outcome of claiming an idempotency key.
type Claim struct {
	Claimed    bool   // this caller runs the call
	InProgress bool   // another caller is running it
	Response   []byte // the stored response of a completed call
}

var (
	// ErrUnavailable wraps every error of a store that cannot be reached or
	// did not answer in time. The gateway fails closed on it.
	ErrUnavailable = errors.New("limits: rate limit store unavailable")
	// ErrInvalid wraps errors about arguments: a non-positive window, a
	// negative amount, an empty key.
	ErrInvalid = errors.New("limits: invalid argument")
	// ErrNoClaim is returned by Complete when the key is not claimed: the
	// claim was released or expired, so the response was not stored.
	ErrNoClaim = errors.New("limits: idempotency key is not claimed")
	// ErrClosed is returned by a Local after Close.
	ErrClosed = errors.New("limits: counter is closed")
)

// Crossed tells whether a usage going from before to after crossed
// fraction×limit (e.g. 0.8 for an 80% warning) with this call. For an allowed
// Allow, before is Used-1; for an allowed Reserve, Used-Amount.
func Crossed(before, after, limit, fraction float64) bool {
	t := limit * fraction
	return before < t && after >= t
}

// maxPer keeps window arithmetic in nanoseconds far from overflow.
const maxPer = 100 * 365 * 24 * time.Hour

// slack keeps a window's counter after the window ends, so that a node or a
// Redis whose clock is behind or ahead by up to this much still sees it.
const slack = 2 * time.Minute

func windowOf(now time.Time, per time.Duration) int64 {
	n, p := now.UnixNano(), int64(per)
	w := n / p
	if n%p < 0 {
		w--
	}
	return w
}

func windowEnd(w int64, per time.Duration) time.Time {
	return time.Unix(0, (w+1)*int64(per))
}

// ResetAt is when the window of length per that contains now ends.
func ResetAt(now time.Time, per time.Duration) time.Time {
	return windowEnd(windowOf(now, per), per)
}

func checkKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty key", ErrInvalid)
	}
	return nil
}

func checkPer(key string, per time.Duration) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if per <= 0 || per > maxPer {
		return fmt.Errorf("%w: window %v for %q, want more than 0 and at most %v", ErrInvalid, per, key, maxPer)
	}
	return nil
}

// checkSettle validates a Settle call; noop: the actual cost is the
// reserved amount, so there is nothing to adjust.
func checkSettle(r Reservation, actual float64) (noop bool, err error) {
	if err := checkPer(r.Key, r.Per); err != nil {
		return false, err
	}
	if err := checkAmount("actual cost", actual); err != nil {
		return false, err
	}
	return actual == r.Amount, nil
}

func checkAmount(what string, v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return fmt.Errorf("%w: %s is %v, want a finite number >= 0", ErrInvalid, what, v)
	}
	return nil
}

func checkTTL(ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("%w: ttl %v, want more than 0", ErrInvalid, ttl)
	}
	return nil
}
