package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os/exec"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/gateway"
)

// Store is what the MCP gateway reads of the replicated state.
type Store interface {
	Orchestras() []api.Orchestra
	Orchestra(name string) (api.Orchestra, bool)
	AgentByToken(token string) (api.Agent, bool)
	Agent(id string) (api.Agent, bool)
	Approvals() []api.Approval
	LeaderHTTP() string
}

// Config configures a Manager. Zero fields take the default in parentheses.
type Config struct {
	Store  Store
	Logger *slog.Logger
	// Debounce is how long a burst of tools/list_changed from a server is
	// let settle before the kernel lists its tools again (500 ms).
	Debounce time.Duration
	// ConnectTimeout bounds connecting to a server and listing its tools
	// (30 s).
	ConnectTimeout time.Duration
	// MaxBackoff bounds the wait between restarts of a server (30 s); the
	// first wait is 100 ms, doubling.
	MaxBackoff time.Duration
	// HTTPClient speaks to streamable HTTP servers (a client without a
	// global timeout: each call has its action's).
	HTTPClient *http.Client
	// Metrics, if set, receives the per orchestra and tool series.
	Metrics *Metrics
	// RequestTimeout bounds one resources/read, prompts/get or
	// completion/complete on a server (30 s).
	RequestTimeout time.Duration
	// ListWait is how long a resource or prompt list waits for a server
	// that is not connected (just put, or restarting) before leaving it
	// out (2 s).
	ListWait time.Duration
	// PageSize is how many resources, templates or prompts one page of
	// the endpoint's lists holds (100).
	PageSize int
}

// Errors of upstream calls. A caller branches on them with errors.Is.
var (
	ErrQuarantined = errors.New("tool quarantined")
	ErrNotRunning  = errors.New("mcp server not connected")
)

// Manager owns one client session per mcp orchestra of the catalog.
//
// Goroutines: each upstream has one supervisor goroutine (run), started by
// Sync and stopped by Sync (orchestra deleted or its backend changed) or
// Close; it owns the session and, for stdio, the process (the SDK's
// CommandTransport starts it and, on Close, closes its stdin, waits 5 s,
// then signals it). The manager's own goroutine (loop) runs Sync after
// catalog changes. Close cancels both and waits for them: call it after
// the HTTP server has drained (no call in flight) and before the audit
// log closes.
type Manager struct {
	cfg Config
	log *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{} // a catalog change to Sync

	mu        sync.Mutex
	upstreams map[string]*upstream          // by orchestra; guarded by mu
	listeners []func()                      // told when the tools an agent may see changed; guarded by mu
	featureLs []func(list string)           // told when a server's resource or prompt list changed; guarded by mu
	updatedLs []func(orchestra, uri string) // told of a server's resources/updated; guarded by mu
	connLs    []func(orchestra string)      // told when an orchestra's session is (re)connected; guarded by mu
}

// NewManager starts a manager; it connects to the catalog's servers in the
// background.
func NewManager(cfg Config) (*Manager, error) {
	if cfg.Store == nil {
		return nil, errors.New("mcp: no store")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Debounce == 0 {
		cfg.Debounce = 500 * time.Millisecond
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 30 * time.Second
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	if cfg.ListWait == 0 {
		cfg.ListWait = 2 * time.Second
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = 100
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second}}
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{cfg: cfg, log: cfg.Logger.With("component", "mcp"), ctx: ctx, cancel: cancel,
		kick: make(chan struct{}, 1), upstreams: make(map[string]*upstream)}
	m.wg.Add(1)
	go m.loop()
	m.CatalogChanged()
	return m, nil
}

// CatalogChanged schedules a Sync. Cheap and non-blocking: safe from the
// store's apply hook.
func (m *Manager) CatalogChanged() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// KillsChanged tells the downstream sessions that the tools they may call
// changed (tools/list_changed). Non-blocking.
func (m *Manager) KillsChanged() { m.notify() }

// OnToolsChanged registers fn, called (on its own goroutine) whenever the
// tools an agent may see could have changed.
func (m *Manager) OnToolsChanged(fn func()) {
	m.mu.Lock()
	m.listeners = append(m.listeners, fn)
	m.mu.Unlock()
}

// OnListChanged registers fn, called (on its own goroutine) with
// "resources" or "prompts" when a server says that list changed.
func (m *Manager) OnListChanged(fn func(list string)) {
	m.mu.Lock()
	m.featureLs = append(m.featureLs, fn)
	m.mu.Unlock()
}

// OnResourceUpdated registers fn, called (on the session's goroutine:
// fn must not block long) with a server's notifications/resources/updated.
func (m *Manager) OnResourceUpdated(fn func(orchestra, uri string)) {
	m.mu.Lock()
	m.updatedLs = append(m.updatedLs, fn)
	m.mu.Unlock()
}

// OnConnected registers fn, called (on its own goroutine) when an
// orchestra's session is connected again: what the server kept per session
// (subscriptions) is gone.
func (m *Manager) OnConnected(fn func(orchestra string)) {
	m.mu.Lock()
	m.connLs = append(m.connLs, fn)
	m.mu.Unlock()
}

func (m *Manager) resourceUpdated(orchestra, uri string) {
	m.mu.Lock()
	ls := slices.Clone(m.updatedLs)
	m.mu.Unlock()
	for _, fn := range ls {
		fn(orchestra, uri)
	}
}

func (m *Manager) connected(orchestra string) {
	m.mu.Lock()
	ls := slices.Clone(m.connLs)
	m.mu.Unlock()
	for _, fn := range ls {
		go fn(orchestra)
	}
}

func (m *Manager) notifyList(list string) {
	m.mu.Lock()
	ls := slices.Clone(m.featureLs)
	m.mu.Unlock()
	for _, fn := range ls {
		go fn(list)
	}
}

func (m *Manager) notify() {
	m.mu.Lock()
	ls := slices.Clone(m.listeners)
	m.mu.Unlock()
	for _, fn := range ls {
		go fn()
	}
}

func (m *Manager) loop() {
	defer m.wg.Done()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-m.kick:
			m.Sync()
		}
	}
}

// Sync starts a session for every mcp orchestra that has none, restarts
// the ones whose backend changed and stops those no longer in the catalog.
func (m *Manager) Sync() {
	want := make(map[string]api.Orchestra)
	for _, o := range m.cfg.Store.Orchestras() {
		if o.Backend.Type == api.BackendMCP {
			want[o.Name] = o
		}
	}
	m.mu.Lock()
	if m.ctx.Err() != nil {
		m.mu.Unlock()
		return
	}
	var stop []*upstream
	for name, u := range m.upstreams {
		o, ok := want[name]
		if !ok || !sameBackend(o.Backend, u.backend) {
			stop = append(stop, u)
			delete(m.upstreams, name)
		}
	}
	for name, o := range want {
		if _, ok := m.upstreams[name]; !ok {
			u := m.newUpstream(name, o.Backend)
			m.upstreams[name] = u
			m.wg.Add(1)
			go u.run()
		}
	}
	m.mu.Unlock()
	for _, u := range stop {
		u.stop()
	}
	m.notify() // pins may have moved (an accept)
}

func sameBackend(a, b api.Backend) bool {
	return a.Type == b.Type && a.URL == b.URL && slices.Equal(a.Command, b.Command) && maps.Equal(a.Env, b.Env)
}

// Close stops every session (and process) and waits for them.
func (m *Manager) Close() error {
	m.mu.Lock()
	m.cancel()
	ups := slices.Collect(maps.Values(m.upstreams))
	m.upstreams = map[string]*upstream{}
	m.mu.Unlock()
	for _, u := range ups {
		u.stop()
	}
	m.wg.Wait()
	return nil
}

func (m *Manager) upstream(name string) *upstream {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.upstreams[name]
}

// transport builds the transport of a backend. A stdio process gets only
// the declared environment (never the kernel's); its program is found on
// the kernel's PATH.
func (m *Manager) transport(b api.Backend) (mcp.Transport, error) {
	if b.URL != "" {
		return &mcp.StreamableClientTransport{Endpoint: b.URL, HTTPClient: m.cfg.HTTPClient, DisableStandaloneSSE: false}, nil
	}
	if len(b.Command) == 0 {
		return nil, errors.New("mcp backend has neither url nor command")
	}
	cmd := exec.Command(b.Command[0], b.Command[1:]...)
	env := make([]string, 0, len(b.Env))
	for _, k := range slices.Sorted(maps.Keys(b.Env)) {
		env = append(env, k+"="+b.Env[k])
	}
	cmd.Env = env // non-nil: nothing of the kernel's environment is inherited
	cmd.Stderr = &logWriter{log: m.log, cmd: b.Command[0]}
	return &mcp.CommandTransport{Command: cmd, TerminateDuration: 2 * time.Second}, nil
}

// connect opens a session and returns it with its tools.
func (m *Manager) connect(ctx context.Context, b api.Backend, opts *mcp.ClientOptions) (*mcp.ClientSession, []*mcp.Tool, error) {
	t, err := m.transport(b)
	if err != nil {
		return nil, nil, err
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "aibos-kernel", Version: "1"}, opts)
	cctx, cancel := context.WithTimeout(ctx, m.cfg.ConnectTimeout)
	defer cancel()
	s, err := c.Connect(cctx, t, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to %s: %w", describe(b), err)
	}
	tools, err := listTools(cctx, s)
	if err != nil {
		s.Close()
		return nil, nil, fmt.Errorf("listing the tools of %s: %w", describe(b), err)
	}
	return s, tools, nil
}

func listTools(ctx context.Context, s *mcp.ClientSession) ([]*mcp.Tool, error) {
	var out []*mcp.Tool
	for t, err := range s.Tools(ctx, nil) {
		if err != nil {
			return nil, err
		}
		out = append(out, t)
		if len(out) > 1000 {
			return nil, errors.New("the server lists more than 1000 tools")
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func describe(b api.Backend) string {
	if b.URL != "" {
		return b.URL
	}
	return fmt.Sprintf("%q", b.Command)
}

// ResolveOrchestra fills an mcp orchestra's actions from its server: it
// connects (a session of its own, closed again), lists the tools and makes
// each one an action "<orchestra>.<tool>" pinned by its digest. Actions
// given in o override what the tool does not say: risk (else from the
// annotations), timeout, cost, obligations, description. An action that
// names no tool of the server is refused.
func (m *Manager) ResolveOrchestra(ctx context.Context, o *api.Orchestra) error {
	if o.Backend.Type != api.BackendMCP {
		return nil
	}
	s, tools, err := m.connect(ctx, o.Backend, nil)
	if err != nil {
		return fmt.Errorf("orchestra %q: %w; check that the server starts and answers MCP", o.Name, err)
	}
	s.Close()
	actions, err := BuildActions(o.Name, tools, o.Actions)
	if err != nil {
		return err
	}
	o.Actions = actions
	return nil
}

// BuildActions makes the actions of an orchestra from its server's tools,
// with the operator's overrides.
func BuildActions(orchestra string, tools []*mcp.Tool, overrides []api.ActionDef) ([]api.ActionDef, error) {
	byName := make(map[string]api.ActionDef, len(overrides))
	for _, a := range overrides {
		byName[a.Name] = a
	}
	out := make([]api.ActionDef, 0, len(tools))
	for _, t := range tools {
		name, err := ToolAction(orchestra, t.Name)
		if err != nil {
			return nil, err
		}
		def, err := actionFor(name, t, byName[name])
		if err != nil {
			return nil, fmt.Errorf("orchestra %q: %w", orchestra, err)
		}
		delete(byName, name)
		out = append(out, def)
	}
	if len(byName) > 0 {
		names := slices.Sorted(maps.Keys(byName))
		var have []string
		for _, a := range out {
			have = append(have, a.Name)
		}
		return nil, fmt.Errorf("orchestra %q: actions %v name no tool of the server; its tools are the actions %v", orchestra, names, have)
	}
	return out, nil
}

func actionFor(name string, t *mcp.Tool, over api.ActionDef) (api.ActionDef, error) {
	defn, digest, err := PinTool(t)
	if err != nil {
		return api.ActionDef{}, err
	}
	var full struct {
		InputSchema json.RawMessage `json:"inputSchema"`
	}
	if err := json.Unmarshal(defn, &full); err != nil {
		return api.ActionDef{}, err
	}
	sub, _, err := SubsetSchema(full.InputSchema)
	if err != nil {
		return api.ActionDef{}, fmt.Errorf("tool %q: %w", t.Name, err)
	}
	if _, err := compileMapping(t.InputSchema); err != nil {
		return api.ActionDef{}, fmt.Errorf("tool %q: %w", t.Name, err)
	}
	def := over
	def.Name = name
	if def.Description == "" {
		def.Description = t.Description
	}
	if def.Risk == "" {
		def.Risk = RiskOf(t.Annotations)
	}
	def.InputSchema = sub
	def.Path = ""
	def.MCP = &api.MCPTool{Tool: t.Name, Digest: digest, Definition: defn}
	return def, nil
}

// Accept pins the server's current definition of one tool (tool != "") or
// of all of them, for the operator's `aibos orchestra accept`: it returns
// the orchestra to put and the tools whose pin moved. With all tools,
// tools the server added are added and tools it dropped are dropped.
func (m *Manager) Accept(ctx context.Context, name, tool string) (api.Orchestra, []string, error) {
	o, ok := m.cfg.Store.Orchestra(name)
	if !ok {
		return api.Orchestra{}, nil, fmt.Errorf("no orchestra %q: list them with aibos orchestra list", name)
	}
	if o.Backend.Type != api.BackendMCP {
		return api.Orchestra{}, nil, fmt.Errorf("orchestra %q has a %s backend: only mcp orchestras pin tool definitions", name, o.Backend.Type)
	}
	s, tools, err := m.connect(ctx, o.Backend, nil)
	if err != nil {
		return api.Orchestra{}, nil, fmt.Errorf("orchestra %q: %w", name, err)
	}
	s.Close()
	current := make(map[string]api.ActionDef, len(o.Actions))
	for _, a := range o.Actions {
		if a.MCP != nil {
			current[a.MCP.Tool] = a
		}
	}
	var out []api.ActionDef
	var moved []string
	found := false
	for _, t := range tools {
		old, had := current[t.Name]
		if tool != "" && t.Name != tool {
			if had {
				out = append(out, old)
			}
			continue
		}
		found = found || t.Name == tool
		aname, err := ToolAction(name, t.Name)
		if err != nil {
			return api.Orchestra{}, nil, err
		}
		over := old
		over.Description = ""
		if had && old.MCP != nil {
			// The description came from the tool unless the operator set it.
			var d definition
			if json.Unmarshal(old.MCP.Definition, &d) == nil && d.Description != old.Description {
				over.Description = old.Description
			}
		}
		def, err := actionFor(aname, t, over)
		if err != nil {
			return api.Orchestra{}, nil, fmt.Errorf("orchestra %q: %w", name, err)
		}
		if !had || old.MCP == nil || old.MCP.Digest != def.MCP.Digest {
			moved = append(moved, t.Name)
		}
		out = append(out, def)
	}
	if tool != "" && !found {
		return api.Orchestra{}, nil, fmt.Errorf("orchestra %q: the server lists no tool %q now", name, tool)
	}
	if tool != "" {
		// Tools the server no longer lists keep their (stale) actions until
		// all are accepted.
		for _, a := range o.Actions {
			if a.MCP != nil && !slices.ContainsFunc(tools, func(t *mcp.Tool) bool { return t.Name == a.MCP.Tool }) {
				out = append(out, a)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	o.Actions = out
	o.UpdatedAt, o.Revision = time.Time{}, 0
	return o, moved, nil
}

// logWriter passes a server's stderr to the log, one entry per write.
type logWriter struct {
	log *slog.Logger
	cmd string
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.log.Debug("mcp server stderr", "command", w.cmd, "text", string(p[:min(len(p), 2048)]))
	return len(p), nil
}

// CallTool performs an action of an mcp orchestra (gateway.MCPCaller).
func (m *Manager) CallTool(ctx context.Context, c gateway.MCPCall) (json.RawMessage, error) {
	u := m.upstream(c.Orchestra)
	if u == nil {
		return nil, fmt.Errorf("%w: orchestra %q has no session on this node", ErrNotRunning, c.Orchestra)
	}
	start := time.Now()
	res, err := u.call(ctx, c)
	if mt := m.cfg.Metrics; mt != nil {
		mt.observeCall(c.Orchestra, c.Tool, time.Since(start), res, err)
	}
	if err != nil {
		return nil, err
	}
	return json.Marshal(res)
}

// Quarantine says why a pinned tool may not be called on this node now
// ("" if it may): the server's current definition differs from the pin,
// or the server no longer lists it.
func (m *Manager) Quarantine(orchestra string, pin *api.MCPTool) string {
	u := m.upstream(orchestra)
	if u == nil || pin == nil {
		return ""
	}
	return u.quarantine(pin)
}
