package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/engine"
	"github.com/aibos/kernel/internal/pdp"
)

// EntityLookup gives the stored properties of an entity, as the kernel's
// entity store would. The returned map is only read.
type EntityLookup interface {
	Entity(typ, id string) (map[string]any, bool)
}

// LocalOptions tune a LocalEvaluator.
type LocalOptions struct {
	// MaxStale is how long the evaluator keeps deciding without hearing
	// from the cluster (30 s). Past it every decision denies, saying how
	// stale the evaluator is. Keep it above the watch's IdleTimeout.
	MaxStale time.Duration
	// Entities supplies stored subject and resource properties. The kernel
	// merges its stored entities into every request; a local evaluator
	// cannot see them, so without a lookup a request carries only the
	// properties its caller gave, and a policy that relies on stored
	// properties (roles, an agent's tenant) decides differently than the
	// kernel would. Nil: no stored entities.
	Entities EntityLookup
	// Now is the clock of decisions and of staleness (time.Now).
	Now func() time.Time
	// Watch tunes the watch the evaluator follows; Content and FromCurrent
	// are set by the evaluator.
	Watch WatchOptions
}

// ErrStale is in the Errors of a decision denied because the evaluator has
// not heard from the cluster for longer than MaxStale.
var ErrStale = errors.New("local evaluator is stale")

// LocalEvaluator decides in-process with the bundle version the cluster
// publishes: it follows the watch stream with content, compiles each
// version once (of several that arrive together, only the newest), and
// swaps it in atomically, so a decision is made wholly by one version.
// During a canary rollout it decides as the nodes do: the watch brings the
// rollout and its candidate, and the evaluator serves the candidate's
// answer to the rollout's cohort (the same holder and cohort selection as
// the nodes, internal/pdp). It is safe for concurrent use.
type LocalEvaluator struct {
	opts LocalOptions
	h    *pdp.Holder
	// heard is when the last message came from the cluster (UnixNano of
	// opts.Now), and revision the highest revision it reported.
	heard    atomic.Int64
	revision atomic.Uint64

	cancel context.CancelFunc
	done   chan struct{}

	errMu   sync.Mutex
	lastErr error // guarded by errMu
}

// NewLocalEvaluator starts following the cluster c talks to and returns
// once it holds the version that was current when it connected (or knows
// none was published). It stops when ctx ends or Close is called.
func NewLocalEvaluator(ctx context.Context, c *Client, opts LocalOptions) (*LocalEvaluator, error) {
	if opts.MaxStale <= 0 {
		opts.MaxStale = 30 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	wo := opts.Watch
	wo.Content, wo.FromCurrent = true, true
	user := wo.OnError
	e := &LocalEvaluator{opts: opts, h: pdp.NewHolder(pdp.Options{Where: "in this evaluator"}), done: make(chan struct{})}
	wo.OnError = func(err error) {
		e.errMu.Lock()
		e.lastErr = err
		e.errMu.Unlock()
		if user != nil {
			user(err)
		}
	}
	wctx, cancel := context.WithCancel(ctx)
	e.cancel = cancel
	events, err := c.Watch(wctx, 0, wo)
	if err != nil {
		cancel()
		return nil, err
	}
	// The first message is a heartbeat with the current version; wait for
	// that version (or none).
	var target uint64
	for known := false; !known || e.Version() < target; {
		select {
		case ev, ok := <-events:
			if !ok {
				cancel()
				return nil, fmt.Errorf("client: local evaluator: watch ended before the first version: %w", e.LastError())
			}
			e.apply(ev)
			if ev.Type == api.WatchHeartbeat && !known {
				target, known = ev.Version, true
			}
		case <-ctx.Done():
			cancel()
			return nil, ctx.Err()
		}
	}
	go func() {
		defer close(e.done)
		// Of the versions already waiting (a burst of publishes, a
		// catch-up after a reconnect) only the newest is compiled; a
		// rollout event applies after the versions before it.
		var pending *api.WatchEvent
		take := func(ev api.WatchEvent) {
			switch {
			case ev.Type == api.WatchBundle:
				e.touch(ev)
				pending = &ev
				return
			case ev.Type == api.WatchRollout && pending != nil:
				e.apply(*pending)
				pending = nil
			}
			e.apply(ev)
		}
		for ev := range events {
			take(ev)
		drain:
			for {
				select {
				case more, ok := <-events:
					if !ok {
						break drain
					}
					take(more)
				default:
					break drain
				}
			}
			if pending != nil {
				e.apply(*pending)
				pending = nil
			}
		}
	}()
	return e, nil
}

// apply takes one event of the watch.
func (e *LocalEvaluator) apply(ev api.WatchEvent) {
	e.touch(ev)
	switch ev.Type {
	case api.WatchBundle:
		e.h.Apply(&api.BundleVersion{VersionInfo: ev.VersionInfo(), Files: ev.Files})
	case api.WatchRollout:
		var cand *api.BundleVersion
		if r := ev.Rollout; r != nil && len(ev.Files) > 0 {
			cand = &api.BundleVersion{VersionInfo: api.VersionInfo{Version: r.Candidate, Hash: r.CandidateHash}, Files: ev.Files}
		}
		// Without its candidate (a node that does not send it) the rollout
		// is not served here: the current version decides for everyone.
		e.h.ApplyRollout(ev.Rollout, cand)
	}
}

// touch records that the cluster was heard from.
func (e *LocalEvaluator) touch(ev api.WatchEvent) {
	e.heard.Store(e.opts.Now().UnixNano())
	for {
		r := e.revision.Load()
		if ev.Revision <= r || e.revision.CompareAndSwap(r, ev.Revision) {
			break
		}
	}
}

// Version is the bundle version the evaluator decides with (0: none).
func (e *LocalEvaluator) Version() uint64 { return e.h.Version() }

// Rollout is the id of the canary rollout the evaluator serves (its
// candidate decides for the rollout's cohort); false if none.
func (e *LocalEvaluator) Rollout() (uint64, bool) { return e.h.Rollout() }

// Staleness is how long ago the evaluator last heard from the cluster.
func (e *LocalEvaluator) Staleness() time.Duration {
	return e.opts.Now().Sub(time.Unix(0, e.heard.Load()))
}

// LastError is the last error of the watch the evaluator follows (nil if
// none): why it may be stale.
func (e *LocalEvaluator) LastError() error {
	e.errMu.Lock()
	defer e.errMu.Unlock()
	return e.lastErr
}

// Decide makes one decision in-process with the version the evaluator
// holds; Version and Revision of the decision say which. It fails closed:
// past MaxStale, or with a version that does not compile, it denies and
// says why. The decision is the caller's to modify.
func (e *LocalEvaluator) Decide(req *api.CheckRequest) api.Decision {
	version, revision, _ := e.h.Current()
	if version == 0 {
		revision = e.revision.Load()
	}
	now := e.opts.Now()
	if stale := now.Sub(time.Unix(0, e.heard.Load())); stale > e.opts.MaxStale {
		msg := fmt.Sprintf("%v: nothing heard from the kernel for %s (max %s)", ErrStale, stale.Round(time.Millisecond), e.opts.MaxStale)
		if err := e.LastError(); err != nil {
			msg += "; last error: " + err.Error()
		}
		return api.Decision{Decision: api.Deny, Version: version, Revision: revision,
			Reasons: []api.Reason{{Effect: api.Deny, Message: "the local evaluator is stale"}},
			Errors:  []string{msg}}
	}
	var ents engine.EntityLookup = engine.NoEntities{}
	if e.opts.Entities != nil {
		ents = e.opts.Entities
	}
	d := e.h.Decide(req, ents, now)
	d.Revision = revision
	return own(d)
}

// own copies what a decision may share with the compiled bundle (the
// engine hands out prebuilt reasons and obligations), so the caller may
// modify it.
func own(d api.Decision) api.Decision {
	d.Reasons = append([]api.Reason{}, d.Reasons...)
	if d.Obligations != nil {
		o := *d.Obligations
		if o.RateLimit != nil {
			rl := *o.RateLimit
			o.RateLimit = &rl
		}
		if o.Budget != nil {
			b := *o.Budget
			o.Budget = &b
		}
		o.Redact = append([]string(nil), o.Redact...)
		o.Approvers = append([]string(nil), o.Approvers...)
		d.Obligations = &o
	}
	if d.Errors != nil {
		d.Errors = append([]string(nil), d.Errors...)
	}
	if d.Explain != nil {
		ex := make([]api.LayerOutcome, len(d.Explain))
		for i, l := range d.Explain {
			l.Rules = append([]api.Reason(nil), l.Rules...)
			ex[i] = l
		}
		d.Explain = ex
	}
	return d
}

// Close stops following the cluster and waits for it to stop. Decisions
// keep using the last version until MaxStale passes.
func (e *LocalEvaluator) Close() error {
	e.cancel()
	<-e.done
	return nil
}
