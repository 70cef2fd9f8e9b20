// Package node assembles one kernel node: the replicated store, the holder
// of the compiled bundle, the HTTP server and its listener, and joining a
// cluster. cmd/aibos runs one; the system tests run several in one process
// over loopback. Start and Close fix the start-up and shutdown order.
package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/aibos/kernel/internal/auth"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/audit"
	"github.com/aibos/kernel/internal/decisionlog"
	"github.com/aibos/kernel/internal/gateway"
	"github.com/aibos/kernel/internal/gateway/limits"
	"github.com/aibos/kernel/internal/mcp"
	"github.com/aibos/kernel/internal/pdp"
	"github.com/aibos/kernel/internal/policy"
	"github.com/aibos/kernel/internal/region"
	"github.com/aibos/kernel/internal/sandbox"
	"github.com/aibos/kernel/internal/server"
	"github.com/aibos/kernel/internal/simulate"
	"github.com/aibos/kernel/internal/store"
	"github.com/aibos/kernel/internal/watch"
)

// Config configures a node. The zero value of a field takes the default in
// parentheses.
type Config struct {
	NodeID   string // (node1)
	HTTPAddr string // (127.0.0.1:8181) port 0 picks a free port
	RaftAddr string // (127.0.0.1:8300) port 0 picks a free port
	// RaftAdvertise is the Raft address peers dial, if not RaftAddr.
	RaftAdvertise string
	DataDir       string // (./data)
	// Join is the HTTP address of any member of the cluster to join. Empty:
	// bootstrap a single-node cluster (unless DataDir already has state).
	Join string
	// NonVoter joins as a non-voting read replica.
	NonVoter bool
	Region   string // (default)
	// Regions puts the cluster in multi-region mode (with Regions.Domain
	// set): region Region of that residency domain.
	Regions RegionConfig
	Logger  *slog.Logger
	Timings store.Timings
	// JoinTimeout bounds joining (10 s).
	JoinTimeout time.Duration
	// Now is the clock of decisions and writes (time.Now).
	Now func() time.Time
	// MinRevisionWait bounds a min_revision wait (5 s).
	MinRevisionWait time.Duration
	// Watch tunes the watch stream (heartbeat, write timeout, slow-consumer
	// lag); its Source and Logger are set by the node.
	Watch watch.Config
	// DecisionLogSample is the fraction of decisions logged in
	// DataDir/decisions for simulation (0.1); 1 logs all; negative: none.
	// See internal/decisionlog/DESIGN.md.
	DecisionLogSample float64
	// AuditRedact are field paths redacted from every audit record's
	// arguments and results; AuditRetention how long records are kept;
	// AuditMaxBytes bounds the log's size, deleting the oldest segments
	// of decisions only (0: no bound; see internal/audit).
	AuditRedact    []string
	AuditRetention time.Duration
	AuditMaxBytes  int64
	// AuditFsyncInterval bounds how long a decision stays in the audit
	// log unsynced (a machine crash's window); invocations are synced
	// before their answer regardless. (10 ms)
	AuditFsyncInterval time.Duration
	// NoDecisionAudit leaves /v1/check decisions out of the audit log;
	// invocations are always recorded.
	NoDecisionAudit bool
	// RedisAddr holds the gateway's rate limits, budgets and idempotency
	// keys in Redis, shared by every node; empty: in DataDir, per node.
	RedisAddr     string
	RedisPassword string
	// Gateway tunes the agent gateway (approval TTL, timeouts, ...); its
	// Store, Decide, Audit, Counter, MCP, Node, Now, Logger and Registerer
	// are the node's (newGateway).
	Gateway gateway.Config
	// Token is the node's own operator credential: joining a cluster
	// (kernel.cluster.join: the node or admin role) and the requests it
	// makes of the leader. A bootstrapping node uses its root token.
	Token string
	// RootPrincipal names the principal of the root token a new cluster
	// makes (root).
	RootPrincipal string
	// OIDC: see server.Config.
	OIDC auth.OIDCConfig
	// AuthFailureLimit and AuthFailureWindow: see server.Config.
	AuthFailureLimit  int
	AuthFailureWindow time.Duration
	// MCP tunes the MCP gateway (debounce, backoff); its Store, Logger and
	// Metrics are set by the node.
	MCP mcp.Config
	// HTTP bounds the HTTP API's connections: timeouts and their number.
	HTTP HTTPLimits
	// Security: TLS of the HTTP API and node-to-node mutual TLS (tls.go).
	Security Security
	// BundleLimits bound the policies and rules of a bundle (10,000 and
	// 50,000: policy.MaxPolicies and policy.MaxRules); every node of a
	// cluster should have the same, since each compiles every version.
	BundleLimits policy.Limits
	// Sandbox tunes the agent runtime (workers, parking, restarts); its
	// Store, Gateway, DataDir, Node and Logger are set by the node.
	Sandbox sandbox.Config
}

// RegionConfig configures multi-region mode (internal/region).
type RegionConfig struct {
	// Domain is the region's residency domain; empty: a single region.
	Domain string
	// Join are base URLs of the primary region; empty: this region is
	// the first primary.
	Join []string
	// Token is the credential for calls to other regions (a token with
	// the region role made at the primary).
	Token string
	// Endpoints are the base URLs the registry lists for this region
	// (this node's URL).
	Endpoints []string
	// Standby names the region of the same domain this one's tenant data
	// is streamed to and that serves its tenants when it is lost.
	Standby string
	// Via: the endpoints this region reaches a region at, when not the
	// registry's.
	Via map[string][]string
	// Lease, Heartbeat, FailoverAfter: see region.Config.
	Lease, Heartbeat, FailoverAfter time.Duration
}

// Node is one running kernel node.
type Node struct {
	cfg     Config
	log     *slog.Logger
	Store   *store.Store
	Server  *server.Server
	Bundles *pdp.Holder
	// System is the system bundle that authorizes the API.
	System *server.SystemPolicy
	Watch  *watch.Hub
	// Decisions is the node's decision log; nil if disabled.
	Decisions *decisionlog.Log
	// Audit is the node's audit log; Counter the gateway's counter store.
	Audit   *audit.Log
	Counter limits.Counter
	gw      atomic.Pointer[gateway.Gateway]
	// MCP keeps the sessions with the catalog's MCP servers.
	MCP *mcp.Manager
	// Regions is the multi-region runtime; nil for a single region.
	Regions *region.Manager
	mcp     atomic.Pointer[mcp.Manager]
	// Sandbox runs the node's sandboxed agents; nil without a gateway.
	Sandbox *sandbox.Runtime
	sandbox atomic.Pointer[sandbox.Runtime]

	http    *http.Server
	ln      net.Listener
	serveWG sync.WaitGroup

	// The rollout guard checks shadow counters against abort thresholds.
	stopGuard context.CancelFunc
	guardWG   sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
	lock      *dirLock // of the data directory, released last
	rootToken string
}

func (c *Config) defaults() {
	if c.NodeID == "" {
		c.NodeID = "node1"
	}
	if c.HTTPAddr == "" {
		c.HTTPAddr = "127.0.0.1:8181"
	}
	if c.RaftAddr == "" {
		c.RaftAddr = "127.0.0.1:8300"
	}
	if c.DataDir == "" {
		c.DataDir = "data"
	}
	if c.Region == "" {
		c.Region = "default"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.JoinTimeout == 0 {
		c.JoinTimeout = 10 * time.Second
	}
	if c.RootPrincipal == "" {
		c.RootPrincipal = rootPrincipal
	}
	if c.DecisionLogSample == 0 {
		c.DecisionLogSample = 0.1
	}
	c.HTTP.defaults()
}

// Start brings a node up: listen for HTTP (so the advertised address is
// known), open the store (bootstrapping or restoring), start serving, and
// join the cluster if asked. It returns once the node serves HTTP; until
// its store has caught up (a restart replays the log) it answers only
// probes, everything else with 503 not_ready. Use WaitReady to wait for
// that and a leader.
func Start(ctx context.Context, cfg Config) (_ *Node, err error) {
	cfg.defaults()
	log := cfg.Logger.With("node", cfg.NodeID)
	sec := cfg.Security
	if err := sec.check(cfg); err != nil {
		return nil, err
	}
	// The data directory first, before anything in it is opened.
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			lock.release()
		}
	}()
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("node: listen on %s for HTTP: %w", cfg.HTTPAddr, err)
	}
	limited := newConnListener(ln, cfg.HTTP)
	ln = limited
	if sec.httpTLS() {
		ln = tls.NewListener(ln, sec.httpServerTLS())
	}
	n := &Node{cfg: cfg, log: log, ln: ln, lock: lock}
	n.Bundles = pdp.NewHolder(pdp.Options{Logger: log, Limits: cfg.BundleLimits})
	if n.System, err = server.NewSystemPolicy(log); err != nil {
		return n.abort(err)
	}
	// The hub exists before the store so the apply hook can wake it; it
	// reads the store only for watchers, which connect once HTTP serves.
	wcfg := cfg.Watch
	wcfg.Source = replica{n}
	wcfg.Logger = log
	if n.Watch, err = watch.New(wcfg); err != nil {
		return n.abort(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "aibos_watchers", Help: "Watch stream connections this node serves.",
	}, func() float64 { return float64(n.Watch.Subscribers()) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "aibos_http_connections", Help: "HTTP connections open now; at most the node's HTTP connection limit.",
	}, func() float64 { return float64(limited.open()) }))

	st, err := store.New(store.Config{
		NodeID:        cfg.NodeID,
		RaftAddr:      cfg.RaftAddr,
		RaftAdvertise: cfg.RaftAdvertise,
		HTTPAddr:      ln.Addr().String(),
		DataDir:       cfg.DataDir,
		Bootstrap:     cfg.Join == "",
		NonVoter:      cfg.NonVoter,
		Logger:        log,
		Timings:       cfg.Timings,
		Registerer:    reg,
		RaftTLS:       sec.raftTLS(),
		OnApply: func(c store.Change) {
			if c.Kind == store.ChangeBundle || c.Kind == store.ChangeRestore {
				n.Bundles.Apply(c.Version)
				n.Watch.Notify()
			}
			if c.Kind == store.ChangeRollout || c.Kind == store.ChangeRestore {
				n.Bundles.Apply(c.Version) // a promote publishes a version
				n.Bundles.ApplyRollout(c.Rollout, c.Candidate)
				n.Watch.Notify()
			}
			if c.Kind == store.ChangeKill {
				n.Watch.Notify()
			}
			if c.Kind == store.ChangeSystem || c.Kind == store.ChangeRestore {
				n.System.Apply(c.System)
			}
			n.gatewayHook(c)
			n.sandboxHook(c)
		},
	})
	if err != nil {
		return n.abort(err)
	}
	n.Store = st
	fresh := st.Bootstrapped()
	if fresh {
		if n.rootToken, err = rootSecret(filepath.Join(cfg.DataDir, RootTokenFile)); err != nil {
			return n.abort(err)
		}
	} else if cfg.Join == "" {
		// A restart of the bootstrapping node finds its root token again.
		if tok, err := readToken(filepath.Join(cfg.DataDir, RootTokenFile)); err == nil {
			n.rootToken = tok
		}
	}
	nodeToken := cfg.Token
	if nodeToken == "" {
		nodeToken = n.rootToken
	}
	var dlog pdp.DecisionLog
	var dsrc simulate.Source
	if cfg.DecisionLogSample > 0 {
		if n.Decisions, err = openDecisionLog(cfg, reg); err != nil {
			return n.abort(err)
		}
		dlog, dsrc = n.Decisions, n.Decisions
	}
	if n.Audit, err = openAudit(cfg, reg); err == nil {
		n.Counter, err = openCounter(cfg)
	}
	if err != nil {
		return n.abort(err)
	}
	mcfg := cfg.MCP
	mcfg.Store, mcfg.Logger = st, log
	if mcfg.Metrics, err = mcp.NewMetrics(reg); err == nil {
		n.MCP, err = mcp.NewManager(mcfg)
	}
	if err != nil {
		return n.abort(err)
	}
	n.mcp.Store(n.MCP)
	// The decision point: every entry point of the server and the gateway
	// decides and records through it.
	pcfg := pdp.Config{Holder: n.Bundles, State: st, DecisionLog: dlog, NoDecisionAudit: cfg.NoDecisionAudit,
		Now: cfg.Now, Registerer: reg}
	if n.Audit != nil {
		pcfg.Audit = n.Audit
	}
	point, err := pdp.NewPoint(pcfg)
	var gw *gateway.Gateway
	if err == nil {
		gw, err = n.newGateway(st, point, reg)
	}
	if err == nil && cfg.Regions.Domain != "" {
		if n.Regions, err = n.startRegions(st, sec); err == nil {
			err = n.Regions.RegisterMetrics(reg)
		}
	}
	var regions server.Regions
	if n.Regions != nil {
		regions = n.Regions
	}
	var srv *server.Server
	if err == nil {
		srv, err = server.New(server.Config{
			Regions: regions,
			Store:   st, Point: point, Region: cfg.Region, Logger: log,
			Registerer: reg, Gatherer: reg, Now: cfg.Now, MinRevisionWait: cfg.MinRevisionWait,
			Watch:     n.Watch,
			NodeID:    cfg.NodeID,
			Decisions: dsrc,
			Audit:     n.Audit, Gateway: gw,
			PeerTLS: sec.peerTLS(), IdentifyNode: sec.identifyNode(),
			BundleLimits: cfg.BundleLimits,
			MCP:          n.MCP,
			System:       n.System, NodeToken: nodeToken, AuthFailureLimit: cfg.AuthFailureLimit, AuthFailureWindow: cfg.AuthFailureWindow,
			OIDC: cfg.OIDC,
		})
	}
	if err != nil {
		return n.abort(err)
	}
	n.Server = srv
	if e := srv.MCP(); e != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "aibos_mcp_sessions", Help: "Agents' MCP sessions this node serves.",
		}, func() float64 { return float64(e.Sessions()) }))
	}
	if gw := srv.Gateway(); gw != nil {
		n.gw.Store(gw)
		// A change applied while the gateway was being built reached no
		// hook: read the state once more.
		gw.CatalogChanged()
		gw.KillsChanged()
	}
	if err := n.startSandbox(); err != nil {
		return n.abort(err)
	}
	gctx, stopGuard := context.WithCancel(context.Background())
	n.stopGuard = stopGuard
	n.guardWG.Add(1)
	go func() {
		defer n.guardWG.Done()
		srv.RunRolloutGuard(gctx, time.Second)
	}()
	n.http = &http.Server{Handler: srv, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ReadHeaderTimeout: bound(cfg.HTTP.ReadHeaderTimeout), ReadTimeout: bound(cfg.HTTP.ReadTimeout),
		WriteTimeout: bound(cfg.HTTP.WriteTimeout), IdleTimeout: bound(cfg.HTTP.IdleTimeout)}
	n.serveWG.Add(1)
	go func() {
		defer n.serveWG.Done()
		if err := n.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "err", err)
		}
	}()
	if fresh {
		// The first start of a new cluster: its root token, before Start
		// returns, so that the file exists once the node serves.
		rctx, cancel := context.WithTimeout(ctx, n.cfg.JoinTimeout)
		err := n.ensureRootToken(rctx)
		cancel()
		if err != nil {
			n.Kill()
			return nil, err
		}
	}
	if cfg.Join != "" && n.needsJoin() {
		if err := n.join(ctx); err != nil {
			n.Kill()
			return nil, err
		}
	}
	log.Info("node started", "http", n.HTTPAddr(), "raft", st.RaftAddr(), "data", cfg.DataDir, "region", cfg.Region, "audit_sync", n.Audit.Stats().SyncMode)
	return n, nil
}

// abort undoes a Start that failed before it began serving, and returns
// err: what has been started so far is closed in the order of Close — the
// listener (where Close drains HTTP), the MCP servers, the sandbox, the
// decision log, the audit log and counters, the store. Start's deferred
// release of the data directory's lock comes last.
func (n *Node) abort(err error) (*Node, error) {
	n.ln.Close()
	if n.MCP != nil {
		n.MCP.Close()
	}
	n.closeSandbox()
	n.closeDecisions()
	n.closeGateway()
	if n.Regions != nil {
		n.Regions.Close()
	}
	if n.Store != nil {
		n.Store.Close()
	}
	return nil, err
}

// needsJoin reports whether this node must (still) ask to join: it is not
// in the restored raft configuration, or it is there as a non-voter while
// it should vote (it stopped between joining as a non-voter and its
// promotion).
func (n *Node) needsJoin() bool {
	nodes, err := n.Store.Nodes()
	if err != nil {
		return true
	}
	for _, m := range nodes {
		if m.ID == n.cfg.NodeID {
			return m.Role == store.RoleNonvoter && !n.cfg.NonVoter
		}
	}
	return true
}

// join asks the member at cfg.Join to add this node, retrying until the
// cluster has a leader that accepts it or JoinTimeout passes. A voter is
// added as a non-voter first (202 and a revision): it waits until it has
// applied that revision, then asks again to be promoted.
func (n *Node) join(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.JoinTimeout)
	defer cancel()
	voter := !n.cfg.NonVoter
	body, _ := json.Marshal(server.JoinRequest{ID: n.cfg.NodeID, Raft: n.Store.RaftAddr(), HTTP: n.HTTPAddr(), Voter: &voter})
	target := n.cfg.Join
	if !strings.Contains(target, "://") {
		target = n.scheme() + "://" + target
	}
	hc := &http.Client{Transport: http.DefaultTransport}
	if tc := n.cfg.Security.peerTLS(); tc != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tc
		hc.Transport = tr
	}
	defer hc.CloseIdleConnections()
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, target+"/v1/cluster/join", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if n.cfg.Token != "" {
			req.Header.Set("Authorization", "Bearer "+n.cfg.Token)
		}
		resp, err := hc.Do(req)
		if err == nil {
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			switch {
			case resp.StatusCode == http.StatusOK:
				n.log.Info("joined cluster", "via", n.cfg.Join, "voter", voter)
				return nil
			case resp.StatusCode == http.StatusAccepted:
				var jr server.JoinResponse
				if err := json.Unmarshal(msg, &jr); err != nil {
					return fmt.Errorf("node: join via %s: unreadable answer %q: %w", n.cfg.Join, msg, err)
				}
				n.log.Info("joined as a non-voter; catching up before promotion", "revision", jr.Revision)
				if err := n.Store.WaitForRevision(ctx, jr.Revision); err != nil {
					return fmt.Errorf("node: joined via %s as a non-voter but did not catch up to revision %d within %s (%w); it stays a non-voter until it restarts and joins again",
						n.cfg.Join, jr.Revision, n.cfg.JoinTimeout, err)
				}
				continue // ask again: now to be promoted
			case resp.StatusCode < 500:
				return fmt.Errorf("node: join via %s refused: %s: %s", n.cfg.Join, resp.Status, strings.TrimSpace(string(msg)))
			}
			last = fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node: could not join via %s within %s: %w", n.cfg.Join, n.cfg.JoinTimeout, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (n *Node) scheme() string {
	if n.cfg.Security.httpTLS() {
		return "https"
	}
	return "http"
}

// Config is the node's configuration, its defaults filled in: start a node
// with it again to restart this one.
func (n *Node) Config() Config {
	c := n.cfg
	c.HTTPAddr = n.HTTPAddr()
	c.RaftAddr = n.Store.RaftAddr()
	return c
}

// HTTPAddr is the address the node serves HTTP on.
func (n *Node) HTTPAddr() string { return n.ln.Addr().String() }

// URL is the node's base URL (https when the API is served over TLS).
func (n *Node) URL() string { return n.scheme() + "://" + n.HTTPAddr() }

// WaitReady waits until the node knows a leader and has caught up.
func (n *Node) WaitReady(ctx context.Context) error {
	if err := n.Store.WaitForLeader(ctx); err != nil {
		return err
	}
	for {
		if n.Store.Ready() == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s not ready: %w", n.cfg.NodeID, n.Store.Ready())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Close shuts the node down in order: the store hands leadership to another
// voter first (so writes keep being accepted elsewhere), then watchers are
// told to resume elsewhere (http.Server.Shutdown does not wait for their
// hijacked connections), then in-flight HTTP requests are drained, then raft
// and its files are closed.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.stopGuard()
		n.guardWG.Wait()
		n.Store.TransferLeadership()
		n.Watch.Close()
		// The region runtime stops following and ends the global streams
		// it serves (they would hold the HTTP server open).
		if n.Regions != nil {
			n.Regions.Close()
		}
		// Shutdown order: the agents' MCP sessions end (their streams
		// would hold the HTTP server open), the HTTP server drains (no
		// call in flight after it), the MCP servers are stopped, and only
		// then the audit log and counters close.
		if e := n.Server.MCP(); e != nil {
			e.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		herr := n.http.Shutdown(ctx)
		n.serveWG.Wait()
		n.MCP.Close()
		n.closeSandbox()
		n.closeDecisions()
		n.closeGateway()
		serr := n.Store.Close()
		n.lock.release()
		n.closeErr = errors.Join(herr, serr)
		n.log.Info("node stopped")
	})
	return n.closeErr
}

// Kill stops the node abruptly, as a crash would: connections are cut and
// raft stops without handing over leadership. For tests.
func (n *Node) Kill() error {
	n.closeOnce.Do(func() {
		n.stopGuard()
		n.guardWG.Wait()
		n.Watch.Kill()
		if n.Regions != nil {
			n.Regions.Close()
		}
		n.http.Close()
		n.serveWG.Wait()
		n.MCP.Close()
		n.closeSandbox()
		n.closeDecisions()
		n.closeGateway()
		n.closeErr = n.Store.Kill()
		n.lock.release() // as the end of a crashed process would
	})
	return n.closeErr
}

// replica is the watch hub's view of the node's store, which is created
// after the hub.
type replica struct{ n *Node }

func (r replica) Current() (api.BundleVersion, bool)           { return r.n.Store.Current() }
func (r replica) Version(v uint64) (api.BundleVersion, bool)   { return r.n.Store.Version(v) }
func (r replica) AppliedRevision() uint64                      { return r.n.Store.AppliedRevision() }
func (r replica) Rollout() (*api.Rollout, bool)                { return r.n.Store.Rollout() }
func (r replica) RolloutCandidate() (*api.BundleVersion, bool) { return r.n.Store.RolloutCandidate() }
func (r replica) Kills() []api.KillSwitch                      { return r.n.Store.Kills() }
func (r replica) KillRevision() uint64                         { return r.n.Store.KillRevision() }
