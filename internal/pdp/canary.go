package pdp

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/engine"
)

// canary is the active rollout as this node holds it: the replicated
// rollout, its candidate compiled, and this node's shadow counters. It is
// replaced (never modified) when the rollout changes; the counters belong
// to one rollout id.
//
// While a rollout is active every decision evaluates both bundles — the
// served one and the other — so a decision costs about twice as much. That
// buys flip counts over all traffic (cohort and the rest) rather than a
// sample, and rollouts are short.
type canary struct {
	r         *api.Rollout
	cand      *compiled
	threshold uint64 // of the percent cohort: bucket < threshold (buckets of 0.01 %)
	stats     *rolloutStats
}

// rolloutStats are a node's shadow counters; the hot path touches atomics
// only, and the mutex only when a decision flips.
type rolloutStats struct {
	samples, flips, errors, cohort atomic.Uint64

	mu     sync.Mutex
	byRule map[flipKey]uint64 // guarded by mu
}

type flipKey struct {
	rule, action string
	from, to     api.Effect
}

// maxFlipKeys bounds the distinct (rule, action, change) counters of a
// rollout; past it, flips of new keys are counted under action "(other)".
const maxFlipKeys = 10_000

// ApplyRollout makes r (with its candidate version) the rollout decisions
// are made with, or ends it when r is nil or no longer active. A node's
// store calls it from its apply hook, like Apply.
func (h *Holder) ApplyRollout(r *api.Rollout, cand *api.BundleVersion) {
	if r == nil || r.State != api.RolloutActive || cand == nil {
		if old := h.roll.Swap(nil); old != nil {
			h.log.Info("canary rollout ended", "id", old.r.ID, "candidate", old.r.Candidate)
		}
		return
	}
	if old := h.roll.Load(); old != nil && old.r.ID == r.ID {
		return
	}
	cn := &canary{r: r, stats: &rolloutStats{byRule: map[flipKey]uint64{}},
		threshold: uint64(math.Round(r.Cohort.Percent * 100))}
	bundle, err := engine.Load(cand.Files, engine.Options{Version: cand.Version, Limits: h.limits})
	if err != nil {
		// Every shadow evaluation counts as an error, so the error rate
		// aborts the rollout if asked to; the cohort is served the current
		// bundle meanwhile.
		h.log.Error("canary candidate does not compile "+h.where+"; serving the current bundle", "version", cand.Version, "err", err)
		cn.cand = &compiled{version: cand.Version, err: err}
	} else {
		cn.cand = &compiled{version: cand.Version, bundle: bundle}
	}
	h.roll.Store(cn)
	h.log.Info("canary rollout active", "id", r.ID, "candidate", cand.Version, "percent", r.Cohort.Percent, "selector", len(r.Cohort.Selector) > 0)
}

// Rollout is the id of the active rollout; false if none.
func (h *Holder) Rollout() (uint64, bool) {
	if cn := h.roll.Load(); cn != nil {
		return cn.r.ID, true
	}
	return 0, false
}

// Counters is a copy of the shadow counters of rollout id, flips sorted by
// count; false if id is not the active rollout here.
func (h *Holder) Counters(id uint64) (*api.RolloutCounters, bool) {
	cn := h.roll.Load()
	if cn == nil || cn.r.ID != id {
		return nil, false
	}
	return cn.counters(), true
}

// Exceeded says whether the active rollout's shadow counters break its
// abort policy: the rollout's id and how; false if there is no active
// rollout or it keeps within its policy.
func (h *Holder) Exceeded() (id uint64, reason string, ok bool) {
	cn := h.roll.Load()
	if cn == nil {
		return 0, "", false
	}
	reason, ok = cn.exceeded()
	return cn.r.ID, reason, ok
}

// decide decides req with both bundles, serves the candidate's answer to
// the cohort and the current one to everyone else, and counts how the two
// differ.
func (cn *canary) decide(cur *engine.Bundle, req *api.CheckRequest, ents engine.EntityLookup, now time.Time) api.Decision {
	d := cur.Decide(req, ents, now)
	st := cn.stats
	st.samples.Add(1)
	cb := cn.cand.bundle
	if cb == nil {
		st.errors.Add(1)
		return d
	}
	cd := cb.Decide(req, ents, now)
	if len(cd.Errors) > 0 {
		st.errors.Add(1)
	}
	if cd.Decision != d.Decision {
		st.flip(flipKey{rule: engine.DeterminingRule(cd.Reasons), action: req.Action.Name, from: d.Decision, to: cd.Decision})
	}
	if cn.inCohort(req, ents) {
		st.cohort.Add(1)
		return cd
	}
	return d
}

func (st *rolloutStats) flip(k flipKey) {
	st.flips.Add(1)
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, seen := st.byRule[k]; !seen {
		if len(st.byRule) >= maxFlipKeys {
			k.action = "(other)"
		} else {
			// The request's strings may share memory with its body: keep a
			// copy, not the body.
			k.action = strings.Clone(k.action)
		}
	}
	st.byRule[k]++
}

// exceeded says whether the counters break the abort policy, and how.
func (cn *canary) exceeded() (string, bool) {
	p := cn.r.Abort
	n := cn.stats.samples.Load()
	if n == 0 || n < p.MinSamples {
		return "", false
	}
	for _, c := range []struct {
		name  string
		count uint64
		max   *float64
	}{{"flip", cn.stats.flips.Load(), p.MaxFlipRate}, {"error", cn.stats.errors.Load(), p.MaxErrorRate}} {
		if c.max == nil {
			continue
		}
		if rate := float64(c.count) / float64(n); rate > *c.max {
			return fmt.Sprintf("%s rate %.4f (%d of %d shadow decisions) above max_%s_rate %g", c.name, rate, c.count, n, c.name, *c.max), true
		}
	}
	return "", false
}

// counters is a copy of the shadow counters, flips sorted by count.
func (cn *canary) counters() *api.RolloutCounters {
	st := cn.stats
	c := &api.RolloutCounters{Samples: st.samples.Load(), Flips: st.flips.Load(), Errors: st.errors.Load(),
		Cohort: st.cohort.Load(), ByRule: []api.RolloutFlips{}}
	st.mu.Lock()
	for k, n := range st.byRule {
		c.ByRule = append(c.ByRule, api.RolloutFlips{Rule: k.rule, Action: k.action, From: k.from, To: k.to, Count: n})
	}
	st.mu.Unlock()
	slices.SortFunc(c.ByRule, func(a, b api.RolloutFlips) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Rule, b.Rule), cmp.Compare(a.Action, b.Action),
			cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To))
	})
	return c
}

// inCohort says whether the candidate serves req's subject. With a
// selector: every selector key matches the subject's property, the stored
// value winning over the caller's (as in decisions); a list property
// matches if it holds the value. Otherwise: a stable hash of the rollout id
// and the subject id, so a subject stays in or out for the whole rollout
// and every node agrees, and each rollout draws a fresh cohort.
func (cn *canary) inCohort(req *api.CheckRequest, ents engine.EntityLookup) bool {
	sub := &req.Subject
	if sel := cn.r.Cohort.Selector; len(sel) > 0 {
		stored, _ := ents.Entity(sub.Type, sub.ID)
		for k, want := range sel {
			v, ok := stored[k]
			if !ok {
				v, ok = sub.Properties[k]
			}
			if !ok || !propertyMatches(v, want) {
				return false
			}
		}
		return true
	}
	if sub.ID == "" {
		return false
	}
	return CohortBucket(cn.r.ID, sub.ID) < cn.threshold
}

// CohortBucket is the bucket (0–9999) of a subject in rollout id: FNV-1a 64
// of "id/subject" modulo 10,000. A percent cohort p holds the buckets below
// p·100.
func CohortBucket(rolloutID uint64, subject string) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	var num [20]byte
	for _, c := range strconv.AppendUint(num[:0], rolloutID, 10) {
		h = (h ^ uint64(c)) * prime
	}
	h = (h ^ '/') * prime
	for i := 0; i < len(subject); i++ {
		h = (h ^ uint64(subject[i])) * prime
	}
	return h % 10000
}

func propertyMatches(v, want any) bool {
	if list, ok := v.([]any); ok {
		return slices.ContainsFunc(list, func(e any) bool { return scalarEqual(e, want) })
	}
	return scalarEqual(v, want)
}

// scalarEqual compares JSON scalars; numbers by value whatever their Go
// type.
func scalarEqual(a, b any) bool {
	if fa, ok := number(a); ok {
		fb, ok := number(b)
		return ok && fa == fb
	}
	switch a := a.(type) {
	case string:
		b, ok := b.(string)
		return ok && a == b
	case bool:
		b, ok := b.(bool)
		return ok && a == b
	}
	return false
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}
