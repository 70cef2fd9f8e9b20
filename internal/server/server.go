// Package server owns the kernel's HTTP API: its own /v1 endpoints, the
// OpenID AuthZEN 1.0 endpoints, health, readiness and metrics. It decodes
// requests, enriches and decides them through the engine against the bundle
// this node has applied, and forwards writes that reach a follower to the
// leader. It talks to the replicated state only through the Store interface.
package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aibos/kernel/internal/audit"
	"github.com/aibos/kernel/internal/auth"
	"github.com/aibos/kernel/internal/gateway"
	"github.com/aibos/kernel/internal/mcp"
	"github.com/aibos/kernel/internal/pdp"
	"github.com/aibos/kernel/internal/policy"
	"github.com/aibos/kernel/internal/simulate"
	"github.com/aibos/kernel/internal/store"
	"github.com/aibos/kernel/internal/watch"
)

// Store is what the server needs of the replicated state: the union of
// the small interfaces each group of routes declares next to its
// handlers.
type Store interface {
	PolicyStore
	EntityStore
	ClusterStore
	RolloutStore
	AgentStore
	GatewayStore
	SystemStore
	TokenStore
	RegionStore
}

var _ Store = (*store.Store)(nil)

// Config configures a Server.
type Config struct {
	Store Store
	// Point is the decision point every decision of the API and the
	// gateway is made and recorded by.
	Point  *pdp.Point
	Region string
	Logger *slog.Logger
	// Registerer receives the server's metrics; Gatherer serves /metrics.
	// Both nil: no metrics.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// Now is the clock of decisions and writes; nil means time.Now.
	Now func() time.Time
	// MinRevisionWait bounds how long a request with min_revision waits for
	// this node to apply it. Zero means 5 s.
	MinRevisionWait time.Duration
	// WriteTimeout bounds a write (commit through Raft). Zero means 10 s.
	WriteTimeout time.Duration
	// MaxBodyBytes bounds request bodies. Zero means 64 MiB for bundles and
	// 4 MiB for everything else.
	MaxBodyBytes int64
	// Watch serves GET /v1/watch; nil: the endpoint answers 503.
	Watch *watch.Hub
	// NodeID names this node in rollout counters and automatic aborts.
	NodeID string
	// Decisions is the decision log that POST /v1/policies/simulate
	// replays; nil: the endpoint answers 503.
	Decisions simulate.Source
	// Audit is the node's audit log: the gateway records invocations in
	// it, operators' acts are recorded in it, and GET /v1/audit serves it
	// (the decision point records decisions in it). nil: no audit log and
	// no gateway.
	Audit *audit.Log
	// Gateway is the agent gateway the invoke, catalog and stats routes
	// and /mcp serve; nil: they answer 503 no_gateway (and /mcp 404).
	Gateway *gateway.Gateway
	// System holds the system bundle that authorizes the API; nil: the
	// embedded default only (a node passes the one its store applies
	// published replacements to).
	System *SystemPolicy
	// NodeToken is this node's own credential for the requests it makes
	// of the leader (a rollout's automatic abort from a follower); empty:
	// such requests go without one and the leader refuses them.
	NodeToken string
	// OIDC, if its Issuer is set, accepts that issuer's ID tokens as
	// operator credentials (auth.OIDCConfig).
	OIDC auth.OIDCConfig
	// AuthFailureLimit failed authentications from one source address in
	// AuthFailureWindow make it wait for the window's end (429). Zero
	// means 20 in 1 min.
	AuthFailureLimit  int
	AuthFailureWindow time.Duration
	// PeerTLS, if set, is the TLS client configuration of this node's calls
	// to other nodes' HTTP APIs (forwarding to the leader, automatic
	// aborts), which then use https; nil: plain http.
	PeerTLS *tls.Config
	// IdentifyNode, if set, names the node behind a request's TLS client
	// certificate (false: not a node of this cluster). With it, forwarding
	// markers are trusted only from nodes and a join needs the joining
	// node's own certificate (see nodes.go). nil: nodes are not
	// authenticated (a plaintext cluster).
	IdentifyNode func(*tls.ConnectionState) (string, bool)
	// BundleLimits bound the policies and rules of a bundle published,
	// staged or simulated here; a zero field means its default
	// (policy.Limits). Bundles should be made with the same limits.
	BundleLimits policy.Limits
	// MCP, with the gateway, runs mcp orchestras and serves /mcp; nil: mcp
	// orchestras cannot be put and /mcp answers 404.
	MCP *mcp.Manager
	// Regions is the multi-region runtime; nil: a single region (the
	// region routes answer 404 saying how to start one).
	Regions Regions
}

// Server serves the kernel's HTTP API. Create it with New.
type Server struct {
	cfg     Config
	store   Store
	pdp     *pdp.Point
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics
	client  *http.Client
	mux     *routeMux
	gw      *gateway.Gateway

	table    []route
	verifier *auth.Verifier
	system   *SystemPolicy
	failures *failureLimiter
	ids      searchIDs
	mcp      *mcp.Endpoint
}

// New validates cfg, applies defaults and builds the routes.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Point == nil {
		return nil, errors.New("server: Store and Point are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MinRevisionWait == 0 {
		cfg.MinRevisionWait = 5 * time.Second
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 4 << 20
	}
	if cfg.AuthFailureLimit == 0 {
		cfg.AuthFailureLimit = 20
	}
	if cfg.AuthFailureWindow == 0 {
		cfg.AuthFailureWindow = time.Minute
	}
	if cfg.BundleLimits.Policies < 0 || cfg.BundleLimits.Rules < 0 {
		return nil, fmt.Errorf("server: bundle limits of %d policies and %d rules: give positive numbers, or 0 for the defaults",
			cfg.BundleLimits.Policies, cfg.BundleLimits.Rules)
	}
	s := &Server{
		cfg:    cfg,
		store:  cfg.Store,
		pdp:    cfg.Point,
		log:    cfg.Logger,
		now:    cfg.Now,
		client: newPeerClient(cfg.PeerTLS, cfg.WriteTimeout+5*time.Second),
		mux:    &routeMux{ServeMux: http.NewServeMux()},
	}
	s.failures = newFailureLimiter(cfg.AuthFailureLimit, cfg.AuthFailureWindow)
	var err error
	if s.system = cfg.System; s.system == nil {
		if s.system, err = NewSystemPolicy(cfg.Logger); err != nil {
			return nil, err
		}
	}
	if s.verifier, err = auth.NewVerifier(auth.VerifierConfig{Tokens: cfg.Store, Agents: cfg.Store, Now: cfg.Now, OIDC: cfg.OIDC}); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	if s.gw = cfg.Gateway; s.gw != nil && cfg.MCP != nil && cfg.Audit != nil {
		ecfg := mcp.EndpointConfig{Gateway: s.gw, Audit: cfg.Audit, Node: cfg.NodeID, Now: cfg.Now}
		if cfg.OIDC.Enabled() {
			// The issuer operators sign in with: one verifier, one configuration.
			ecfg.AccessTokens, ecfg.Issuer = s.verifier, cfg.OIDC.Issuer
		}
		s.mcp = cfg.MCP.Endpoint(ecfg)
	}
	s.routes()
	return s, nil
}

// Gateway is the server's agent gateway; nil if it runs without one.
func (s *Server) Gateway() *gateway.Gateway { return s.gw }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("handler panic", "method", r.Method, "path", r.URL.Path, "panic", v)
			writeError(w, http.StatusInternalServerError, "internal", "internal error; the node logged it")
		}
	}()
	if err := s.store.CaughtUp(); err != nil && !servedBeforeCaughtUp(r) {
		writeNotReady(w, err)
		return
	}
	if r.URL.RawQuery != "" {
		if err := checkMinRevisionParam(r); err != nil {
			badRequest(w, err)
			return
		}
	}
	s.mux.ServeHTTP(w, s.admitNode(r))
}
