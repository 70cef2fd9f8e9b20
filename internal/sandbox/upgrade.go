package sandbox

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/audit"
)

// ErrUpgrade: an upgrade was refused (the new version did not pass init
// and health beside the old one); the old version keeps running.
var ErrUpgrade = errors.New("upgrade refused")

// Upgrade moves a running agent to version, a registered version with a
// module. The new version is instantiated beside the old and must pass
// its init and health check; it then takes the next tick (the old one
// finishes the tick it runs: ticks are one at a time, so none is lost or
// run twice by the swap). For the Probation window after, a crash, a
// failed health check or failing ticks roll it back to the old version
// (the tick that crashed is run again on the old one), with an audit
// record saying why. On the node the agent runs on (the route forwards
// there); the version pin is a host operation, performed on the leader.
func (r *Runtime) Upgrade(ctx context.Context, id, version string) (api.AgentRuntime, error) {
	ag, ok := r.cfg.Store.Agent(id)
	if !ok {
		return api.AgentRuntime{}, fmt.Errorf("%w: agent %q", ErrNotFound, id)
	}
	if !slices.Contains(ag.Versions, version) {
		return api.AgentRuntime{}, fmt.Errorf("%w: agent %q has no version %q (registered: %v): register it first", ErrNotFound, id, version, ag.Versions)
	}
	a := r.run(id)
	if a == nil {
		return api.AgentRuntime{}, fmt.Errorf("%w: agent %q is not running on this node: start it first", ErrNotRunning, id)
	}
	// From what should run now (the pinned version), not what the
	// instance runs: an upgrade pinned but not yet swapped in is the one
	// to roll back to.
	from := r.cfg.Store.AgentRuntime(id).RunVersion
	if from == "" {
		a.mu.Lock()
		from = a.version
		a.mu.Unlock()
	}
	if from == "" {
		from = ag.Version
	}
	if from == version {
		return r.Status(id), nil
	}
	mod, wasm, ok := r.cfg.Store.AgentModule(id, version)
	if !ok {
		return api.AgentRuntime{}, fmt.Errorf("%w: version %q of agent %q has no module: deploy one while it is the current version", ErrUpgrade, version, id)
	}
	// Beside the old one: instantiate, init and health-check the new.
	p, err := ParseProfile(ag.Sandbox)
	if err != nil {
		return api.AgentRuntime{}, fmt.Errorf("%w: %v", ErrUpgrade, err)
	}
	if err := r.probe(ctx, a, mod, wasm, p); err != nil {
		r.record(id, version, "sandbox_upgrade_refused", fmt.Sprintf("from %s to %s: %v", from, version, err))
		return api.AgentRuntime{}, fmt.Errorf("%w: version %s did not pass init and health (%v); version %s keeps running", ErrUpgrade, version, err, from)
	}
	a.mu.Lock()
	a.probation = &probation{from: from, to: version, until: time.Now().Add(r.cfg.Probation)}
	a.mu.Unlock()
	if _, herr := r.act(ctx, id, hostOp{Op: opVersion, Epoch: a.placed(), Version: version}); herr != nil {
		a.mu.Lock()
		a.probation = nil
		a.mu.Unlock()
		return api.AgentRuntime{}, fmt.Errorf("%w: version %s not pinned: %v", ErrUpgrade, version, herr)
	}
	r.record(id, version, "sandbox_upgrade", fmt.Sprintf("from %s to %s; on probation for %v", from, version, r.cfg.Probation))
	return r.Status(id), nil
}

// probe instantiates a module on the side, runs its init and health
// check, and closes it.
func (r *Runtime) probe(ctx context.Context, a *agentRun, mod api.AgentModule, wasm []byte, p Profile) error {
	ctx, cancel := context.WithTimeout(ctx, p.Timeout())
	defer cancel()
	c, err := r.compile(ctx, p.MaxPages, mod.SHA256, wasm)
	if err != nil {
		return err
	}
	probeRun := newAgentRun(r, a.id)
	a.mu.Lock()
	probeRun.epoch = a.epoch
	a.mu.Unlock()
	inst, err := r.instantiate(ctx, probeRun, c, p)
	if err != nil {
		return err
	}
	defer inst.Close(context.Background())
	probeRun.inst, probeRun.profile, probeRun.hasHealth, probeRun.version = inst, p, c.info.HasHealth, mod.Version
	if c.info.Reactor {
		if err := probeRun.call(exportInit, nil); err != nil {
			return fmt.Errorf("init: %w", err)
		}
	}
	if c.info.HasHealth {
		if err := probeRun.call(exportHealth, nil); err != nil {
			return fmt.Errorf("health: %w", err)
		}
		if probeRun.healthy != nil && !*probeRun.healthy {
			return errors.New("health: the new version reports itself unhealthy")
		}
	}
	return nil
}

// probationTick counts a tick of the version on probation, and ends the
// probation once its window has passed.
func (a *agentRun) probationTick(err error) {
	a.mu.Lock()
	pr := a.probation
	if pr == nil || a.version != pr.to {
		a.mu.Unlock()
		return
	}
	pr.ticks++
	if err != nil {
		pr.failed++
	}
	done := time.Now().After(pr.until)
	if done {
		a.probation = nil
	}
	a.mu.Unlock()
	if done {
		a.r.record(a.id, pr.to, "sandbox_upgrade_kept", fmt.Sprintf("version %s passed its probation (%d ticks, %d failed)", pr.to, pr.ticks, pr.failed))
	}
}

// failingProbation: at least 3 failed ticks, half of them or more.
func (a *agentRun) failingProbation() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	pr := a.probation
	return pr != nil && pr.failed >= 3 && 2*pr.failed >= pr.ticks
}

// rollbackIfProbation rolls an agent on probation back to its old
// version and runs t (if any) again on it; it reports whether it did.
func (a *agentRun) rollbackIfProbation(t tick, why string) bool {
	r := a.r
	a.mu.Lock()
	pr := a.probation
	if pr == nil {
		a.mu.Unlock()
		return false
	}
	a.probation = nil
	if t.kind != "" && t.kind != "health" {
		a.queue = append([]tick{t}, a.queue...)
	}
	a.mu.Unlock()
	a.closeInstance()
	ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
	defer cancel()
	if _, herr := r.act(ctx, a.id, hostOp{Op: opVersion, Epoch: a.placed(), Version: pr.from}); herr != nil {
		r.log.Error("rollback not recorded", "agent", a.id, "err", herr)
	}
	r.record(a.id, pr.from, "sandbox_rollback", fmt.Sprintf("rolled back from %s to %s: %s", pr.to, pr.from, why))
	r.log.Warn("agent rolled back", "agent", a.id, "from", pr.to, "to", pr.from, "why", why)
	a.mu.Lock()
	more := len(a.queue) > 0 && !a.scheduled
	if more {
		a.scheduled = true
	}
	a.mu.Unlock()
	if more {
		r.schedule(a)
	}
	return true
}

// record appends an audit record of the runtime's own acts.
func (r *Runtime) record(agent, version, kind, reason string) {
	if r.cfg.Audit == nil {
		return
	}
	r.cfg.Audit.Append(&audit.Record{Time: r.cfg.Now(), Node: r.cfg.Node, Kind: kind, Agent: agent, AgentVersion: version,
		Subject: api.EntityTypeAgent + ":" + agent, Reason: reason, Origin: Origin})
}

// pinOnStart pins a started agent to its current version (if it has a
// module), so that registering a new version does not change what runs:
// that takes an upgrade.
func (r *Runtime) pinOnStart(ctx context.Context, id, desired string) error {
	if st := r.cfg.Store.AgentRuntime(id); desired != api.SandboxRun || st.RunVersion != "" && st.Placement != nil {
		return nil
	}
	ag, _ := r.cfg.Store.Agent(id)
	if _, _, ok := r.cfg.Store.AgentModule(id, ag.Version); !ok {
		return nil
	}
	_, err := r.cfg.Store.SetAgentRunVersion(ctx, id, ag.Version, r.cfg.Now())
	return err
}
