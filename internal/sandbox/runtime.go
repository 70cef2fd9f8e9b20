// Package sandbox runs agents inside the kernel in a WebAssembly sandbox
// (wazero). It owns module validation, the host module aibos/v1 through
// which a guest acts (every action goes through the agent gateway), the
// execution of ticks on a bounded worker pool with per-tick deadlines and
// per-agent memory caps, and the agents' lifecycle (start, stop, crash,
// backoff, failed, kill switches). See DESIGN.md.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/audit"
	"github.com/aibos/kernel/internal/gateway"
)

// Store is what the runtime needs of the replicated state.
type Store interface {
	Agent(id string) (api.Agent, bool)
	AgentModule(agent, version string) (api.AgentModule, []byte, bool)
	AgentRuntime(agent string) api.AgentRuntime
	AgentKV(agent, key string) ([]byte, bool)
	PutAgentKV(ctx context.Context, agent string, epoch uint64, key string, value []byte, del bool) (uint64, error)
	SetAgentStatus(ctx context.Context, st api.AgentRuntime) (uint64, error)
	SetAgentRun(ctx context.Context, agent, desired string, now time.Time) (uint64, error)
	SetAgentRunVersion(ctx context.Context, agent, version string, now time.Time) (uint64, error)
	DeployModule(ctx context.Context, agent, version string, wasm []byte, now time.Time) (api.AgentModule, error)
	SandboxAgents() []string
	ActiveKills() []api.KillSwitch
	IsLeader() bool
	// Placement (place.go).
	SandboxPlacements() []api.AgentPlacement
	AgentPlacement(agent string) (node string, epoch uint64)
	PlaceAgents(ctx context.Context, ps []api.AgentPlacement, now time.Time) (uint64, error)
	LiveVoters(deadAfter time.Duration) ([]string, error)
	NodeHTTP(id string) string
	AgentTimers(agent string) map[string]time.Time
	SetAgentTimer(ctx context.Context, agent string, epoch uint64, op, name string, due time.Time) (uint64, error)
	WaitForRevision(ctx context.Context, rev uint64) error
	AppliedRevision() uint64
}

// Invoker is the agent gateway.
type Invoker interface {
	Invoke(ctx context.Context, c gateway.Call) gateway.Reply
}

// Recorder is the audit log, for upgrades and rollbacks.
type Recorder interface {
	Append(r *audit.Record)
}

// Config configures a Runtime. The zero value of a field takes the
// default in parentheses.
type Config struct {
	Store   Store
	Gateway Invoker
	// DataDir holds the compilation cache (DataDir/wasm-cache); empty: an
	// in-memory cache.
	DataDir string
	// CacheDir, if set, holds the compilation cache instead of
	// DataDir/wasm-cache: runtimes of one process may share it (wazero
	// keys compiled code by the module's hash and its own version).
	CacheDir string
	Node     string
	Logger   *slog.Logger
	Now      func() time.Time // (time.Now): the guests' clock too
	// Workers bounds the ticks that run at once on this node (2).
	Workers int
	// ParkAfter closes an instance idle for this long; its next tick
	// instantiates it again (30 s).
	ParkAfter time.Duration
	// MaxRestarts is how many crashes in a row an agent may have before it
	// is failed (5); Backoff the first restart delay, doubled each time up
	// to MaxBackoff (100 ms, 5 s).
	MaxRestarts int
	Backoff     time.Duration
	MaxBackoff  time.Duration
	// QueueLen bounds the ticks waiting per agent (64).
	QueueLen int
	// Audit records upgrades and rollbacks; nil: not recorded.
	Audit Recorder
	// Probation is how long after an upgrade a crash, a failed health
	// check or failing ticks roll the agent back (30 s).
	Probation time.Duration
	// Peers reaches the leader (a follower's host calls) and the node an
	// agent runs on (its runtime routes); nil: a single node.
	Peers Peers
	// DeadAfter is how long the leader's heartbeats to a voter must fail
	// before its agents are placed elsewhere (1 s); PlaceEvery how often
	// the leader checks (100 ms).
	DeadAfter  time.Duration
	PlaceEvery time.Duration
	// CompileBudget bounds compiling a module (2 min; a Go guest takes
	// seconds): a deploy whose module compiles longer is refused.
	CompileBudget time.Duration
	// HealthEvery is how often a live instance's health export is called
	// between ticks (10 s); it is also called after every start.
	HealthEvery time.Duration
}

func (c *Config) defaults() error {
	if c.Store == nil || c.Gateway == nil {
		return errors.New("sandbox: Store and Gateway are required")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Workers <= 0 {
		c.Workers = 2
	}
	if c.ParkAfter <= 0 {
		c.ParkAfter = 30 * time.Second
	}
	if c.MaxRestarts <= 0 {
		c.MaxRestarts = 5
	}
	if c.Backoff <= 0 {
		c.Backoff = 100 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 5 * time.Second
	}
	if c.QueueLen <= 0 {
		c.QueueLen = 64
	}
	if c.Probation <= 0 {
		c.Probation = 30 * time.Second
	}
	if c.DeadAfter <= 0 {
		c.DeadAfter = time.Second
	}
	if c.PlaceEvery <= 0 {
		c.PlaceEvery = 100 * time.Millisecond
	}
	if c.CompileBudget <= 0 {
		c.CompileBudget = 2 * time.Minute
	}
	if c.HealthEvery <= 0 {
		c.HealthEvery = 10 * time.Second
	}
	return nil
}

// Runtime runs the sandboxed agents of one node: those the leader placed
// on it (and, on the leader, it places them; place.go). Create it with
// New.
type Runtime struct {
	cfg   Config
	log   *slog.Logger
	cache wazero.CompilationCache

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	runq   chan *agentRun
	wake   chan struct{}

	mu       sync.Mutex
	engines  map[uint32]wazero.Runtime         // by memory cap in pages; guarded by mu
	compiled map[compiledKey]*compiledModule   // guarded by mu
	agents   map[string]*agentRun              // guarded by mu
	calls    map[string]map[*hostCall]struct{} // host operations in flight for other nodes, by agent; guarded by mu
	warming  bool                              // a prewarm runs; guarded by mu
}

type compiledKey struct {
	pages uint32
	sha   string
}

type compiledModule struct {
	cm   wazero.CompiledModule
	info ModuleInfo
}

// New builds a runtime and starts its workers; Close stops them.
func New(cfg Config) (*Runtime, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	var cache wazero.CompilationCache
	if cfg.DataDir != "" || cfg.CacheDir != "" {
		dir := cfg.CacheDir
		if dir == "" {
			dir = filepath.Join(cfg.DataDir, "wasm-cache")
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("sandbox: compilation cache: %w", err)
		}
		c, err := wazero.NewCompilationCacheWithDir(dir)
		if err != nil {
			return nil, fmt.Errorf("sandbox: compilation cache in %s: %w", dir, err)
		}
		cache = c
	} else {
		cache = wazero.NewCompilationCache()
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Runtime{
		cfg: cfg, log: cfg.Logger.With("component", "sandbox"), cache: cache,
		ctx: ctx, cancel: cancel,
		runq:     make(chan *agentRun, 1024),
		wake:     make(chan struct{}, 1),
		engines:  map[uint32]wazero.Runtime{},
		compiled: map[compiledKey]*compiledModule{},
		agents:   map[string]*agentRun{},
		calls:    map[string]map[*hostCall]struct{}{},
	}
	for range cfg.Workers {
		r.wg.Add(1)
		go r.worker()
	}
	r.wg.Add(1)
	go r.control()
	return r, nil
}

// Close stops every agent on this node (their replicated state stays) and
// the workers, then the engines.
func (r *Runtime) Close() error {
	r.cancel()
	r.mu.Lock()
	runs := make([]*agentRun, 0, len(r.agents))
	for _, a := range r.agents {
		runs = append(runs, a)
	}
	r.mu.Unlock()
	for _, a := range runs {
		a.shutdown(errStopped)
	}
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.engines {
		e.Close(context.Background())
	}
	return r.cache.Close(context.Background())
}

// Changed tells the runtime that the replicated state changed (an agent's
// sandbox state, an agent, a kill switch, leadership): cheap, safe from
// the store's apply hook.
func (r *Runtime) Changed() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// engine is the wazero runtime for a memory cap; all share the cache.
func (r *Runtime) engine(pages uint32) wazero.Runtime {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.engines[pages]; ok {
		return e
	}
	e := wazero.NewRuntimeWithConfig(r.ctx, wazero.NewRuntimeConfig().
		WithCompilationCache(r.cache).
		WithCloseOnContextDone(true).
		WithMemoryLimitPages(pages))
	if err := instantiateHost(r.ctx, e); err != nil {
		// Only a programming error (a bad host definition) gets here.
		panic(err)
	}
	r.engines[pages] = e
	return e
}

// compile is the compiled module for sha under a memory cap, compiled once
// per node and kept (the file cache makes a restart's compile cheap).
func (r *Runtime) compile(ctx context.Context, pages uint32, sha string, wasm []byte) (*compiledModule, error) {
	k := compiledKey{pages, sha}
	r.mu.Lock()
	c := r.compiled[k]
	r.mu.Unlock()
	if c != nil {
		return c, nil
	}
	cm, info, err := r.validate(ctx, pages, wasm)
	if err != nil {
		return nil, err
	}
	c = &compiledModule{cm: cm, info: info}
	r.mu.Lock()
	if old := r.compiled[k]; old != nil {
		r.mu.Unlock()
		cm.Close(ctx)
		return old, nil
	}
	r.compiled[k] = c
	r.mu.Unlock()
	return c, nil
}

// Deploy validates wasm (compiling it into this node's cache) and stores
// it for the agent's current version. Leader only (the caller forwards).
func (r *Runtime) Deploy(ctx context.Context, agentID string, wasm []byte) (api.AgentModule, error) {
	a, ok := r.cfg.Store.Agent(agentID)
	if !ok || a.State != api.AgentActive {
		return api.AgentModule{}, fmt.Errorf("%w: agent %q is not registered or not active: register it first (aibos agent register)", ErrNotFound, agentID)
	}
	if len(wasm) > maxModuleBytes {
		return api.AgentModule{}, &ValidationError{Problems: []string{fmt.Sprintf("module is %d bytes; at most %d (build with -ldflags=-s -w, or trim dependencies)", len(wasm), maxModuleBytes)}}
	}
	p, err := ParseProfile(a.Sandbox)
	if err != nil {
		return api.AgentModule{}, &ValidationError{Problems: []string{"agent " + agentID + " version " + a.Version + ": " + err.Error() + " (register a new version with a valid sandbox profile)"}}
	}
	cm, info, err := r.validate(ctx, p.MaxPages, wasm)
	if err != nil {
		return api.AgentModule{}, err
	}
	cm.Close(ctx)
	if info.MinPages > p.MaxPages {
		return api.AgentModule{}, &ValidationError{Problems: []string{fmt.Sprintf("memory: the module needs %d pages at start, above the agent's cap sandbox.max_pages = %d; raise the cap (at most %d) in a new version", info.MinPages, p.MaxPages, MaxMaxPages)}}
	}
	return r.cfg.Store.DeployModule(ctx, agentID, a.Version, wasm, r.cfg.Now())
}

// validate is Validate within the compile budget: a module whose compile
// outlasts it is refused (at deploy: nothing is stored) and the compile
// stops. wazero checks the context between functions only when it
// compiles on several goroutines, hence two workers.
func (r *Runtime) validate(ctx context.Context, pages uint32, wasm []byte) (wazero.CompiledModule, ModuleInfo, error) {
	bctx, cancel := context.WithTimeout(ctx, r.cfg.CompileBudget)
	defer cancel()
	bctx = experimental.WithCompilationWorkers(bctx, compileWorkers)
	start := time.Now()
	cm, info, err := Validate(bctx, r.engine(pages), wasm)
	if err != nil && bctx.Err() != nil && ctx.Err() == nil {
		return nil, info, &ValidationError{Problems: []string{fmt.Sprintf(
			"compiling the module took longer than this node's compile budget of %v (stopped after %v): make it smaller (-ldflags='-s -w', fewer dependencies) or raise the budget (sandbox CompileBudget)",
			r.cfg.CompileBudget, time.Since(start).Round(time.Millisecond))}}
	}
	return cm, info, err
}

// compileWorkers compile a module's functions at once (see validate).
const compileWorkers = 2

// maxModuleBytes mirrors store.MaxModuleBytes without importing the store.
const maxModuleBytes = 8 << 20

// ErrNotFound: no such agent.
var ErrNotFound = errors.New("not found")

var errStopped = errors.New("agent stopped")

// control reconciles the agents this node runs with the replicated state
// on every change, places agents (on the leader), and parks idle
// instances.
func (r *Runtime) control() {
	defer r.wg.Done()
	park := time.NewTicker(min(r.cfg.ParkAfter/2, time.Second))
	defer park.Stop()
	// A node's death is not a store change: the leader looks every
	// PlaceEvery.
	placeT := time.NewTicker(r.cfg.PlaceEvery)
	defer placeT.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-r.wake:
		case <-placeT.C:
			r.place()
			continue
		case <-park.C:
			r.parkIdle()
			continue
		}
		r.place()
		r.reconcile()
		r.prewarm()
	}
}

// reconcile starts what is placed here and stops what is not. Every agent
// runs in the epoch of its placement: one placed here again (after it
// ran elsewhere) starts afresh in its new epoch.
func (r *Runtime) reconcile() {
	r.cancelStale()
	want := map[string]uint64{}
	for _, p := range r.cfg.Store.SandboxPlacements() {
		if p.Node == r.cfg.Node {
			want[p.Agent] = p.Epoch
		}
	}
	kills := r.cfg.Store.ActiveKills()
	r.mu.Lock()
	var stop, start, check []*agentRun
	for id, a := range r.agents {
		a.mu.Lock()
		same := a.epoch == want[id]
		a.mu.Unlock()
		if e, ok := want[id]; !ok || !same {
			stop = append(stop, a)
			delete(r.agents, id)
			if ok {
				n := newAgentRun(r, id)
				n.epoch = e
				r.agents[id] = n
				start = append(start, n)
			}
		} else {
			check = append(check, a)
		}
	}
	for id, e := range want {
		if _, ok := r.agents[id]; !ok {
			a := newAgentRun(r, id)
			a.epoch = e
			r.agents[id] = a
			start = append(start, a)
		}
	}
	r.mu.Unlock()
	for _, a := range stop {
		a.shutdown(errStopped)
		r.report(a, api.RuntimeStopped, "")
	}
	for _, a := range append(start, check...) {
		ag, ok := r.cfg.Store.Agent(a.id)
		if !ok {
			continue
		}
		if k := killFor(kills, &ag); k != nil {
			a.kill(k)
			continue
		}
		if a.unkill() || slicesContains(start, a) {
			a.enqueue(tick{kind: "start"})
			if slicesContains(start, a) {
				a.armTimers()
			}
		}
	}
}

func slicesContains(s []*agentRun, a *agentRun) bool {
	for _, x := range s {
		if x == a {
			return true
		}
	}
	return false
}

// prewarm compiles, in the background and one at a time, the modules of
// the agents asked to run: if one is placed here after its node dies, it
// starts without a cold compile (seconds for a Go guest), which is what
// keeps a failover's move fast.
func (r *Runtime) prewarm() {
	r.mu.Lock()
	if r.warming {
		r.mu.Unlock()
		return
	}
	r.warming = true
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer func() {
			r.mu.Lock()
			r.warming = false
			r.mu.Unlock()
		}()
		for _, id := range r.cfg.Store.SandboxAgents() {
			if r.ctx.Err() != nil {
				return
			}
			ag, ok := r.cfg.Store.Agent(id)
			if !ok {
				continue
			}
			version := ag.Version
			if v := r.cfg.Store.AgentRuntime(id).RunVersion; v != "" {
				version = v
			}
			mod, wasm, ok := r.cfg.Store.AgentModule(id, version)
			p, err := ParseProfile(ag.Sandbox)
			if !ok || err != nil {
				continue
			}
			if _, err := r.compile(r.ctx, p.MaxPages, mod.SHA256, wasm); err != nil {
				r.log.Warn("sandbox prewarm", "agent", id, "err", err)
			}
		}
	}()
}

// killFor is the first active kill switch that stops the whole agent:
// global, its tenant or itself. An action kill switch stops only those
// actions (the gateway refuses them), not the agent.
func killFor(kills []api.KillSwitch, a *api.Agent) *api.KillSwitch {
	for i := range kills {
		k := &kills[i]
		switch {
		case k.Scope == api.KillGlobal,
			k.Scope == api.KillTenant && k.Target == a.Tenant,
			k.Scope == api.KillAgent && k.Target == a.ID:
			return k
		}
	}
	return nil
}

func (r *Runtime) parkIdle() {
	now := time.Now()
	r.mu.Lock()
	runs := make([]*agentRun, 0, len(r.agents))
	for _, a := range r.agents {
		runs = append(runs, a)
	}
	r.mu.Unlock()
	for _, a := range runs {
		a.parkIfIdle(now, r.cfg.ParkAfter)
		if a.healthDue(now, r.cfg.HealthEvery) {
			a.enqueue(tick{kind: "health"})
		}
	}
}

func (r *Runtime) worker() {
	defer r.wg.Done()
	for {
		select {
		case <-r.ctx.Done():
			return
		case a := <-r.runq:
			a.runOne()
		}
	}
}

// report writes an agent's observed state to the replicated state.
func (r *Runtime) report(a *agentRun, state, lastErr string) {
	a.mu.Lock()
	st := api.AgentRuntime{Agent: a.id, State: state, Node: r.cfg.Node, Epoch: a.epoch, Version: a.version, Module: a.sha,
		Restarts: a.restarts, LastError: lastErr, UpdatedAt: r.cfg.Now()}
	a.state, a.lastErr = state, lastErr
	a.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, herr := r.act(ctx, a.id, hostOp{Op: opStatus, Epoch: st.Epoch, Status: &st}); herr != nil {
		r.log.Warn("sandbox status not recorded", "agent", a.id, "state", state, "err", herr)
	}
}

// Status is an agent's runtime state: the replicated one plus this node's
// live view when the agent runs here.
func (r *Runtime) Status(id string) api.AgentRuntime {
	st := r.cfg.Store.AgentRuntime(id)
	r.mu.Lock()
	a := r.agents[id]
	r.mu.Unlock()
	if a != nil {
		a.live(&st)
	}
	return st
}

// Send delivers a message tick to a running agent.
func (r *Runtime) Send(id string, msg []byte) error {
	r.mu.Lock()
	a := r.agents[id]
	r.mu.Unlock()
	if a == nil {
		return fmt.Errorf("%w: agent %q is not running on this node: start it (aibos agent start %s)", ErrNotRunning, id, id)
	}
	return a.enqueue(tick{kind: "message", message: append([]byte(nil), msg...)})
}

// ErrNotRunning: the agent does not run here.
var ErrNotRunning = errors.New("not running")

// run is the agent running on this node, nil if none.
func (r *Runtime) run(id string) *agentRun {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.agents[id]
}
