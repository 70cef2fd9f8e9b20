package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	wapi "github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

	"github.com/aibos/kernel/api"
)

// tick is one event for an agent. kind "health" is the kernel's own: it
// calls the health export, not the tick handler.
type tick struct {
	kind    string
	timer   string
	due     time.Time // of a timer tick: when it was due (replicated)
	message []byte
}

// agentRun is one agent that runs on this node: its queue of ticks, its
// instance (nil while parked), its timers and its crash count. Ticks run
// one at a time: scheduled is true while the agent is in the run queue or
// running, and only the worker that holds it runs its ticks.
type agentRun struct {
	r  *Runtime
	id string

	mu         sync.Mutex
	queue      []tick                  // guarded by mu
	scheduled  bool                    // guarded by mu
	running    bool                    // a tick is executing; guarded by mu
	cancel     context.CancelCauseFunc // of the running tick; guarded by mu
	inst       wapi.Module             // nil: parked or not started; guarded by mu
	version    string                  // of inst
	sha        string                  // of inst's module
	profile    Profile                 // of inst
	hasHealth  bool
	lastUsed   time.Time
	timers     map[string]*time.Timer // the guest's, by name; guarded by mu
	restart    *time.Timer            // the runtime's restart after a crash, apart from the guest's names; guarded by mu
	killed     *api.KillSwitch        // guarded by mu
	stopped    bool                   // guarded by mu
	failed     bool                   // guarded by mu
	restarts   int                    // crashes in a row; guarded by mu
	state      string
	lastErr    string
	healthy    *bool
	ticks      uint64
	seq        uint64
	lastCall   time.Duration // how long the last call into the guest took
	lastHealth time.Time
	epoch      uint64 // of its placement here; guarded by mu
	probation  *probation
	// memBytes is the instance's memory size after its last call: read
	// there, on the worker, since the guest may grow it while it runs.
	memBytes uint64
}

// probation is an upgrade on trial: from the old version to the new one,
// until a time; ticks and failed ticks counted.
type probation struct {
	from, to      string
	until         time.Time
	ticks, failed int
}

// healthDue reports whether a live, idle instance with a health export is
// due for a check.
func (a *agentRun) healthDue(now time.Time, every time.Duration) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.inst != nil && a.hasHealth && !a.running && !a.scheduled && now.Sub(a.lastHealth) >= every
}

// placed is the epoch of the agent's placement on this node.
func (a *agentRun) placed() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.epoch
}

func newAgentRun(r *Runtime, id string) *agentRun {
	return &agentRun{r: r, id: id, timers: map[string]*time.Timer{}}
}

// Errors of enqueue.
var (
	errKilled    = errors.New("a kill switch covers the agent")
	errFailed    = errors.New("the agent failed after repeated crashes: start it again")
	errQueueFull = errors.New("the agent's tick queue is full")
)

func (a *agentRun) enqueue(t tick) error {
	a.mu.Lock()
	switch {
	case a.stopped:
		a.mu.Unlock()
		return errStopped
	case a.killed != nil:
		a.mu.Unlock()
		return errKilled
	case a.failed && t.kind != "start":
		a.mu.Unlock()
		return errFailed
	case len(a.queue) >= a.r.cfg.QueueLen:
		a.mu.Unlock()
		return errQueueFull
	}
	a.queue = append(a.queue, t)
	sched := !a.scheduled
	a.scheduled = true
	a.mu.Unlock()
	if sched {
		a.r.schedule(a)
	}
	return nil
}

func (r *Runtime) schedule(a *agentRun) {
	select {
	case r.runq <- a:
	default:
		// The queue of agents is full: wait for a worker without holding
		// up the caller (a timer, a host call of another agent).
		go func() {
			select {
			case r.runq <- a:
			case <-r.ctx.Done():
			}
		}()
	}
}

// runOne runs the agent's next tick on the calling worker.
func (a *agentRun) runOne() {
	a.mu.Lock()
	if len(a.queue) == 0 || a.stopped || a.killed != nil {
		a.queue, a.scheduled = nil, false
		a.mu.Unlock()
		return
	}
	t := a.queue[0]
	a.queue = a.queue[1:]
	a.mu.Unlock()

	a.execute(t)

	a.mu.Lock()
	more := len(a.queue) > 0 && !a.stopped && a.killed == nil
	a.scheduled = more
	a.mu.Unlock()
	if more {
		a.r.schedule(a)
	}
}

// execute runs one tick: instantiate if needed, then the guest's handler
// under the profile's deadline.
func (a *agentRun) execute(t tick) {
	r := a.r
	if t.kind == "start" {
		a.mu.Lock()
		a.failed = false
		a.mu.Unlock()
	}
	fresh, err := a.ensureInstance()
	if err != nil {
		if a.rollbackIfProbation(t, "the new version did not start: "+err.Error()) {
			return
		}
		if !errors.Is(err, errNoModule) {
			a.crashed(err)
		}
		return
	}
	if t.kind == "health" {
		if !fresh {
			a.health()
		}
		return
	}
	a.mu.Lock()
	a.seq++
	payload, _ := json.Marshal(tickWire{Kind: t.kind, Seq: a.seq, Version: a.version, Timer: t.timer, Message: rawOrNil(t.message), Config: a.profile.Config})
	a.mu.Unlock()
	err = a.call(exportTick, payload)
	if t.kind == "timer" {
		// Delivered: retire it from the replicated state (unless set
		// again meanwhile). Should this node die first, the node the
		// agent moves to fires it again: at least once.
		a.timerFired(t.timer, t.due)
	}
	a.probationTick(err)
	if err == nil {
		a.mu.Lock()
		a.ticks++
		a.restarts = 0
		a.mu.Unlock()
		return
	}
	var ge *guestError
	if errors.As(err, &ge) {
		r.log.Warn("agent tick failed", "agent", a.id, "tick", t.kind, "err", ge)
		if a.failingProbation() {
			a.rollbackIfProbation(tick{}, "ticks failing on the new version: "+ge.Error())
		}
		return
	}
	if a.rollbackIfProbation(t, "the new version crashed: "+err.Error()) {
		return
	}
	a.crashed(err)
}

type tickWire struct {
	Kind    string          `json:"kind"`
	Seq     uint64          `json:"seq"`
	Version string          `json:"version"`
	Timer   string          `json:"timer,omitempty"`
	Message json.RawMessage `json:"message,omitempty"`
	Config  map[string]any  `json:"config,omitempty"`
}

func rawOrNil(b []byte) json.RawMessage {
	if len(b) == 0 || !json.Valid(b) {
		if len(b) == 0 {
			return nil
		}
		q, _ := json.Marshal(string(b))
		return q
	}
	return b
}

// guestError: the guest's handler returned non-zero (it reported an
// error); the instance is fine.
type guestError struct{ code uint32 }

func (e *guestError) Error() string { return fmt.Sprintf("the tick handler returned %d", e.code) }

var errNoModule = errors.New("no module for the agent's version")

// ensureInstance instantiates the agent's module for its current version
// if it has no live instance (first start, parked, crashed, upgraded).
func (a *agentRun) ensureInstance() (fresh bool, err error) {
	r := a.r
	ag, ok := r.cfg.Store.Agent(a.id)
	if !ok || ag.State != api.AgentActive {
		return false, fmt.Errorf("agent %q is not active", a.id)
	}
	version := ag.Version
	if v := r.cfg.Store.AgentRuntime(a.id).RunVersion; v != "" {
		version = v // pinned by an upgrade or a rollback
	}
	a.mu.Lock()
	live := a.inst != nil && !a.inst.IsClosed() && a.version == version
	a.mu.Unlock()
	if live {
		return false, nil
	}
	a.closeInstance()
	mod, wasm, ok := r.cfg.Store.AgentModule(a.id, version)
	if !ok {
		r.report(a, api.RuntimeNoModule, fmt.Sprintf("version %q has no module: deploy one with aibos agent deploy %s --module FILE.wasm", version, a.id))
		return false, errNoModule
	}
	p, err := ParseProfile(ag.Sandbox)
	if err != nil {
		return false, err
	}
	// Compiling is the kernel's work (once per module per node, ahead if
	// prewarmed), bounded by the compile budget, not by the guest's tick.
	c, err := r.compile(r.ctx, p.MaxPages, mod.SHA256, wasm)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(r.ctx, p.Timeout())
	defer cancel()
	inst, err := r.instantiate(ctx, a, c, p)
	if err != nil {
		return false, err
	}
	a.mu.Lock()
	a.inst, a.version, a.sha, a.profile, a.hasHealth = inst, version, mod.SHA256, p, c.info.HasHealth
	a.lastUsed = time.Now()
	prev := a.state
	a.mu.Unlock()
	if c.info.Reactor {
		if err := a.call(exportInit, nil); err != nil {
			return false, fmt.Errorf("_initialize (the guest's init and main): %w", err)
		}
	}
	a.health()
	if prev != api.RuntimeRunning {
		r.report(a, api.RuntimeRunning, "")
	}
	return true, nil
}

// instantiate makes an instance with no filesystem, no environment and no
// arguments; its clocks are the kernel's and its sleeps return at once.
func (r *Runtime) instantiate(ctx context.Context, a *agentRun, c *compiledModule, p Profile) (wapi.Module, error) {
	now := r.cfg.Now
	out := &logWriter{log: r.log, agent: a.id}
	cfg := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions(). // a reactor: _initialize is called by us, under a deadline
		WithStdout(out).WithStderr(out).
		WithWalltime(func() (int64, int32) {
			t := now()
			return t.Unix(), int32(t.Nanosecond())
		}, sys.ClockResolution(1000)).
		WithNanosleep(func(int64) {})
	inst, err := r.engine(p.MaxPages).InstantiateModule(withCall(ctx, &callState{a: a, max: p.MaxHostCalls}), c.cm, cfg)
	if err != nil {
		return nil, fmt.Errorf("instantiate: %w", err)
	}
	return inst, nil
}

// call runs an export of the live instance under a new tick deadline.
// payload, if any, is left in the result buffer and its length passed.
func (a *agentRun) call(export string, payload []byte) error {
	a.mu.Lock()
	inst := a.inst
	p := a.profile
	if inst == nil {
		a.mu.Unlock()
		return errors.New("no instance")
	}
	ctx, cancel := context.WithCancelCause(a.r.ctx)
	ctx, cancelT := context.WithTimeout(ctx, p.Timeout())
	a.cancel, a.running = cancel, true
	a.mu.Unlock()
	var start time.Time
	defer func() {
		cancelT()
		cancel(nil)
		var mem uint64
		if m := inst.Memory(); m != nil && !inst.IsClosed() {
			mem = uint64(m.Size())
		}
		a.mu.Lock()
		a.cancel, a.running, a.lastUsed, a.lastCall, a.memBytes = nil, false, time.Now(), time.Since(start), mem
		a.mu.Unlock()
	}()
	cs := &callState{a: a, max: p.MaxHostCalls, result: payload}
	fn := inst.ExportedFunction(export)
	if fn == nil {
		return fmt.Errorf("export %q is missing", export)
	}
	var params []uint64
	if export == exportTick {
		params = []uint64{uint64(len(payload))}
	}
	start = time.Now()
	res, err := fn.Call(withCall(ctx, cs), params...)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) && !errors.Is(cause, context.DeadlineExceeded) {
			return fmt.Errorf("stopped: %w", cause)
		}
		var ee *sys.ExitError
		if errors.As(err, &ee) {
			switch ee.ExitCode() {
			case sys.ExitCodeDeadlineExceeded:
				return fmt.Errorf("%s exceeded its deadline of %d ms (sandbox.timeout_ms) after %v: the instance was stopped", export, p.TimeoutMS, time.Since(start).Round(time.Millisecond))
			case sys.ExitCodeContextCanceled:
				return fmt.Errorf("%s was cancelled", export)
			}
			return fmt.Errorf("%s: the guest exited with code %d (a Go panic or os.Exit; see the node's log for its output)", export, ee.ExitCode())
		}
		msg := err.Error()
		if len(msg) > 1024 {
			msg = msg[:1024] + "..."
		}
		return fmt.Errorf("%s trapped (a Go runtime fatal error, such as out of memory under sandbox.max_pages, traps too): %s", export, msg)
	}
	if export == exportTick && len(res) == 1 && uint32(res[0]) != 0 {
		return &guestError{code: uint32(res[0])}
	}
	if export == exportHealth && len(res) == 1 {
		ok := uint32(res[0]) == 0
		a.mu.Lock()
		a.healthy = &ok
		a.mu.Unlock()
	}
	return nil
}

func (a *agentRun) health() {
	a.mu.Lock()
	has := a.hasHealth
	a.mu.Unlock()
	if !has {
		return
	}
	a.mu.Lock()
	a.lastHealth = time.Now()
	a.mu.Unlock()
	if err := a.call(exportHealth, nil); err != nil {
		if a.rollbackIfProbation(tick{}, "the new version's health check failed: "+err.Error()) {
			return
		}
		a.crashed(err)
		return
	}
	a.mu.Lock()
	unhealthy := a.healthy != nil && !*a.healthy
	a.mu.Unlock()
	if unhealthy {
		a.rollbackIfProbation(tick{}, "the new version reports itself unhealthy")
	}
}

// crashed closes the instance and restarts it after a backoff, or fails
// the agent after MaxRestarts crashes in a row. A kill switch or a stop
// is not a crash.
func (a *agentRun) crashed(err error) {
	r := a.r
	a.closeInstance()
	a.mu.Lock()
	if a.stopped || a.killed != nil {
		a.mu.Unlock()
		return
	}
	a.restarts++
	n := a.restarts
	fail := n > r.cfg.MaxRestarts
	if fail {
		a.failed = true
		a.queue = nil
	}
	a.mu.Unlock()
	r.log.Warn("agent crashed", "agent", a.id, "restarts", n, "err", err)
	if fail {
		r.report(a, api.RuntimeFailed, fmt.Sprintf("crashed %d times in a row; last: %v (fix and deploy a module, then aibos agent start %s)", n, err, a.id))
		return
	}
	delay := min(r.cfg.Backoff<<(n-1), r.cfg.MaxBackoff)
	r.report(a, api.RuntimeBackoff, err.Error())
	a.mu.Lock()
	if a.restart != nil {
		a.restart.Stop()
	}
	a.restart = time.AfterFunc(delay, func() { a.enqueue(tick{kind: "start"}) })
	a.mu.Unlock()
}

func (a *agentRun) closeInstance() {
	a.mu.Lock()
	inst := a.inst
	a.inst = nil
	a.mu.Unlock()
	if inst != nil {
		inst.Close(context.Background())
	}
}

// kill stops a running tick at once and refuses new ones until lifted.
func (a *agentRun) kill(k *api.KillSwitch) {
	a.mu.Lock()
	if a.killed != nil {
		a.mu.Unlock()
		return
	}
	kk := *k
	a.killed = &kk
	a.queue = nil
	if a.cancel != nil {
		a.cancel(fmt.Errorf("kill switch %s (%s %s): %s", k.ID, k.Scope, k.Target, k.Reason))
	}
	a.mu.Unlock()
	a.closeInstance()
	a.r.report(a, api.RuntimeKilled, fmt.Sprintf("kill switch %s: %s", k.ID, k.Reason))
}

// unkill lifts a kill; it reports whether the agent was killed.
func (a *agentRun) unkill() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	was := a.killed != nil
	a.killed = nil
	if was {
		a.state = ""
	}
	return was
}

// shutdown stops the agent on this node: the running tick is cancelled,
// timers stopped, the instance closed.
func (a *agentRun) shutdown(cause error) {
	a.mu.Lock()
	a.stopped = true
	a.queue = nil
	if a.cancel != nil {
		a.cancel(cause)
	}
	for _, t := range a.timers {
		t.Stop()
	}
	a.timers = map[string]*time.Timer{}
	if a.restart != nil {
		a.restart.Stop()
		a.restart = nil
	}
	a.mu.Unlock()
	a.closeInstance()
}

func (a *agentRun) parkIfIdle(now time.Time, after time.Duration) {
	a.mu.Lock()
	idle := a.inst != nil && !a.running && !a.scheduled && now.Sub(a.lastUsed) >= after
	var inst wapi.Module
	if idle {
		inst, a.inst = a.inst, nil
	}
	a.mu.Unlock()
	if inst != nil {
		inst.Close(context.Background())
	}
}

// live fills in this node's view of the agent.
func (a *agentRun) live(st *api.AgentRuntime) {
	a.mu.Lock()
	defer a.mu.Unlock()
	st.Healthy, st.Ticks, st.Epoch = a.healthy, a.ticks, a.epoch
	st.Parked = a.inst == nil
	if a.inst != nil {
		st.MemoryBytes = a.memBytes
	}
	if a.state != "" {
		// This node's view is newer than its last report's commit.
		st.State, st.Restarts, st.LastError = a.state, a.restarts, a.lastErr
	}
}

// setTimer sets (or moves) a named timer: in the replicated state first
// (bounded there: MaxTimers per agent), then armed here.
func (a *agentRun) setTimer(ctx context.Context, name string, delay time.Duration) *hostError {
	due := a.r.cfg.Now().Add(delay)
	if _, herr := a.r.act(ctx, a.id, hostOp{Op: opTimerSet, Epoch: a.placed(), Name: name, Due: due}); herr != nil {
		return herr
	}
	a.arm(name, due)
	return nil
}

func (a *agentRun) cancelTimer(ctx context.Context, name string) *hostError {
	if _, herr := a.r.act(ctx, a.id, hostOp{Op: opTimerCancel, Epoch: a.placed(), Name: name}); herr != nil {
		return herr
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if t, ok := a.timers[name]; ok {
		t.Stop()
		delete(a.timers, name)
	}
	return nil
}

// arm schedules the timer tick of name at due (at once if past), in place
// of any armed one of that name.
func (a *agentRun) arm(name string, due time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return
	}
	if old, ok := a.timers[name]; ok {
		old.Stop()
	}
	var t *time.Timer
	t = time.AfterFunc(max(due.Sub(a.r.cfg.Now()), 0), func() {
		a.mu.Lock()
		if a.timers[name] == t {
			delete(a.timers, name)
		}
		a.mu.Unlock()
		a.enqueue(tick{kind: "timer", timer: name, due: due})
	})
	a.timers[name] = t
}

// armTimers arms the agent's replicated timers: where it starts (first,
// or moved here from a node that died), due ones fire at once.
func (a *agentRun) armTimers() {
	for name, due := range a.r.cfg.Store.AgentTimers(a.id) {
		a.arm(name, due)
	}
}

func (a *agentRun) timerFired(name string, due time.Time) {
	ctx, cancel := context.WithTimeout(a.r.ctx, 5*time.Second)
	defer cancel()
	if _, herr := a.r.act(ctx, a.id, hostOp{Op: opTimerFired, Epoch: a.placed(), Name: name, Due: due}); herr != nil {
		a.r.log.Warn("fired timer not retired (it may fire again)", "agent", a.id, "timer", name, "err", herr)
	}
}

// memoryCopy is a copy of the live instance's memory (nil if parked).
func (a *agentRun) memoryCopy() []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.inst == nil || a.running {
		return nil
	}
	m := a.inst.Memory()
	b, _ := m.Read(0, m.Size())
	return append([]byte(nil), b...)
}
