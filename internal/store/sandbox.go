package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"
	"unicode/utf8"

	"github.com/aibos/kernel/api"
)

// Sandbox command types: the modules, run state and key/value state of
// agents that run in the kernel's WebAssembly sandbox (internal/sandbox).
const (
	cmdSandboxModulePut = "sandbox.module.put"
	cmdSandboxRunSet    = "sandbox.run.set"
	cmdSandboxStatusSet = "sandbox.status.set"
	cmdSandboxKVPut     = "sandbox.kv.put"
	cmdSandboxRunVer    = "sandbox.version.set"
	cmdSandboxPlace     = "sandbox.place"
	cmdSandboxTimer     = "sandbox.timer.set"
)

// ChangeSandbox is the Change kind of a sandbox command; Change.Agent
// names the agent.
const ChangeSandbox = "sandbox"

// Bounds of the sandbox state, checked in Apply (so on every replica).
const (
	MaxModuleBytes  = 8 << 20 // one module
	ModulesKept     = 2       // per agent: the newest ones
	MaxKVKeys       = 256     // per agent
	MaxKVKeyBytes   = 256
	MaxKVValueBytes = 64 << 10
	MaxKVBytes      = 1 << 20 // per agent: keys and values
)

// ErrQuota: a key/value write would exceed the agent's quota.
var ErrQuota = errors.New("store: quota exceeded")

type sandboxModulePutCmd struct {
	Agent   string    `json:"agent"`
	Version string    `json:"version"`
	SHA256  string    `json:"sha256"`
	Wasm    []byte    `json:"wasm"`
	Time    time.Time `json:"time"`
}

type sandboxRunSetCmd struct {
	Agent   string    `json:"agent"`
	Desired string    `json:"desired"`
	Time    time.Time `json:"time"`
}

// sandboxStatusSetCmd is what the node running the agent reports.
type sandboxStatusSetCmd struct {
	Agent     string    `json:"agent"`
	State     string    `json:"state"`
	Node      string    `json:"node"`
	Epoch     uint64    `json:"epoch,omitempty"`
	Version   string    `json:"version,omitempty"`
	Module    string    `json:"module,omitempty"`
	Restarts  int       `json:"restarts"`
	LastError string    `json:"last_error,omitempty"`
	Time      time.Time `json:"time"`
}

// sandboxRunVersionCmd pins the version the sandbox runs (an upgrade or
// its rollback); empty follows the agent's current version.
type sandboxRunVersionCmd struct {
	Agent   string    `json:"agent"`
	Version string    `json:"version"`
	Time    time.Time `json:"time"`
}

// sandboxKVPutCmd writes a key of an agent's state. Epoch, if not zero,
// is the placement epoch the writer runs the agent in: apply refuses the
// write unless it is the agent's current one (the fence against a node
// the agent was moved away from). Entries from before placements have
// none.
type sandboxKVPutCmd struct {
	Agent  string `json:"agent"`
	Epoch  uint64 `json:"epoch,omitempty"`
	Key    string `json:"key"`
	Value  []byte `json:"value,omitempty"`
	Delete bool   `json:"delete,omitempty"`
}

// sandboxModule is a stored module: its description and its bytes.
type sandboxModule struct {
	api.AgentModule
	Wasm []byte `json:"wasm"`
}

// sandboxRecord is one agent's sandbox state, in the state and in
// snapshots. Immutable once stored: a command stores a new record.
type sandboxRecord struct {
	Agent   string            `json:"agent"`
	Modules []*sandboxModule  `json:"modules,omitempty"` // oldest first, at most ModulesKept
	Desired string            `json:"desired,omitempty"`
	Run     string            `json:"run,omitempty"` // the version to run; empty: the agent's current one
	Status  api.AgentRuntime  `json:"status"`
	KV      map[string][]byte `json:"kv,omitempty"`
	// Place is where the leader placed the agent (placement.go).
	Place placement `json:"place,omitzero"`
	// Timers are the agent's pending timers, by name: when each is due.
	Timers map[string]time.Time `json:"timers,omitempty"`
}

func (r *sandboxRecord) kvBytes() int {
	n := 0
	for k, v := range r.KV {
		n += len(k) + len(v)
	}
	return n
}

func (r *sandboxRecord) clone() *sandboxRecord {
	c := *r
	c.Modules = slices.Clone(r.Modules)
	c.KV = maps.Clone(r.KV)
	c.Timers = maps.Clone(r.Timers)
	return &c
}

// ValidateKVKey checks a key of an agent's key/value state.
func ValidateKVKey(k string) error {
	switch {
	case k == "":
		return errors.New("empty key")
	case len(k) > MaxKVKeyBytes:
		return fmt.Errorf("key is %d bytes; at most %d", len(k), MaxKVKeyBytes)
	case !utf8.ValidString(k):
		return errors.New("key is not valid UTF-8")
	}
	return nil
}

// applySandboxModulePut stores a module of the agent's current version;
// the newest ModulesKept are kept.
func (f *fsm) applySandboxModulePut(c command, p *sandboxModulePutCmd) (Change, applyResult, error) {
	if len(p.Wasm) == 0 || len(p.Wasm) > MaxModuleBytes {
		return bad(c, fmt.Errorf("module is %d bytes; at most %d", len(p.Wasm), MaxModuleBytes))
	}
	sum := sha256.Sum256(p.Wasm)
	if hex.EncodeToString(sum[:]) != p.SHA256 {
		return bad(c, errors.New("sha256 does not match the module"))
	}
	return f.sandboxChange(p.Agent, func(r *sandboxRecord) error {
		a := f.st.agents[p.Agent]
		if a.Agent.Version != p.Version {
			return fmt.Errorf("%w: agent %q is at version %q, not %q", ErrAgentConflict, p.Agent, a.Agent.Version, p.Version)
		}
		r.Modules = slices.DeleteFunc(r.Modules, func(m *sandboxModule) bool {
			return m.Version == p.Version && m.SHA256 == p.SHA256
		})
		m := &sandboxModule{AgentModule: api.AgentModule{
			Agent: p.Agent, Version: p.Version, SHA256: p.SHA256, Size: len(p.Wasm),
			DeployedAt: p.Time, Revision: f.st.revision + 1,
		}, Wasm: p.Wasm}
		r.Modules = append(r.Modules, m)
		if n := len(r.Modules); n > ModulesKept {
			r.Modules = r.Modules[n-ModulesKept:]
		}
		return nil
	})
}

// applySandboxRunSet records whether an agent should run or stop.
func (f *fsm) applySandboxRunSet(c command, p *sandboxRunSetCmd) (Change, applyResult, error) {
	if p.Desired != api.SandboxRun && p.Desired != api.SandboxStop {
		return bad(c, fmt.Errorf("desired state %q: want %q or %q", p.Desired, api.SandboxRun, api.SandboxStop))
	}
	return f.sandboxChange(p.Agent, func(r *sandboxRecord) error {
		r.Desired = p.Desired
		if p.Desired == api.SandboxRun {
			// A start gives a failed agent a fresh count.
			r.Status.Restarts, r.Status.LastError = 0, ""
		} else {
			// A stopped agent is on no node and has no timers; its epoch
			// is kept, so the next placement's is higher.
			r.Place.Node, r.Timers = "", nil
		}
		r.Status.UpdatedAt = p.Time
		return nil
	})
}

// applySandboxStatusSet records what the node running an agent reports.
func (f *fsm) applySandboxStatusSet(_ command, p *sandboxStatusSetCmd) (Change, applyResult, error) {
	return f.sandboxChange(p.Agent, func(r *sandboxRecord) error {
		// A report from an older epoch (a deposed leader's "stopped",
		// applied after the new leader's "running") is stale: keep the
		// newer one. Decided here, so every replica agrees.
		// So is one of an epoch the agent was placed away from.
		if p.Epoch < r.Status.Epoch || p.Epoch < r.Place.Epoch {
			return nil
		}
		r.Status = api.AgentRuntime{
			Agent: p.Agent, State: p.State, Node: p.Node, Epoch: p.Epoch, Version: p.Version, Module: p.Module,
			Restarts: p.Restarts, LastError: p.LastError, UpdatedAt: p.Time,
		}
		return nil
	})
}

// applySandboxRunVersion pins the version the sandbox runs, which must
// have a module; empty follows the agent's current version.
func (f *fsm) applySandboxRunVersion(_ command, p *sandboxRunVersionCmd) (Change, applyResult, error) {
	return f.sandboxChange(p.Agent, func(r *sandboxRecord) error {
		if p.Version != "" && !slices.ContainsFunc(r.Modules, func(m *sandboxModule) bool { return m.Version == p.Version }) {
			return fmt.Errorf("%w: agent %q has no module for version %q (deploy one first)", ErrAgentConflict, p.Agent, p.Version)
		}
		r.Run = p.Version
		r.Status.UpdatedAt = p.Time
		return nil
	})
}

// applySandboxKVPut writes or deletes a key of an agent's state, within
// its quota.
func (f *fsm) applySandboxKVPut(c command, p *sandboxKVPutCmd) (Change, applyResult, error) {
	if err := ValidateKVKey(p.Key); err != nil {
		return bad(c, err)
	}
	if len(p.Value) > MaxKVValueBytes {
		return fail(fmt.Errorf("%w: value of %q is %d bytes; at most %d", ErrQuota, p.Key, len(p.Value), MaxKVValueBytes))
	}
	return f.sandboxChange(p.Agent, func(r *sandboxRecord) error {
		if p.Epoch != 0 {
			if err := r.fence(p.Epoch); err != nil {
				return err
			}
		}
		if p.Delete {
			delete(r.KV, p.Key)
			return nil
		}
		old, had := r.KV[p.Key]
		if !had && len(r.KV) >= MaxKVKeys {
			return fmt.Errorf("%w: agent %q has %d keys; at most %d (delete some)", ErrQuota, p.Agent, len(r.KV), MaxKVKeys)
		}
		size := r.kvBytes() - len(old) + len(p.Value)
		if !had {
			size += len(p.Key)
		}
		if size > MaxKVBytes {
			return fmt.Errorf("%w: agent %q would hold %d bytes of state; at most %d (delete some)", ErrQuota, p.Agent, size, MaxKVBytes)
		}
		if r.KV == nil {
			r.KV = map[string][]byte{}
		}
		r.KV[p.Key] = p.Value
		return nil
	})
}

// sandboxChange is the part every sandbox command shares: under the lock,
// mutate a copy of the live agent's record (a new one if it has none) and
// store the copy at the next revision, or change nothing if mutate refuses.
func (f *fsm) sandboxChange(agent string, mutate func(r *sandboxRecord) error) (Change, applyResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.liveAgentLocked(agent); err != nil {
		return fail(err)
	}
	r := f.st.sandbox[agent]
	if r == nil {
		r = &sandboxRecord{Agent: agent}
	}
	r = r.clone()
	if err := mutate(r); err != nil {
		return fail(err)
	}
	f.st.revision++
	f.st.sandbox[agent] = r
	return Change{Revision: f.st.revision, Kind: ChangeSandbox, Agent: agent}, applyResult{Revision: f.st.revision}, nil
}

// DeployModule stores wasm as the module of the agent's current version
// (the proposer has validated it). Leader only.
func (s *Store) DeployModule(ctx context.Context, agent, version string, wasm []byte, now time.Time) (api.AgentModule, error) {
	sum := sha256.Sum256(wasm)
	h := hex.EncodeToString(sum[:])
	if _, err := s.propose(ctx, cmdSandboxModulePut, sandboxModulePutCmd{Agent: agent, Version: version, SHA256: h, Wasm: wasm, Time: now}); err != nil {
		return api.AgentModule{}, err
	}
	for _, m := range s.AgentModules(agent) {
		if m.SHA256 == h && m.Version == version {
			return m, nil
		}
	}
	return api.AgentModule{}, fmt.Errorf("%w: module of agent %q was replaced concurrently", ErrAgentConflict, agent)
}

// SetAgentRun records that an agent should run or stop. Leader only.
func (s *Store) SetAgentRun(ctx context.Context, agent, desired string, now time.Time) (uint64, error) {
	res, err := s.propose(ctx, cmdSandboxRunSet, sandboxRunSetCmd{Agent: agent, Desired: desired, Time: now})
	if err != nil {
		return 0, err
	}
	return res.Revision, nil
}

// SetAgentStatus records what the node running an agent observes. Leader
// only.
func (s *Store) SetAgentStatus(ctx context.Context, st api.AgentRuntime) (uint64, error) {
	res, err := s.propose(ctx, cmdSandboxStatusSet, sandboxStatusSetCmd{
		Agent: st.Agent, State: st.State, Node: st.Node, Epoch: st.Epoch, Version: st.Version, Module: st.Module,
		Restarts: st.Restarts, LastError: st.LastError, Time: st.UpdatedAt,
	})
	if err != nil {
		return 0, err
	}
	return res.Revision, nil
}

// SetAgentRunVersion pins the version the sandbox runs for an agent
// (which must have a module); empty follows its current version. Leader
// only.
func (s *Store) SetAgentRunVersion(ctx context.Context, agent, version string, now time.Time) (uint64, error) {
	res, err := s.propose(ctx, cmdSandboxRunVer, sandboxRunVersionCmd{Agent: agent, Version: version, Time: now})
	if err != nil {
		return 0, err
	}
	return res.Revision, nil
}

// PutAgentKV writes (or, with del, deletes) a key of an agent's state,
// for the agent running in placement epoch (ErrStaleEpoch unless it is
// the current one when the write applies). Leader only.
func (s *Store) PutAgentKV(ctx context.Context, agent string, epoch uint64, key string, value []byte, del bool) (uint64, error) {
	res, err := s.propose(ctx, cmdSandboxKVPut, sandboxKVPutCmd{Agent: agent, Epoch: epoch, Key: key, Value: value, Delete: del})
	if err != nil {
		return 0, err
	}
	return res.Revision, nil
}

func (s *Store) sandboxRecord(agent string) *sandboxRecord {
	s.fsm.mu.RLock()
	defer s.fsm.mu.RUnlock()
	return s.fsm.st.sandbox[agent]
}

// AgentModules lists an agent's stored modules, oldest first.
func (s *Store) AgentModules(agent string) []api.AgentModule {
	r := s.sandboxRecord(agent)
	if r == nil {
		return nil
	}
	out := make([]api.AgentModule, len(r.Modules))
	for i, m := range r.Modules {
		out[i] = m.AgentModule
	}
	return out
}

// AgentModule is the newest module stored for an agent's version, with
// its bytes (shared: do not modify).
func (s *Store) AgentModule(agent, version string) (api.AgentModule, []byte, bool) {
	r := s.sandboxRecord(agent)
	if r == nil {
		return api.AgentModule{}, nil, false
	}
	for i := len(r.Modules) - 1; i >= 0; i-- {
		if m := r.Modules[i]; m.Version == version {
			return m.AgentModule, m.Wasm, true
		}
	}
	return api.AgentModule{}, nil, false
}

// AgentRuntime is an agent's replicated run state: desired, and as last
// reported.
func (s *Store) AgentRuntime(agent string) api.AgentRuntime {
	r := s.sandboxRecord(agent)
	if r == nil {
		return api.AgentRuntime{Agent: agent, Desired: api.SandboxStop, State: api.RuntimeStopped}
	}
	out := r.Status
	out.Agent, out.Desired, out.RunVersion = agent, r.Desired, r.Run
	if out.Desired == "" {
		out.Desired = api.SandboxStop
	}
	if out.State == "" {
		out.State = api.RuntimeStopped
	}
	out.KVKeys, out.KVBytes, out.Timers = len(r.KV), r.kvBytes(), len(r.Timers)
	if r.Place.Node != "" {
		out.Placement = &api.AgentPlacement{Agent: agent, Node: r.Place.Node, Epoch: r.Place.Epoch, PlacedAt: r.Place.Time}
	}
	for _, m := range r.Modules {
		out.Modules = append(out.Modules, m.AgentModule)
	}
	return out
}

// AgentKV reads a key of an agent's state (shared: do not modify).
func (s *Store) AgentKV(agent, key string) ([]byte, bool) {
	r := s.sandboxRecord(agent)
	if r == nil {
		return nil, false
	}
	v, ok := r.KV[key]
	return v, ok
}

// SandboxAgents lists the agents asked to run, by id.
func (s *Store) SandboxAgents() []string {
	s.fsm.mu.RLock()
	var out []string
	for id, r := range s.fsm.st.sandbox {
		if r.Desired == api.SandboxRun {
			out = append(out, id)
		}
	}
	s.fsm.mu.RUnlock()
	sort.Strings(out)
	return out
}

// restoreSandbox adds a sandbox record to st, checking it as Apply would
// have made it.
func restoreSandbox(st *state, r *sandboxRecord) error {
	if r == nil {
		return errors.New("want a sandbox record")
	}
	if _, ok := st.agents[r.Agent]; !ok {
		return fmt.Errorf("sandbox record of unknown agent %q", r.Agent)
	}
	if _, dup := st.sandbox[r.Agent]; dup {
		return fmt.Errorf("sandbox record of agent %q appears twice", r.Agent)
	}
	if len(r.Modules) > ModulesKept {
		return fmt.Errorf("agent %q: %d modules; at most %d", r.Agent, len(r.Modules), ModulesKept)
	}
	for _, m := range r.Modules {
		if m == nil {
			return fmt.Errorf("agent %q: empty module record", r.Agent)
		}
		sum := sha256.Sum256(m.Wasm)
		if hex.EncodeToString(sum[:]) != m.SHA256 || len(m.Wasm) > MaxModuleBytes {
			return fmt.Errorf("agent %q: a module does not match its sha256 or is too large", r.Agent)
		}
	}
	if len(r.KV) > MaxKVKeys || r.kvBytes() > MaxKVBytes {
		return fmt.Errorf("agent %q: key/value state over its quota", r.Agent)
	}
	if len(r.Timers) > MaxTimers {
		return fmt.Errorf("agent %q: %d timers; at most %d", r.Agent, len(r.Timers), MaxTimers)
	}
	st.sandbox[r.Agent] = r
	return nil
}
