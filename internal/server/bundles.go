package server

import (
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/engine"
	"github.com/aibos/kernel/internal/policy"
)

// Bundles holds the compiled bundle this node decides with. The store calls
// Apply synchronously when it applies a new version (or restores a
// snapshot), so once a revision is applied, decisions use the bundle as of
// that revision. Decisions read it with one atomic load. During a replay
// after a start it holds every old version in turn; the server answers no
// decision until the store has caught up (store.Store.CaughtUp), so none
// of them decides.
type Bundles struct {
	cur  atomic.Pointer[compiled]
	roll atomic.Pointer[canary] // the active rollout; nil if none
	log  *slog.Logger
	// limits are those versions are compiled with: the server's
	// BundleLimits, so that what this node accepts, it applies.
	limits policy.Limits
}

// compiled is one version as this node holds it: the bundle, or the error
// that kept it from compiling here (then every decision denies).
type compiled struct {
	version uint64
	bundle  *engine.Bundle
	err     error
}

// NewBundles returns a holder with no bundle: every decision denies until
// the first version is applied. It compiles versions within limits (zero
// fields: the defaults), which should be the server's BundleLimits.
func NewBundles(log *slog.Logger, limits policy.Limits) *Bundles {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Bundles{log: log, limits: limits}
	b.cur.Store(&compiled{})
	return b
}

// Apply compiles v and swaps it in. A version that does not compile on this
// node (it passed validation on the leader, so this means the nodes differ)
// is held as broken: decisions fail closed and say why.
func (b *Bundles) Apply(v *api.BundleVersion) {
	if v == nil {
		return
	}
	// Versions only grow along the log, so an older one here would be a
	// bug upstream; it must never replace a newer bundle (decisions would
	// go back in time).
	if cur := b.cur.Load(); v.Version < cur.version || (cur.version == v.Version && cur.bundle != nil) {
		if v.Version < cur.version {
			b.log.Error("ignored an older bundle version than the one this node decides with", "version", v.Version, "current", cur.version)
		}
		return
	}
	// The leader ran the bundle's tests before publishing; replicas only
	// compile.
	bundle, err := engine.Load(v.Files, engine.Options{Version: v.Version, Limits: b.limits})
	if err != nil {
		b.log.Error("bundle version does not compile on this node; decisions deny", "version", v.Version, "err", err)
		b.cur.Store(&compiled{version: v.Version, err: fmt.Errorf("bundle version %d does not compile on this node: %w", v.Version, err)})
		return
	}
	b.cur.Store(&compiled{version: v.Version, bundle: bundle})
	b.log.Info("bundle version applied", "version", v.Version, "policies", bundle.Stats().Policies)
}

// Version is the bundle version this node decides with (0: none yet).
func (b *Bundles) Version() uint64 { return b.cur.Load().version }

func (b *Bundles) load() *compiled { return b.cur.Load() }
