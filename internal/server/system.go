package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/auth"
	"github.com/aibos/kernel/internal/engine"
	"github.com/aibos/kernel/internal/store"
)

// SystemStore is what the system bundle routes need.
type SystemStore interface {
	PublishSystem(ctx context.Context, files []api.File, message, author string, now time.Time) (api.VersionInfo, error)
	System() (api.BundleVersion, bool)
}

// SystemPolicy holds the compiled system bundle that authorizes the API:
// the embedded default (internal/auth) until an admin publishes a
// replacement, which the store hands to Apply like a bundle version. It
// also remembers the allows of target-less routes per accessor and action,
// forgotten whenever the bundle changes.
type SystemPolicy struct {
	log     *slog.Logger
	def     *engine.Bundle // the embedded default
	cur     atomic.Pointer[engine.Bundle]
	version atomic.Uint64 // 0: the embedded default

	// permits is copied on write: the decision path reads it with one
	// atomic load and no lock, which two cores would contend on.
	mu      sync.Mutex // serializes writers of permits and cur
	permits atomic.Pointer[map[permitKey]bool]
}

// maxPermitCache bounds the remembered decisions (accessors × actions;
// each is copied on insert, so the bound keeps inserts cheap). Past it,
// decisions are made each time, at a microsecond each.
const maxPermitCache = 1 << 12

type permitKey struct{ accessor, action string }

// NewSystemPolicy compiles the embedded system bundle and runs its tests:
// a broken one keeps the node from starting rather than authorize wrongly.
func NewSystemPolicy(log *slog.Logger) (*SystemPolicy, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b, err := engine.Prepare(auth.SystemBundle(), engine.Options{}, time.Now())
	if err != nil {
		return nil, fmt.Errorf("server: the embedded system bundle: %w", err)
	}
	sp := &SystemPolicy{log: log, def: b}
	sp.cur.Store(b)
	sp.permits.Store(&map[permitKey]bool{})
	return sp, nil
}

// Apply swaps in a published system bundle; nil (a restored state
// without one) is the embedded default. One that does not compile on this
// node (the leader compiled and tested it) is logged and the current one
// kept: failing closed here would lock every operator out, the admin who
// could fix it too.
func (sp *SystemPolicy) Apply(v *api.BundleVersion) {
	var ver uint64
	b := sp.def
	if v != nil {
		ver = v.Version
	}
	if ver == sp.version.Load() {
		return
	}
	if v != nil {
		var err error
		if b, err = engine.Load(v.Files, engine.Options{Version: v.Version}); err != nil {
			sp.log.Error("system bundle does not compile on this node; the previous one stays", "version", v.Version, "err", err)
			return
		}
	}
	sp.mu.Lock()
	sp.cur.Store(b)
	sp.version.Store(ver)
	sp.permits.Store(&map[permitKey]bool{})
	sp.mu.Unlock()
	sp.log.Info("system bundle applied", "version", ver)
}

// Version is the published system bundle's version; 0 for the default.
func (sp *SystemPolicy) Version() uint64 { return sp.version.Load() }

func (sp *SystemPolicy) bundle() *engine.Bundle { return sp.cur.Load() }

// permitted reports a remembered allow.
func (sp *SystemPolicy) permitted(k permitKey) bool {
	return (*sp.permits.Load())[k]
}

// remember keeps an allow decided with bundle b, unless b was replaced
// meanwhile.
func (sp *SystemPolicy) remember(k permitKey, b *engine.Bundle) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	old := *sp.permits.Load()
	if sp.cur.Load() != b || len(old) >= maxPermitCache || old[k] {
		return
	}
	m := make(map[permitKey]bool, len(old)+1)
	for key, v := range old {
		m[key] = v
	}
	m[k] = true
	sp.permits.Store(&m)
}

// handlePublishSystem replaces the system bundle: validated and tested
// like any bundle (a broken one is refused, 400), then replicated.
func (s *Server) handlePublishSystem(w http.ResponseWriter, r *http.Request) {
	files, ok := readBundle(w, r)
	if !ok {
		return
	}
	if _, err := engine.PrepareContext(r.Context(), files, engine.Options{}, s.now()); err != nil {
		writeBundleError(w, err)
		return
	}
	author, ok := s.attribution(w, r, param(r, "author", headerAuthor), "author")
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.WriteTimeout)
	defer cancel()
	vi, err := s.store.PublishSystem(ctx, files, param(r, "message", headerMessage), author, s.now())
	if err != nil {
		s.writeStoreError(w, err)
		return
	}
	s.log.Info("system bundle published", "version", vi.Version, "revision", vi.Revision, "author", vi.Author)
	writeJSON(w, http.StatusOK, api.PublishResponse{Version: vi.Version, Revision: vi.Revision, Hash: vi.Hash})
}

// handleGetSystem answers the system bundle in force: the published one,
// or the embedded default as version 0.
func (s *Server) handleGetSystem(w http.ResponseWriter, r *http.Request) {
	if v, ok := s.store.System(); ok {
		writeJSON(w, http.StatusOK, v)
		return
	}
	files := auth.SystemBundle()
	writeJSON(w, http.StatusOK, api.BundleVersion{VersionInfo: api.VersionInfo{Hash: store.HashFiles(files), Message: "the embedded default"}, Files: files})
}
