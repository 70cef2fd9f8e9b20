package limits

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// RedisOptions configures a Redis counter.
type RedisOptions struct {
	Addr     string // host:port
	Password string
	DB       int
	// Timeout bounds each call, dialing included, so that a dead Redis costs
	// the gateway at most this long before it fails closed. Default 200ms.
	Timeout time.Duration
}

// DefaultRedisTimeout is RedisOptions.Timeout when none is set.
const DefaultRedisTimeout = 200 * time.Millisecond

// keyPrefix namespaces every key this package writes in Redis.
const keyPrefix = "aibos:"

// Redis is a Counter shared by every node of a cluster. Each operation is
// one atomic Redis command or Lua script, so two nodes counting against the
// same key never exceed its limit together. Every failure to reach Redis is
// an error wrapping ErrUnavailable.
type Redis struct {
	c       *redis.Client
	addr    string
	timeout time.Duration

	allow, reserve, settle, claim, release *redis.Script
}

var _ Counter = (*Redis)(nil)

// Allow: count one if it stays within the limit (ARGV[1]); keep the window's
// key until ARGV[2] (ms since the epoch). Returns {allowed, used}.
const allowScript = `
local raw = redis.call('GET', KEYS[1])
local used = tonumber(raw or '0')
if used + 1 > tonumber(ARGV[1]) then return {0, raw or '0'} end
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return {1, tostring(n)}
`

// Reserve: take ARGV[1] if used + ARGV[1] <= ARGV[2]; keep the key until
// ARGV[3]. Returns {allowed, used}, used as Redis prints the float.
const reserveScript = `
local raw = redis.call('GET', KEYS[1])
local used = tonumber(raw or '0')
if used + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return {0, raw or '0'} end
local n = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return {1, n}
`

// Settle: add the (possibly negative) delta ARGV[1] to the reservation's
// window, which may have expired meanwhile and so is given its expiry again.
const settleScript = `
redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1
`

// Claim: return the key's value if it has one, else set the in-progress
// marker for ARGV[1] ms and return false (nil): claimed.
const claimScript = `
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], 'p', 'PX', ARGV[1])
return false
`

// Release: delete the key only while it holds the in-progress marker.
const releaseScript = `
if redis.call('GET', KEYS[1]) == 'p' then return redis.call('DEL', KEYS[1]) end
return 0
`

// Idempotency values: "p" while in progress, "d" followed by the response
// once complete.
const (
	markerInProgress = "p"
	markerDone       = "d"
)

// NewRedis returns a counter on the Redis at opts.Addr. It does not contact
// Redis: a Redis that is down at start makes calls fail (closed) until it is up.
func NewRedis(opts RedisOptions) (*Redis, error) {
	if opts.Addr == "" {
		return nil, fmt.Errorf("%w: Redis address is empty, want host:port", ErrInvalid)
	}
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("%w: Redis timeout %v, want >= 0", ErrInvalid, opts.Timeout)
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultRedisTimeout
	}
	c := redis.NewClient(&redis.Options{
		Addr:     opts.Addr,
		Password: opts.Password,
		DB:       opts.DB,
		// RESP2 needs no HELLO round trip and works on any Redis a user has.
		Protocol:                 2,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		DialTimeout:              opts.Timeout,
		ReadTimeout:              opts.Timeout,
		WriteTimeout:             opts.Timeout,
		PoolTimeout:              opts.Timeout,
		ContextTimeoutEnabled:    true,
		// One retry covers a pooled connection that died with a restarted
		// Redis; the context deadline bounds the whole call regardless.
		MaxRetries:         1,
		MinRetryBackoff:    -1,
		MaxRetryBackoff:    -1,
		DialerRetries:      1,
		DialerRetryTimeout: time.Millisecond,
	})
	return &Redis{
		c: c, addr: opts.Addr, timeout: opts.Timeout,
		allow:   redis.NewScript(allowScript),
		reserve: redis.NewScript(reserveScript),
		settle:  redis.NewScript(settleScript),
		claim:   redis.NewScript(claimScript),
		release: redis.NewScript(releaseScript),
	}, nil
}

// Close closes the connections to Redis.
func (r *Redis) Close() error { return r.c.Close() }

func (r *Redis) unavailable(op string, err error) error {
	return fmt.Errorf("%w at %s (%s): %w; failing closed", ErrUnavailable, r.addr, op, err)
}

func (r *Redis) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.timeout)
}

func windowRedisKey(key string, per time.Duration, w int64) string {
	return keyPrefix + "w:" + strconv.FormatInt(int64(per), 10) + ":" + strconv.FormatInt(w, 10) + ":" + key
}

func claimRedisKey(key string) string { return keyPrefix + "idem:" + key }

// expireAtMillis is when Redis may drop a window's key: its end plus slack.
func expireAtMillis(w int64, per time.Duration) int64 {
	return windowEnd(w, per).Add(slack).UnixMilli() + 1
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// scriptResult reads the {allowed, used} pair the Allow and Reserve scripts return.
func scriptResult(v any) (bool, float64, error) {
	pair, ok := v.([]any)
	if !ok || len(pair) != 2 {
		return false, 0, fmt.Errorf("unexpected script reply %v", v)
	}
	allowed, _ := pair[0].(int64)
	s, _ := pair[1].(string)
	used, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return false, 0, fmt.Errorf("unexpected counter value %q", pair[1])
	}
	return allowed == 1, used, nil
}

// Allow implements Counter.
func (r *Redis) Allow(ctx context.Context, key string, limit int64, per time.Duration, now time.Time) (Result, error) {
	if err := checkPer(key, per); err != nil {
		return Result{}, err
	}
	if limit < 0 {
		return Result{}, fmt.Errorf("%w: limit %d for %q, want >= 0", ErrInvalid, limit, key)
	}
	w := windowOf(now, per)
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	v, err := r.allow.Run(ctx, r.c, []string{windowRedisKey(key, per, w)}, limit, expireAtMillis(w, per)).Result()
	if err != nil {
		return Result{}, r.unavailable("allow", err)
	}
	allowed, used, err := scriptResult(v)
	if err != nil {
		return Result{}, r.unavailable("allow", err)
	}
	return Result{Allowed: allowed, Used: used, Limit: float64(limit), ResetAt: windowEnd(w, per)}, nil
}

// Reserve implements Counter.
func (r *Redis) Reserve(ctx context.Context, key string, amount, limit float64, per time.Duration, now time.Time) (Reservation, Result, error) {
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
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	v, err := r.reserve.Run(ctx, r.c, []string{windowRedisKey(key, per, w)},
		formatFloat(amount), formatFloat(limit), expireAtMillis(w, per)).Result()
	if err != nil {
		return Reservation{}, Result{}, r.unavailable("reserve", err)
	}
	allowed, used, err := scriptResult(v)
	if err != nil {
		return Reservation{}, Result{}, r.unavailable("reserve", err)
	}
	res := Result{Allowed: allowed, Used: used, Limit: limit, ResetAt: windowEnd(w, per)}
	if !allowed {
		return Reservation{}, res, nil
	}
	return Reservation{Key: key, Window: w, Per: per, Amount: amount}, res, nil
}

// Settle implements Counter.
func (r *Redis) Settle(ctx context.Context, res Reservation, actual float64) error {
	if noop, err := checkSettle(res, actual); noop || err != nil {
		return err
	}
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	err := r.settle.Run(ctx, r.c, []string{windowRedisKey(res.Key, res.Per, res.Window)},
		formatFloat(actual-res.Amount), expireAtMillis(res.Window, res.Per)).Err()
	if err != nil {
		return r.unavailable("settle", err)
	}
	return nil
}

// Usage implements Counter.
func (r *Redis) Usage(ctx context.Context, key string, per time.Duration, now time.Time) (float64, error) {
	if err := checkPer(key, per); err != nil {
		return 0, err
	}
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	s, err := r.c.Get(ctx, windowRedisKey(key, per, windowOf(now, per))).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, r.unavailable("usage", err)
	}
	used, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, r.unavailable("usage", fmt.Errorf("unexpected counter value %q", s))
	}
	return used, nil
}

// Claim implements Counter.
func (r *Redis) Claim(ctx context.Context, key string, ttl time.Duration) (Claim, error) {
	if err := checkKey(key); err != nil {
		return Claim{}, err
	}
	if err := checkTTL(ttl); err != nil {
		return Claim{}, err
	}
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	v, err := r.claim.Run(ctx, r.c, []string{claimRedisKey(key)}, max(ttl.Milliseconds(), 1)).Result()
	if errors.Is(err, redis.Nil) {
		return Claim{Claimed: true}, nil
	}
	if err != nil {
		return Claim{}, r.unavailable("claim", err)
	}
	s, _ := v.(string)
	switch {
	case s == markerInProgress:
		return Claim{InProgress: true}, nil
	case len(s) > 0 && s[:1] == markerDone:
		return Claim{Response: []byte(s[1:])}, nil
	}
	return Claim{}, r.unavailable("claim", fmt.Errorf("unexpected value %q under idempotency key %q", s, key))
}

// Complete implements Counter.
func (r *Redis) Complete(ctx context.Context, key string, response []byte, ttl time.Duration) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := checkTTL(ttl); err != nil {
		return err
	}
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	ok, err := r.c.SetXX(ctx, claimRedisKey(key), markerDone+string(response), max(ttl, time.Millisecond)).Result()
	if err != nil {
		return r.unavailable("complete", err)
	}
	if !ok {
		return fmt.Errorf("%w: %q", ErrNoClaim, key)
	}
	return nil
}

// Release implements Counter.
func (r *Redis) Release(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	ctx, cancel := r.ctx(ctx)
	defer cancel()
	if err := r.release.Run(ctx, r.c, []string{claimRedisKey(key)}).Err(); err != nil {
		return r.unavailable("release", err)
	}
	return nil
}

// SetRedisLogger routes the Redis client's own log lines (dial failures,
// pool trouble), which it prints to stderr by default, to log at warn
// level. The Redis client's logger is process-wide and read without
// locking, so only the first call (before any client exists) takes effect.
func SetRedisLogger(log *slog.Logger) {
	setLoggerOnce.Do(func() { redis.SetLogger(slogLogging{log}) })
}

var setLoggerOnce sync.Once

type slogLogging struct{ log *slog.Logger }

func (l slogLogging) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}
