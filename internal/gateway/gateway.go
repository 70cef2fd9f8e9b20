// Package gateway enforces policy on every action an agent takes. An agent
// calls POST /v1/actions/{name}/invoke with its bearer token; the gateway
// authenticates it against the registry, finds the action in the catalog
// (the kernel's own orchestra plus the replicated ones), checks capability,
// kill switches and the input schema, asks the engine for a decision with the
// registered agent as the subject, and then holds the call for approval,
// meters it (rate limits and budgets), runs it on its backend under a
// timeout that a kill switch can cut short, redacts the result and records
// everything in the audit log before answering. See DESIGN.md.
package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/audit"
	"github.com/aibos/kernel/internal/gateway/limits"
)

// Store is what the gateway needs of the replicated state.
type Store interface {
	AgentByToken(token string) (api.Agent, bool)
	Agent(id string) (api.Agent, bool)
	Orchestras() []api.Orchestra
	ActiveKills() []api.KillSwitch
	IsLeader() bool
	Approvals() []api.Approval
	Approval(id string) (api.Approval, bool)
	CreateApproval(ctx context.Context, a api.Approval) (api.Approval, error)
	ConsumeApproval(ctx context.Context, id, agent, agentVersion, action, argsDigest, invocationID string, now time.Time) (api.Approval, error)
	SetKill(ctx context.Context, k api.KillSwitch) (api.KillSwitch, error)
}

// Recorder is the audit log as the gateway uses it.
type Recorder interface {
	Append(r *audit.Record)
	AppendSync(ctx context.Context, r *audit.Record) (uint64, error)
	Query(f audit.Filter) ([]audit.Record, error)
}

// Config configures a Gateway. The zero value of a field takes the default
// in parentheses.
type Config struct {
	Store Store
	// Decide makes one decision with the bundle the node holds. It must not
	// record the decision in the audit log: the gateway does, with the
	// invocation.
	Decide func(req *api.CheckRequest) api.Decision
	// Audit records decisions and invocations; required.
	Audit Recorder
	// Counter holds rate limits, budgets and idempotency keys; required.
	Counter limits.Counter
	Node    string
	Now     func() time.Time // (time.Now)
	Logger  *slog.Logger
	// Registerer receives the gateway's metrics; nil: none.
	Registerer prometheus.Registerer
	// Client calls http backends (a client without a global timeout: each
	// call has its action's).
	Client *http.Client
	// ApprovalTTL is how long an approval can be decided and redeemed
	// (15 min).
	ApprovalTTL time.Duration
	// MaxPendingApprovals bounds the approvals one agent can have waiting
	// (100).
	MaxPendingApprovals int
	// IdempotencyTTL is how long an idempotency key is remembered (24 h).
	IdempotencyTTL time.Duration
	// SoftThreshold is the share of a budget whose crossing emits a warning
	// (0.8).
	SoftThreshold float64
	// MaxResultBytes bounds a backend's answer (4 MiB).
	MaxResultBytes int64
	// DefaultTimeout bounds a backend call when the action sets none (30 s).
	DefaultTimeout time.Duration
	// MCP performs the actions of mcp orchestras (internal/mcp); nil: they
	// fail with backend_error.
	MCP MCPCaller
}

// Defaults of Config.
const (
	DefaultApprovalTTL         = 15 * time.Minute
	DefaultMaxPendingApprovals = 100
)

// ApprovalTTL is how long an approval of this gateway can be decided and
// redeemed; access requests' approvals live as long.
func (g *Gateway) ApprovalTTL() time.Duration { return g.cfg.ApprovalTTL }

// MaxPendingApprovals bounds the approvals one agent (or one subject's
// access requests) can have waiting.
func (g *Gateway) MaxPendingApprovals() int { return g.cfg.MaxPendingApprovals }

// Gateway enforces policy on agents' actions. Create it with New.
type Gateway struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics
	stats   *statsTable

	// catalog is rebuilt lazily after a catalog change (CatalogChanged).
	catMu    sync.Mutex
	catDirty atomic.Bool
	cat      atomic.Pointer[catalog]

	// kills are the active kill switches as of the last KillsChanged;
	// killMu makes its read of the store and its swap one step, so that of
	// two concurrent calls (the node's after New, the apply hook's) the
	// later read is the one kept.
	killMu sync.Mutex
	kills  atomic.Pointer[[]api.KillSwitch]

	flightMu sync.Mutex
	flights  map[string]*flight
}

// New checks cfg and builds a gateway.
func New(cfg Config) (*Gateway, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("gateway: no store")
	case cfg.Decide == nil:
		return nil, errors.New("gateway: no decision function")
	case cfg.Audit == nil:
		return nil, errors.New("gateway: no audit log")
	case cfg.Counter == nil:
		return nil, errors.New("gateway: no counter store")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Transport: &http.Transport{
			MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second,
		}}
	}
	if cfg.ApprovalTTL == 0 {
		cfg.ApprovalTTL = DefaultApprovalTTL
	}
	if cfg.MaxPendingApprovals == 0 {
		cfg.MaxPendingApprovals = DefaultMaxPendingApprovals
	}
	if cfg.IdempotencyTTL == 0 {
		cfg.IdempotencyTTL = 24 * time.Hour
	}
	if cfg.SoftThreshold == 0 {
		cfg.SoftThreshold = 0.8
	}
	if cfg.MaxResultBytes == 0 {
		cfg.MaxResultBytes = 4 << 20
	}
	if cfg.DefaultTimeout == 0 {
		cfg.DefaultTimeout = 30 * time.Second
	}
	g := &Gateway{cfg: cfg, log: cfg.Logger, now: cfg.Now, flights: make(map[string]*flight)}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	g.metrics = m
	g.stats = newStatsTable()
	g.catDirty.Store(true)
	g.KillsChanged()
	return g, nil
}

// CatalogChanged marks the catalog for a rebuild on the next invocation.
// Cheap: safe to call from the store's apply hook.
func (g *Gateway) CatalogChanged() { g.catDirty.Store(true) }

// Catalog is every action the gateway serves, the kernel's own first.
func (g *Gateway) Catalog() []api.CatalogAction {
	c := g.catalog()
	out := make([]api.CatalogAction, 0, len(c.order))
	for _, name := range c.order {
		e := c.actions[name]
		out = append(out, api.CatalogAction{ActionDef: e.def, Orchestra: e.orchestra, Backend: e.backend.Type})
	}
	return out
}

// NewID returns prefix followed by 24 random hex digits: the ids of
// invocations, approvals and kill switches.
func NewID(prefix string) string {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("gateway: crypto/rand failed: " + err.Error())
	}
	return prefix + hex.EncodeToString(b[:])
}
