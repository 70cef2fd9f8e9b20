package store

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/broadcast"
)

// Kinds of Change.
const (
	ChangeBundle       = "bundle"        // a publish or a rollback; Version is set
	ChangeEntities     = "entities"      // an upsert of entities
	ChangeEntityDelete = "entity_delete" // one entity deleted
	ChangeNode         = "node"          // a member's addresses set or removed
	ChangeRestore      = "restore"       // the whole state replaced from a snapshot; Version is the current one
)

// Change describes one applied change of the replicated state, as passed to
// Config.OnApply.
type Change struct {
	Revision uint64
	Kind     string
	// Version is the new bundle version (Kind bundle) or, on restore, the
	// current one (nil if the restored state has none). Shared, read-only.
	Version *api.BundleVersion
	// Rollout is the latest rollout after a rollout change or a restore
	// (nil if none); Candidate its candidate version while it is active.
	// Shared, read-only.
	Rollout   *api.Rollout
	Candidate *api.BundleVersion
	// Approval is the approval created, decided, consumed or voided (Kind
	// approval). Shared, read-only.
	Approval *api.Approval
	// Kill is the kill switch set or lifted (Kind kill); Voided the
	// approvals its setting voided, by id. Shared, read-only.
	Kill   *api.KillSwitch
	Voided []*api.Approval
	// System is the published system bundle (Kind system, or restore;
	// nil: the embedded default). Shared, read-only.
	System *api.BundleVersion
	// Agent is the agent whose sandbox state changed (Kind sandbox).
	Agent string
	// GlobalVersion is the global version of a global write or entry
	// (multi-region mode); 0 for regional changes.
	GlobalVersion uint64
}

// applyResult is the response of a successfully applied command, returned
// to the proposer through raft's ApplyFuture.
type applyResult struct {
	Revision  uint64
	Version   *api.VersionInfo
	Rollout   *api.Rollout
	Agent     *api.Agent
	Orchestra *api.Orchestra
	Approval  *api.Approval
	Kill      *api.KillSwitch
	Token     *api.Token
	// GlobalVersion is the global version a global write was given (or an
	// entry of the primary's stream had); Skipped why such an entry
	// changed nothing here.
	GlobalVersion uint64
	Skipped       string
}

type entityKey struct{ typ, id string }

// nodeMeta is what the state machine knows of a member beyond raft's own
// configuration: the address its HTTP API is served on.
type nodeMeta struct {
	ID   string `json:"id"`
	HTTP string `json:"http"`
	Raft string `json:"raft"`
}

// state is the replicated state. Every value reachable from it is immutable
// once stored: updates replace map entries and append to versions, never
// modify a stored value. That is what lets readers use stored values without
// copying and lets a snapshot copy references only.
type state struct {
	revision uint64
	versions []*api.BundleVersion // versions[i].Version == i+1
	entities map[entityKey]map[string]any
	nodes    map[string]nodeMeta
	rollout  *api.Rollout // the latest, active or ended; nil if none
	// staged is the candidate of the active rollout when it was started
	// with files (rollout.Staged); nil otherwise. Not a version until
	// promoted.
	staged *api.BundleVersion
	// agents are the registered agents by id; agentTokens maps a
	// credential's hash to its agent's id.
	agents      map[string]*agentRecord
	agentTokens map[string]string
	// orchestras are the catalog by name; catalogRev is the revision of
	// its last change (persisted: a delete leaves no other trace).
	orchestras map[string]*api.Orchestra
	catalogRev uint64
	// approvals by id; kills by id, killRev the revision of the last set
	// or lift (derived: the highest Revision among kills).
	approvals map[string]*api.Approval
	kills     map[string]*api.KillSwitch
	killRev   uint64
	// tokens are the operator tokens by accessor; tokenHashes maps a
	// live token's SHA-256 (32 bytes, not hex) to its accessor.
	tokens      map[string]*tokenRecord
	tokenHashes map[[32]byte]string
	// system is the published system bundle; nil: the embedded default.
	system *api.BundleVersion
	// sandbox is the sandbox state of agents (modules, run state,
	// key/value state) by agent id.
	sandbox map[string]*sandboxRecord
	// region is the multi-region state; nil outside multi-region mode.
	region *regionState
}

func newState() state {
	return state{
		entities:    make(map[entityKey]map[string]any),
		nodes:       make(map[string]nodeMeta),
		agents:      make(map[string]*agentRecord),
		agentTokens: make(map[string]string),
		orchestras:  make(map[string]*api.Orchestra),
		approvals:   make(map[string]*api.Approval),
		kills:       make(map[string]*api.KillSwitch),
		tokens:      make(map[string]*tokenRecord),
		tokenHashes: make(map[[32]byte]string),
		sandbox:     make(map[string]*sandboxRecord),
	}
}

// fsm is the raft.FSM. Apply, Snapshot and Restore are called by raft from
// one goroutine; readers call the read methods from any goroutine.
type fsm struct {
	mu sync.RWMutex
	st state // guarded by mu

	onApply func(Change)

	// applied is the revision whose change (and OnApply) is complete;
	// revWait is broadcast when it moves.
	applied atomic.Uint64
	revWait broadcast.Notifier

	// tenants are the recent changes of this region's tenants' data, for
	// its standby (standby.go): filled in Apply, not persisted.
	tenants tenantRing

	// index is the raft log index the state stands for: that of the last
	// command applied (its OnApply included), or of the snapshot restored.
	// Raft's own AppliedIndex counts entries once it has queued them for
	// the FSM, not once they are applied; Store.CaughtUp compares this one.
	index atomic.Uint64
}

func newFSM(onApply func(Change)) *fsm {
	return &fsm{st: newState(), onApply: onApply}
}

// Apply applies one committed log entry. It returns an applyResult, or an
// error value that leaves the state unchanged. It never panics on bad input.
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	// A rejected command moves the index too: it is applied, as a no-op.
	defer f.index.Store(l.Index)
	ch, res, err := f.apply(l.Data)
	if err != nil {
		return err
	}
	f.changed(ch)
	return res
}

// changed runs OnApply, then makes the revision visible to waiters, so that
// a reader that saw revision R also sees everything OnApply did for R.
func (f *fsm) changed(ch Change) {
	if f.onApply != nil {
		f.onApply(ch)
	}
	f.applied.Store(ch.Revision)
	f.revWait.Broadcast()
}

// apply decodes and validates outside the lock (both are pure), then
// mutates under it.
func (f *fsm) apply(data []byte) (Change, applyResult, error) {
	c, err := decodeCommand(data)
	if err != nil {
		return fail(err)
	}
	a, ok := appliers[c.Type]
	if !ok {
		return fail(fmt.Errorf("%w: unknown type %q", ErrBadCommand, c.Type))
	}
	f.mu.RLock()
	global := f.globalEntryOf(c)
	f.mu.RUnlock()
	if global {
		return f.applyGlobalWrite(a, c, data)
	}
	return a(f, c)
}

// applier applies one type of command to the state machine.
type applier func(f *fsm, c command) (Change, applyResult, error)

// appliers has the one applier of every command type. A type missing here
// is rejected as unknown, which is why a test checks that every cmd*
// constant of the package has an entry.
var appliers = map[string]applier{
	cmdBundlePublish:  handle((*fsm).applyPublish),
	cmdBundleRollback: handle((*fsm).applyRollback),
	cmdEntitiesPut:    handle((*fsm).applyEntitiesPut),
	cmdEntityDelete:   handle((*fsm).applyEntityDelete),
	cmdNodeSet:        handle((*fsm).applyNodeSet),
	cmdNodeRemove:     handle((*fsm).applyNodeRemove),

	cmdRolloutStart:   handle((*fsm).applyRolloutStart),
	cmdRolloutAbort:   handle((*fsm).applyRolloutAbort),
	cmdRolloutPromote: handle((*fsm).applyRolloutPromote),

	cmdAgentRegister:      handle((*fsm).applyAgentRegister),
	cmdAgentUpdate:        handle((*fsm).applyAgentUpdate),
	cmdAgentRetire:        handle((*fsm).applyAgentRetire),
	cmdAgentCredentialSet: handle((*fsm).applyAgentCredential),

	cmdOrchestraPut:    handle((*fsm).applyOrchestraPut),
	cmdOrchestraDelete: handle((*fsm).applyOrchestraDelete),

	cmdApprovalCreate:  handle((*fsm).applyApprovalCreate),
	cmdApprovalDecide:  handle((*fsm).applyApprovalDecide),
	cmdApprovalConsume: handle((*fsm).applyApprovalConsume),

	cmdKillSet:  handle((*fsm).applyKillSet),
	cmdKillLift: handle((*fsm).applyKillLift),

	cmdTokenCreate: handle((*fsm).applyTokenCreate),
	cmdTokenRevoke: handle((*fsm).applyTokenRevoke),

	cmdSystemPublish: handle((*fsm).applySystemPublish),

	cmdSandboxModulePut: handle((*fsm).applySandboxModulePut),
	cmdSandboxRunSet:    handle((*fsm).applySandboxRunSet),
	cmdSandboxStatusSet: handle((*fsm).applySandboxStatusSet),
	cmdSandboxKVPut:     handle((*fsm).applySandboxKVPut),
	cmdSandboxRunVer:    handle((*fsm).applySandboxRunVersion),
	cmdSandboxPlace:     handle((*fsm).applySandboxPlace),
	cmdSandboxTimer:     handle((*fsm).applySandboxTimer),

	cmdRegionInit:     handle((*fsm).applyRegionInit),
	cmdRegionPut:      handle((*fsm).applyRegionPut),
	cmdRegionFailover: handle((*fsm).applyRegionFailover),
	cmdTenantPut:      handle((*fsm).applyTenantPut),
	cmdEpochPromise:   handle((*fsm).applyEpochPromise),
	cmdEpochBegin:     handle((*fsm).applyEpochBegin),
	cmdGlobalApply:    handle((*fsm).applyGlobalApply),
	cmdGlobalReset:    handle((*fsm).applyGlobalReset),
	cmdStandbyApply:   handle((*fsm).applyStandbyApply),
	cmdStandbyReset:   handle((*fsm).applyStandbyReset),
}

// handle makes the applier of a command whose payload is a P. It is the
// one place payloads are decoded, so every type rejects a missing or
// malformed payload alike: ErrBadCommand, before any lock is taken.
func handle[P any](fn func(f *fsm, c command, p *P) (Change, applyResult, error)) applier {
	return func(f *fsm, c command) (Change, applyResult, error) {
		var p P
		if err := decodePayload(c, &p); err != nil {
			return fail(err)
		}
		return fn(f, c, &p)
	}
}

// fail is what a rejected command returns: err, and no change.
func fail(err error) (Change, applyResult, error) {
	return Change{}, applyResult{}, err
}

// bad rejects c as invalid on its own: ErrBadCommand, naming its type and
// what is wrong.
func bad(c command, err error) (Change, applyResult, error) {
	return fail(fmt.Errorf("%w: %s: %v", ErrBadCommand, c.Type, err))
}

func (f *fsm) applyPublish(c command, p *publishCmd) (Change, applyResult, error) {
	if err := validateFiles(p.Files); err != nil {
		return bad(c, err)
	}
	bv := &api.BundleVersion{
		VersionInfo: api.VersionInfo{Hash: p.Hash, Message: p.Message, Author: p.Author, Time: p.Time},
		Files:       p.Files,
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.frozenLocked(c.Type); err != nil {
		return fail(err)
	}
	return f.addVersionLocked(bv)
}

func (f *fsm) applyRollback(c command, p *rollbackCmd) (Change, applyResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.frozenLocked(c.Type); err != nil {
		return fail(err)
	}
	if p.To == 0 || p.To > uint64(len(f.st.versions)) {
		return fail(fmt.Errorf("%w: %d", ErrNoSuchVersion, p.To))
	}
	old := f.st.versions[p.To-1]
	bv := &api.BundleVersion{
		VersionInfo: api.VersionInfo{
			Hash: old.Hash, RollbackOf: p.To, Message: p.Message, Author: p.Author, Time: p.Time,
		},
		Files: old.Files,
	}
	return f.addVersionLocked(bv)
}

func (f *fsm) applyEntitiesPut(c command, p *entitiesPutCmd) (Change, applyResult, error) {
	if err := validateEntities(p.Entities); err != nil {
		return bad(c, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range p.Entities {
		if err := f.checkResidencyLocked(entityTenant(e)); err != nil {
			return fail(fmt.Errorf("entity %s/%s: %w", e.Type, e.ID, err))
		}
	}
	for _, e := range p.Entities {
		f.st.entities[entityKey{e.Type, e.ID}] = normProps(e.Properties)
	}
	ch, res, err := f.bumpLocked(ChangeEntities)
	for _, e := range p.Entities {
		if t := entityTenant(e); t != "" {
			f.recordTenantLocked(TenantChange{Tenant: t, Put: &api.Entity{Type: e.Type, ID: e.ID, Properties: normProps(e.Properties)}})
		}
	}
	return ch, res, err
}

func (f *fsm) applyEntityDelete(_ command, p *entityDeleteCmd) (Change, applyResult, error) {
	k := entityKey{p.Type, p.ID}
	f.mu.Lock()
	defer f.mu.Unlock()
	props, ok := f.st.entities[k]
	if !ok {
		return fail(fmt.Errorf("%w: entity %s/%s", ErrNotFound, p.Type, p.ID))
	}
	if err := f.checkResidencyLocked(tenantOf(props)); err != nil {
		return fail(fmt.Errorf("entity %s/%s: %w", p.Type, p.ID, err))
	}
	delete(f.st.entities, k)
	ch, res, err := f.bumpLocked(ChangeEntityDelete)
	f.recordTenantLocked(TenantChange{Tenant: tenantOf(props), Delete: &api.Entity{Type: p.Type, ID: p.ID}})
	return ch, res, err
}

func (f *fsm) applyNodeSet(c command, p *nodeSetCmd) (Change, applyResult, error) {
	if p.ID == "" {
		return bad(c, errors.New("empty node id"))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st.nodes[p.ID] = nodeMeta(*p)
	return f.bumpLocked(ChangeNode)
}

func (f *fsm) applyNodeRemove(_ command, p *nodeRemoveCmd) (Change, applyResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.st.nodes[p.ID]; !ok {
		return fail(fmt.Errorf("%w: node %q", ErrNotFound, p.ID))
	}
	delete(f.st.nodes, p.ID)
	return f.bumpLocked(ChangeNode)
}

func (f *fsm) addVersionLocked(bv *api.BundleVersion) (Change, applyResult, error) {
	n := uint64(len(f.st.versions))
	f.st.revision++
	bv.Version = n + 1
	bv.Revision = f.st.revision
	bv.Parent = n
	f.st.versions = append(f.st.versions, bv)
	vi := bv.VersionInfo
	return Change{Revision: f.st.revision, Kind: ChangeBundle, Version: bv},
		applyResult{Revision: f.st.revision, Version: &vi}, nil
}

func (f *fsm) bumpLocked(kind string) (Change, applyResult, error) {
	f.st.revision++
	return Change{Revision: f.st.revision, Kind: kind}, applyResult{Revision: f.st.revision}, nil
}

func validateEntities(es []api.Entity) error {
	if len(es) == 0 {
		return errors.New("no entities")
	}
	for i, e := range es {
		if e.Type == "" || e.ID == "" {
			return fmt.Errorf("entity %d: type and id are required", i)
		}
	}
	return nil
}

// normProps makes an empty property map nil, so that a value looks the same
// whether it came from a command or a snapshot (both JSON, omitempty).
func normProps(p map[string]any) map[string]any {
	if len(p) == 0 {
		return nil
	}
	return p
}

// Snapshot captures the state for Persist. It runs on raft's FSM goroutine,
// so no Apply runs concurrently; it copies references only (the entity map
// is copied into a slice: O(entities), no deep copy).
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.captureLocked(), nil
}

func (f *fsm) captureLocked() *fsmSnapshot {
	s := &fsmSnapshot{
		revision: f.st.revision,
		versions: f.st.versions[:len(f.st.versions):len(f.st.versions)],
		entities: make([]api.Entity, 0, len(f.st.entities)),
		nodes:    make([]nodeMeta, 0, len(f.st.nodes)),
		rollout:  f.st.rollout,
		staged:   f.st.staged,
		agents:   make([]*agentRecord, 0, len(f.st.agents)),

		catalogRev: f.st.catalogRev,
		orchestras: make([]*api.Orchestra, 0, len(f.st.orchestras)),
		approvals:  make([]*api.Approval, 0, len(f.st.approvals)),
		kills:      make([]*api.KillSwitch, 0, len(f.st.kills)),
		tokens:     make([]*tokenRecord, 0, len(f.st.tokens)),
		system:     f.st.system,
		sandbox:    make([]*sandboxRecord, 0, len(f.st.sandbox)),
		region:     f.st.region,
	}
	for _, t := range f.st.tokens {
		s.tokens = append(s.tokens, t)
	}
	for _, r := range f.st.sandbox {
		s.sandbox = append(s.sandbox, r)
	}
	for _, a := range f.st.agents {
		s.agents = append(s.agents, a)
	}
	for _, o := range f.st.orchestras {
		s.orchestras = append(s.orchestras, o)
	}
	for _, a := range f.st.approvals {
		s.approvals = append(s.approvals, a)
	}
	for _, k := range f.st.kills {
		s.kills = append(s.kills, k)
	}
	for k, p := range f.st.entities {
		s.entities = append(s.entities, api.Entity{Type: k.typ, ID: k.id, Properties: p})
	}
	for _, n := range f.st.nodes {
		s.nodes = append(s.nodes, n)
	}
	return s
}

// Restore replaces the whole state from a snapshot. On error the state is
// unchanged.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, err := readSnapshot(rc)
	if err != nil {
		return fmt.Errorf("store: restore snapshot: %w", err)
	}
	f.mu.Lock()
	f.st = st
	f.tenants = tenantRing{floor: st.revision}
	var cur *api.BundleVersion
	if n := len(st.versions); n > 0 {
		cur = st.versions[n-1]
	}
	cand := f.candidateLocked()
	f.mu.Unlock()
	f.changed(Change{Revision: st.revision, Kind: ChangeRestore, Version: cur, Rollout: st.rollout, Candidate: cand, System: st.system})
	if ix, ok := snapshotIndex(rc); ok {
		f.index.Store(ix)
	}
	return nil
}

// indexedSnapshots is raft's snapshot store with one addition: what Open
// returns knows the log index of its snapshot, so that Restore can set
// fsm.index (raft does not tell FSM.Restore which snapshot it reads).
type indexedSnapshots struct{ raft.SnapshotStore }

type indexedReader struct {
	io.ReadCloser
	index uint64
}

func (s indexedSnapshots) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	meta, rc, err := s.SnapshotStore.Open(id)
	if err != nil {
		return nil, nil, err
	}
	return meta, &indexedReader{ReadCloser: rc, index: meta.Index}, nil
}

// snapshotIndex finds the index indexedSnapshots attached to rc, under the
// wrappers raft puts around it (a counting reader).
func snapshotIndex(rc io.ReadCloser) (uint64, bool) {
	for {
		switch r := rc.(type) {
		case *indexedReader:
			return r.index, true
		case raft.ReadCloserWrapper:
			rc = r.WrappedReadCloser()
		default:
			return 0, false
		}
	}
}
