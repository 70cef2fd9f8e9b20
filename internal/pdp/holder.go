// Package pdp is the kernel's policy decision point: the one place a
// decision is made and recorded, whatever entry point asks (POST
// /v1/check and its batches, AuthZEN, the agent gateway's invocations and
// with them MCP tool calls and sandboxed agents' host calls, access
// requests). It owns the compiled bundle a node decides with, a canary
// rollout's candidate, cohort selection, the shadow evaluation and its
// flip counters, the automatic-abort check, and the recording of each
// decision in the metrics, the decision log and the audit log. The SDK's
// local evaluator (client.LocalEvaluator) decides with the same Holder, so
// a local decision equals the node's during a canary too. See DESIGN.md.
package pdp

import (
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/engine"
	"github.com/aibos/kernel/internal/policy"
)

// Holder holds the compiled bundle a decider decides with, and the active
// rollout's candidate. A node's store calls Apply and ApplyRollout
// synchronously when it applies a new version or rollout (or restores a
// snapshot), so once a revision is applied, decisions use the bundle as of
// that revision; the SDK's local evaluator calls them as watch events
// arrive. Decisions read it with one atomic load each. During a node's
// replay after a start it holds every old version in turn; the node
// answers no decision until its store has caught up, so none of them
// decides.
type Holder struct {
	cur  atomic.Pointer[compiled]
	roll atomic.Pointer[canary] // the active rollout; nil if none
	log  *slog.Logger
	// limits are those versions are compiled with: the server's
	// BundleLimits, so that what a node accepts, it applies.
	limits policy.Limits
	where  string
}

// compiled is one version as the holder has it: the bundle, or the error
// that kept it from compiling here (then every decision denies).
type compiled struct {
	version  uint64
	revision uint64 // that committed the version
	bundle   *engine.Bundle
	err      error
}

// Options tune a Holder.
type Options struct {
	Logger *slog.Logger
	// Limits versions are compiled with (zero fields: the defaults); a
	// node's should be its server's BundleLimits.
	Limits policy.Limits
	// Where names the holder in denials of a version that does not compile
	// here ("on this node", the default; "in this evaluator").
	Where string
}

// NewHolder returns a holder with no bundle: every decision denies until
// the first version is applied.
func NewHolder(o Options) *Holder {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Where == "" {
		o.Where = "on this node"
	}
	h := &Holder{log: o.Logger, limits: o.Limits, where: o.Where}
	h.cur.Store(&compiled{})
	return h
}

// Apply compiles v and swaps it in. A version that does not compile here
// (it passed validation on the leader, so this means the two differ) is
// held as broken: decisions fail closed and say why.
func (h *Holder) Apply(v *api.BundleVersion) {
	if v == nil {
		return
	}
	// Versions only grow along the log, so an older one here would be a
	// bug upstream; it must never replace a newer bundle (decisions would
	// go back in time).
	if cur := h.cur.Load(); v.Version < cur.version || (cur.version == v.Version && cur.bundle != nil) {
		if v.Version < cur.version {
			h.log.Error("ignored an older bundle version than the one decisions are made with", "version", v.Version, "current", cur.version)
		}
		return
	}
	// The leader ran the bundle's tests before publishing; replicas only
	// compile.
	bundle, err := engine.Load(v.Files, engine.Options{Version: v.Version, Limits: h.limits})
	if err != nil {
		h.log.Error("bundle version does not compile "+h.where+"; decisions deny", "version", v.Version, "err", err)
		h.cur.Store(&compiled{version: v.Version, revision: v.Revision,
			err: fmt.Errorf("bundle version %d does not compile %s: %w", v.Version, h.where, err)})
		return
	}
	h.cur.Store(&compiled{version: v.Version, revision: v.Revision, bundle: bundle})
	h.log.Info("bundle version applied", "version", v.Version, "policies", bundle.Stats().Policies)
}

// Version is the bundle version decisions are made with (0: none yet).
func (h *Holder) Version() uint64 { return h.cur.Load().version }

// Current is the version decisions are made with, the revision that
// committed it, and its compiled bundle (nil if none, or if it does not
// compile here).
func (h *Holder) Current() (version, revision uint64, b *engine.Bundle) {
	c := h.cur.Load()
	return c.version, c.revision, c.bundle
}

// Decide decides req with the version held, and during an active rollout
// with its candidate too: the candidate's answer serves the cohort, the
// current one everyone else, and the shadow counters count how the two
// differ. It fails closed: with no bundle, or one that does not compile
// here, it denies and says why. ents are the stored entities whose
// properties win over the request's. The decision shares reasons and
// obligations with the compiled bundle: read them, do not modify them.
func (h *Holder) Decide(req *api.CheckRequest, ents engine.EntityLookup, now time.Time) api.Decision {
	c := h.cur.Load()
	switch cn := h.roll.Load(); {
	case cn != nil && c.bundle != nil:
		return cn.decide(c.bundle, req, ents, now)
	case c.bundle != nil:
		return c.bundle.Decide(req, ents, now)
	case c.err != nil:
		return api.Decision{Decision: api.Deny, Version: c.version,
			Reasons: []api.Reason{{Effect: api.Deny, Message: "the current bundle does not compile " + h.where}},
			Errors:  []string{c.err.Error()}}
	default:
		return api.Decision{Decision: api.Deny,
			Reasons: []api.Reason{{Effect: api.Deny, Message: "no policy bundle has been published"}}}
	}
}
