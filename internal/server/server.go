// Package server owns the kernel's HTTP API: its own /v1 endpoints, the
// OpenID AuthZEN 1.0 endpoints, health, readiness and metrics. It decodes
// requests, enriches and decides them through the engine against the bundle
// this node has applied, and forwards writes that reach a follower to the
// leader. It talks to the replicated state only through the Store interface.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/audit"
	"github.com/aibos/kernel/internal/gateway"
	"github.com/aibos/kernel/internal/gateway/limits"
	"github.com/aibos/kernel/internal/simulate"
	"github.com/aibos/kernel/internal/store"
	"github.com/aibos/kernel/internal/watch"
)

// Store is what the server needs of the replicated state.
type Store interface {
	Publish(ctx context.Context, files []api.File, message, author string, now time.Time) (api.VersionInfo, error)
	Rollback(ctx context.Context, to uint64, message, author string, now time.Time) (api.VersionInfo, error)
	PutEntities(ctx context.Context, ents []api.Entity) (uint64, error)
	DeleteEntity(ctx context.Context, typ, id string) (uint64, error)
	Entity(typ, id string) (map[string]any, bool)
	Current() (api.BundleVersion, bool)
	Version(v uint64) (api.BundleVersion, bool)
	Versions() []api.VersionInfo
	AppliedRevision() uint64
	WaitForRevision(ctx context.Context, rev uint64) error
	IsLeader() bool
	LeaderHTTP() string
	LeaderID() string
	Nodes() ([]api.Node, error)
	Join(ctx context.Context, nodeID, raftAddr, httpAddr string, voter bool) error
	Remove(ctx context.Context, nodeID string) error
	Ready() error
	CaughtUp() error
	StartRollout(ctx context.Context, req api.RolloutRequest, by string, now time.Time) (api.Rollout, error)
	AbortRollout(ctx context.Context, id uint64, reason, by string, now time.Time) (api.Rollout, error)
	PromoteRollout(ctx context.Context, id uint64, reason, by string, now time.Time) (api.Rollout, error)
	Rollout() (*api.Rollout, bool)
	RegisterAgent(ctx context.Context, m api.AgentManifest, tokenHash string, now time.Time) (api.Agent, bool, error)
	UpdateAgent(ctx context.Context, id string, u api.AgentUpdate, now time.Time) (api.Agent, error)
	RetireAgent(ctx context.Context, id string, now time.Time) (api.Agent, error)
	SetAgentCredential(ctx context.Context, id, tokenHash string, now time.Time) (api.Agent, error)
	Agent(id string) (api.Agent, bool)
	Agents() []api.Agent
	AgentByToken(token string) (api.Agent, bool)
	PutOrchestra(ctx context.Context, o api.Orchestra, now time.Time) (api.Orchestra, error)
	DeleteOrchestra(ctx context.Context, name string, now time.Time) (uint64, error)
	Orchestra(name string) (api.Orchestra, bool)
	Orchestras() []api.Orchestra
	CreateApproval(ctx context.Context, a api.Approval) (api.Approval, error)
	DecideApproval(ctx context.Context, id string, approve bool, by, reason string, now time.Time) (api.Approval, error)
	ConsumeApproval(ctx context.Context, id, agent, agentVersion, action, argsDigest, invocationID string, now time.Time) (api.Approval, error)
	Approval(id string) (api.Approval, bool)
	Approvals() []api.Approval
	SetKill(ctx context.Context, k api.KillSwitch) (api.KillSwitch, error)
	LiftKill(ctx context.Context, id, by, reason string, now time.Time) (api.KillSwitch, error)
	Kills() []api.KillSwitch
	ActiveKills() []api.KillSwitch
}

var _ Store = (*store.Store)(nil)

// Config configures a Server.
type Config struct {
	Store   Store
	Bundles *Bundles
	Region  string
	Logger  *slog.Logger
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
	// DecisionLog records the decisions of /v1/check, its batches and the
	// AuthZEN evaluations; nil: none. Decisions is the log that POST
	// /v1/policies/simulate replays; nil: the endpoint answers 503.
	DecisionLog DecisionLog
	Decisions   simulate.Source
	// Audit is the node's audit log: every decision is appended to it, the
	// gateway records invocations in it, and GET /v1/audit serves it. nil:
	// no audit log and no gateway.
	Audit *audit.Log
	// NoDecisionAudit leaves the decisions of /v1/check, its batches and
	// AuthZEN out of the audit log (the gateway's invocations are always
	// recorded).
	NoDecisionAudit bool
	// Counter holds the gateway's rate limits, budgets and idempotency
	// keys. nil: no gateway (POST /v1/actions/... answers 503).
	Counter limits.Counter
	// Gateway tunes the agent gateway; its Store, Decide, Audit, Counter,
	// Node, Now, Logger and Registerer are set by the server.
	Gateway gateway.Config
}

// Server serves the kernel's HTTP API. Create it with New.
type Server struct {
	cfg     Config
	store   Store
	bundles *Bundles
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics
	client  *http.Client
	mux     *routeMux
	gw      *gateway.Gateway
}

// New validates cfg, applies defaults and builds the routes.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Bundles == nil {
		return nil, errors.New("server: Store and Bundles are required")
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
	s := &Server{
		cfg:     cfg,
		store:   cfg.Store,
		bundles: cfg.Bundles,
		log:     cfg.Logger,
		now:     cfg.Now,
		client:  &http.Client{Timeout: cfg.WriteTimeout + 5*time.Second},
		mux:     &routeMux{ServeMux: http.NewServeMux()},
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "aibos_bundle_version", Help: "The bundle version this node decides with.",
		}, func() float64 { return float64(s.bundles.Version()) })); err != nil {
			return nil, err
		}
	}
	if cfg.Audit != nil && cfg.Counter != nil {
		gc := cfg.Gateway
		gc.Store, gc.Decide, gc.Audit, gc.Counter = cfg.Store, s.decideForGateway, cfg.Audit, cfg.Counter
		gc.Node, gc.Now, gc.Logger, gc.Registerer = cfg.NodeID, cfg.Now, cfg.Logger, cfg.Registerer
		if s.gw, err = gateway.New(gc); err != nil {
			return nil, err
		}
	}
	s.routes()
	return s, nil
}

// routeMux is the server's ServeMux, which also keeps the list of the
// patterns registered on it: the route table that answers which methods a
// path allows.
type routeMux struct {
	*http.ServeMux
	patterns []string
}

func (m *routeMux) Handle(pattern string, h http.Handler) {
	m.ServeMux.Handle(pattern, h)
	m.patterns = append(m.patterns, pattern)
}

func (m *routeMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(h))
}

// Routes lists the patterns of the server's routes ("POST /v1/check"), in
// the order they were registered; the catch-all "/" that answers 404 and
// 405 is not among them.
func (s *Server) Routes() []string {
	return slices.DeleteFunc(slices.Clone(s.mux.patterns), func(p string) bool { return p == "/" })
}

// Handle adds a route served by another package (the agent sandbox's);
// leader routes run on the leader and are forwarded to it from any other
// node. Call it before the server serves.
func (s *Server) Handle(pattern string, h http.HandlerFunc, leader bool) {
	if leader {
		h = s.leaderOnly(h)
	}
	s.mux.HandleFunc(pattern, h)
}

// Gateway is the server's agent gateway; nil if it runs without one.
func (s *Server) Gateway() *gateway.Gateway { return s.gw }

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("POST /v1/check", s.handleCheck)
	m.HandleFunc("POST /v1/check/batch", s.handleCheckBatch)

	m.HandleFunc("POST /access/v1/evaluation", s.handleAuthZENEvaluation)
	m.HandleFunc("POST /access/v1/evaluations", s.handleAuthZENEvaluations)
	m.HandleFunc("GET /.well-known/authzen-configuration", s.handleAuthZENConfig)

	m.HandleFunc("PUT /v1/policies", s.leaderOnly(s.handlePublish))
	m.HandleFunc("GET /v1/policies", s.handleCurrentPolicies)
	m.HandleFunc("GET /v1/policies/versions", s.handleVersions)
	m.HandleFunc("GET /v1/policies/versions/{v}", s.handleVersion)
	m.HandleFunc("POST /v1/policies/rollback", s.leaderOnly(s.handleRollback))
	m.HandleFunc("POST /v1/policies/simulate", s.handleSimulate)

	m.HandleFunc("PUT /v1/entities", s.leaderOnly(s.handlePutEntities))
	m.HandleFunc("GET /v1/entities/{type}/{id}", s.handleGetEntity)
	m.HandleFunc("DELETE /v1/entities/{type}/{id}", s.leaderOnly(s.handleDeleteEntity))

	m.HandleFunc("GET /v1/watch", s.handleWatch)

	m.HandleFunc("POST /v1/rollouts", s.leaderOnly(s.handleStartRollout))
	m.HandleFunc("GET /v1/rollouts/current", s.handleCurrentRollout)
	m.HandleFunc("POST /v1/rollouts/abort", s.leaderOnly(s.handleAbortRollout))
	m.HandleFunc("POST /v1/rollouts/promote", s.leaderOnly(s.handlePromoteRollout))

	m.HandleFunc("POST /v1/agents", s.leaderOnly(s.handleRegisterAgent))
	m.HandleFunc("GET /v1/agents", s.handleListAgents)
	m.HandleFunc("GET /v1/agents/{id}", s.handleGetAgent)
	m.HandleFunc("PATCH /v1/agents/{id}", s.leaderOnly(s.handleUpdateAgent))
	m.HandleFunc("POST /v1/agents/{id}/retire", s.leaderOnly(s.handleRetireAgent))
	m.HandleFunc("POST /v1/agents/{id}/credentials/rotate", s.leaderOnly(s.handleRotateAgentCredential))
	m.HandleFunc("DELETE /v1/agents/{id}/credentials", s.leaderOnly(s.handleRevokeAgentCredential))

	s.gatewayRoutes(m)

	m.HandleFunc("GET /v1/cluster", s.handleCluster)
	m.HandleFunc("POST /v1/cluster/join", s.leaderOnly(s.handleJoin))
	m.HandleFunc("POST /v1/cluster/remove", s.leaderOnly(s.handleRemove))

	m.HandleFunc("GET /healthz", s.handleHealth)
	m.HandleFunc("GET /readyz", s.handleReady)
	if s.cfg.Gatherer != nil {
		m.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	m.HandleFunc("/", s.handleNoRoute)
}

// routeMethods are the methods a route may serve, in the order an Allow
// header lists them.
var routeMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// handleNoRoute answers a request no route matched: 405 with an Allow
// header when routes serve its path with other methods, else 404. The
// catch-all "/" matches every method, so the mux never answers 405 itself
// (and its own 405 would be plain text); asking the mux which of the other
// methods would match keeps the answer true to the route table as routes
// are added.
func (s *Server) handleNoRoute(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range routeMethods {
		if m == r.Method {
			continue
		}
		probe := &http.Request{Method: m, Host: r.Host, URL: r.URL}
		if _, p := s.mux.Handler(probe); p != "" && p != "/" {
			allow = append(allow, m)
		}
	}
	if len(allow) == 0 {
		writeError(w, http.StatusNotFound, codeNotFound, "no endpoint "+r.Method+" "+r.URL.Path+": see the API reference in the README")
		return
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeError(w, http.StatusMethodNotAllowed, codeBadMethod,
		fmt.Sprintf("%s is not allowed on %s: it serves %s (see the API reference in the README)", r.Method, r.URL.Path, strings.Join(allow, ", ")))
}

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
	s.mux.ServeHTTP(w, r)
}
