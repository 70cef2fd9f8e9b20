package store

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/hashicorp/raft"

	"github.com/aibos/kernel/api"
)

// RegionView is a read-only copy of the multi-region state.
type RegionView struct {
	Self, Domain  string
	Epoch         uint64
	Primary       string
	Promised      uint64
	PromisedTo    string
	GlobalVersion uint64
	LastEpoch     uint64 // the epoch of the entry at GlobalVersion
	IsPrimary     bool   // primary of the newest epoch it knows
	WasPrimary    bool   // primary of an older epoch
	Regions       []api.Region
	Tenants       []api.Tenant
	Epochs        []EpochRecord
	Quarantined   []api.GlobalEntry
	regions       map[string]*api.Region
	tenants       map[string]*api.Tenant
	following     string
}

// Region returns the region id in the registry (nil if none).
func (v *RegionView) Region(id string) *api.Region {
	if r := v.regions[id]; r != nil {
		c := *r
		return &c
	}
	return nil
}

// Tenant returns the tenant's directory entry (nil if none).
func (v *RegionView) Tenant(id string) *api.Tenant {
	if t := v.tenants[id]; t != nil {
		c := *t
		return &c
	}
	return nil
}

// Serving is the region that serves tenant's data (its home, or the
// home's standby after a failover): an error wrapping ErrResidency for a
// tenant without a home, ErrRegionUnavailable for one whose home is lost
// with no standby.
func (v *RegionView) Serving(tenant string) (string, error) {
	r := regionState{Regions: v.regions, Tenants: v.tenants}
	return r.serving(tenant)
}

// Following is the region whose stream this one follows: the primary of
// the newest epoch it promised ("" on the primary itself).
func (v *RegionView) Following() string {
	if v.IsPrimary {
		return ""
	}
	return v.following
}

// Region returns the multi-region state, ok false outside multi-region
// mode.
func (s *Store) Region() (RegionView, bool) {
	s.fsm.mu.RLock()
	r := s.fsm.st.region
	s.fsm.mu.RUnlock()
	if r == nil {
		return RegionView{}, false
	}
	v := RegionView{
		Self: r.Self, Domain: r.Domain, Epoch: r.Epoch, Primary: r.Primary,
		Promised: r.Promised, PromisedTo: r.PromisedTo, GlobalVersion: r.gv(), LastEpoch: r.lastEpoch(),
		IsPrimary: r.primaryNow(), WasPrimary: r.wasPrimary(), Epochs: slices.Clone(r.Epochs),
		Quarantined: slices.Clone(r.Quarantine), regions: r.Regions, tenants: r.Tenants,
		following: r.promisedPrimaryID(),
	}
	for _, id := range slices.Sorted(maps.Keys(r.Regions)) {
		reg := *r.Regions[id]
		reg.Role = api.RoleSecondary
		if id == r.Primary {
			reg.Role = api.RolePrimary
		}
		v.Regions = append(v.Regions, reg)
	}
	for _, id := range slices.Sorted(maps.Keys(r.Tenants)) {
		v.Tenants = append(v.Tenants, *r.Tenants[id])
	}
	return v, true
}

// Residency says whether tenant data of tenant may be written here: nil,
// an error wrapping ErrResidency (another domain, or no home), or a
// *NotHomeError (another region of this domain). Nil outside multi-region
// mode.
func (s *Store) Residency(tenant string) error {
	s.fsm.mu.RLock()
	defer s.fsm.mu.RUnlock()
	return s.fsm.checkResidencyLocked(tenant)
}

// GlobalEntries returns the global entries after global version from, at
// most max of them, and the global version applied here.
func (s *Store) GlobalEntries(from uint64, max int) ([]api.GlobalEntry, uint64) {
	s.fsm.mu.RLock()
	defer s.fsm.mu.RUnlock()
	r := s.fsm.st.region
	if r == nil {
		return nil, 0
	}
	if from >= r.gv() {
		return nil, r.gv()
	}
	end := min(r.gv(), from+uint64(max))
	return r.Log[from:end:end], r.gv()
}

// EntryEpoch is the epoch of the applied entry at global version gv (0 if
// there is none).
func (s *Store) EntryEpoch(gv uint64) uint64 {
	s.fsm.mu.RLock()
	defer s.fsm.mu.RUnlock()
	r := s.fsm.st.region
	if r == nil || gv == 0 || gv > r.gv() {
		return 0
	}
	return r.Log[gv-1].Epoch
}

// GlobalState is the global part of the state, for a region that starts
// following this one (ok false outside multi-region mode).
func (s *Store) GlobalState() (GlobalState, bool) {
	f := s.fsm
	f.mu.RLock()
	defer f.mu.RUnlock()
	r := f.st.region
	if r == nil {
		return GlobalState{}, false
	}
	g := GlobalState{
		Epoch: r.Epoch, Primary: r.Primary, Log: r.Log, Regions: r.Regions, Tenants: r.Tenants, Epochs: r.Epochs,
		Versions: f.st.versions, Rollout: f.st.rollout, Staged: f.st.staged, CatalogRev: f.st.catalogRev, System: f.st.system,
	}
	for _, o := range f.st.orchestras {
		g.Orchestras = append(g.Orchestras, o)
	}
	sort.Slice(g.Orchestras, func(i, j int) bool { return g.Orchestras[i].Name < g.Orchestras[j].Name })
	for _, k := range f.st.kills {
		if k.Scope == api.KillGlobal {
			g.Kills = append(g.Kills, k)
		}
	}
	sort.Slice(g.Kills, func(i, j int) bool { return g.Kills[i].ID < g.Kills[j].ID })
	for _, t := range f.st.tokens {
		if !t.Token.Root {
			g.Tokens = append(g.Tokens, t)
		}
	}
	sort.Slice(g.Tokens, func(i, j int) bool { return g.Tokens[i].Token.Accessor < g.Tokens[j].Token.Accessor })
	return g, true
}

// WaitForGlobalVersion returns nil once this region applied global
// version gv, or an error when ctx ends or the store closes first.
func (s *Store) WaitForGlobalVersion(ctx context.Context, gv uint64) error {
	for {
		ch := s.fsm.revWait.Wait()
		if v, _ := s.Region(); v.GlobalVersion >= gv {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return ErrClosed
		}
	}
}

// InitRegion puts this cluster in multi-region mode as region self of
// domain; primary makes it the first primary (epoch 1), else it waits to
// follow one. Again with the same identity: a no-op. Leader only.
func (s *Store) InitRegion(ctx context.Context, self, domain string, endpoints []string, primary bool, now time.Time) error {
	_, err := s.propose(ctx, cmdRegionInit, regionInitCmd{Self: self, Domain: domain, Endpoints: endpoints, Primary: primary, Time: now})
	return err
}

// PutRegion adds or changes a region of the registry (a global write).
func (s *Store) PutRegion(ctx context.Context, r api.Region) (rev, gv uint64, err error) {
	if err := validateRegion(&r); err != nil {
		return 0, 0, fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	res, err := s.propose(ctx, cmdRegionPut, regionPutCmd{Region: r})
	return res.Revision, res.GlobalVersion, err
}

// PutTenant adds a tenant to the directory (a global write).
func (s *Store) PutTenant(ctx context.Context, t api.Tenant) (rev, gv uint64, err error) {
	res, err := s.propose(ctx, cmdTenantPut, tenantPutCmd{Tenant: t})
	return res.Revision, res.GlobalVersion, err
}

// FailoverRegion declares region id lost: its standby serves its tenants
// (a global write).
func (s *Store) FailoverRegion(ctx context.Context, id, by string, now time.Time) (rev, gv uint64, err error) {
	res, err := s.propose(ctx, cmdRegionFailover, regionFailoverCmd{ID: id, By: by, Time: now})
	return res.Revision, res.GlobalVersion, err
}

// PromiseEpoch makes this region follow epoch (whose primary is primary)
// and refuse anything older; an error wrapping ErrStaleRegionEpoch if it
// promised that epoch or a newer one to another region.
func (s *Store) PromiseEpoch(ctx context.Context, epoch uint64, primary string) error {
	_, err := s.propose(ctx, cmdEpochPromise, epochPromiseCmd{Epoch: epoch, Primary: primary})
	return err
}

// Vote promises epoch to candidate primary at (lastEpoch, gv), unless
// this region's global log is further along.
func (s *Store) Vote(ctx context.Context, epoch uint64, primary string, lastEpoch, gv uint64) error {
	_, err := s.propose(ctx, cmdEpochPromise, epochPromiseCmd{Epoch: epoch, Primary: primary, Vote: true, LastEpoch: lastEpoch, GlobalVersion: gv})
	return err
}

// BeginEpoch makes this region the primary of epoch, which it promised
// itself; its first entry is the begin. Returns its global version.
func (s *Store) BeginEpoch(ctx context.Context, epoch uint64, self string, now time.Time) (uint64, error) {
	res, err := s.propose(ctx, cmdEpochBegin, epochBeginCmd{Epoch: epoch, Primary: self, Time: now})
	return res.GlobalVersion, err
}

// ApplyGlobal applies entries of the primary's stream (of sourceEpoch) in
// order, pipelined through raft: all are appended before the first is
// waited for. It returns the global version applied after the last entry
// that was, and the first error (later entries are then refused as a gap,
// so the caller resumes from the returned version).
func (s *Store) ApplyGlobal(ctx context.Context, sourceEpoch uint64, entries []api.GlobalEntry) (uint64, error) {
	if s.raft.State() != raft.Leader {
		return 0, ErrNotLeader
	}
	futures := make([]raft.ApplyFuture, 0, len(entries))
	for _, e := range entries {
		data, err := encodeCommand(cmdGlobalApply, globalApplyCmd{SourceEpoch: sourceEpoch, Entry: e})
		if err != nil {
			return 0, err
		}
		futures = append(futures, s.raft.Apply(data, enqueueTimeout(ctx)))
	}
	var applied uint64
	var first error
	for _, f := range futures {
		err := waitFuture(ctx, f)
		if err == nil {
			if e, ok := f.Response().(error); ok {
				err = e
			} else if r, ok := f.Response().(applyResult); ok && first == nil {
				applied = r.GlobalVersion
			}
		} else {
			err = mapRaftErr(err)
		}
		if err != nil && first == nil {
			first = err
		}
	}
	return applied, first
}

// ResetGlobal replaces the global state with g, quarantining local
// entries g does not have.
func (s *Store) ResetGlobal(ctx context.Context, g GlobalState) error {
	_, err := s.propose(ctx, cmdGlobalReset, g)
	return err
}

// DecodeGlobalState decodes a GlobalState sent by a primary.
func DecodeGlobalState(data []byte) (GlobalState, error) {
	var g GlobalState
	if err := json.Unmarshal(data, &g); err != nil {
		return GlobalState{}, fmt.Errorf("global state: %w", err)
	}
	return g, nil
}

// SetGlobalGate sets the check every global write passes before it is
// proposed here (the multi-region runtime's lease: a primary cut off from
// a majority of regions writes no global state). nil removes it.
func (s *Store) SetGlobalGate(gate func() error) {
	if gate == nil {
		s.globalGate.Store(nil)
		return
	}
	s.globalGate.Store(&gate)
}

// gateGlobal runs the global gate if the command is a global write.
func (s *Store) gateGlobal(typ string, data []byte) error {
	g := s.globalGate.Load()
	if g == nil || !globalTypes[typ] {
		return nil
	}
	c, err := decodeCommand(data)
	if err != nil {
		return err
	}
	s.fsm.mu.RLock()
	global := s.fsm.globalEntryOf(c)
	s.fsm.mu.RUnlock()
	if !global {
		return nil
	}
	return (*g)()
}

// SetGlobalCommit sets what a global write waits for after it applied
// here and before it is acknowledged (the multi-region runtime: a
// majority of regions applied it). nil removes it.
func (s *Store) SetGlobalCommit(wait func(ctx context.Context, gv uint64) error) {
	if wait == nil {
		s.globalCommit.Store(nil)
		return
	}
	s.globalCommit.Store(&wait)
}

// RegionsBefore lists the regions of the registry as it stood before
// global version gv: who must confirm the write at gv (a region's own
// addition is confirmed by the regions it joins, as a server added to a
// Raft cluster is not counted for its own addition).
func (s *Store) RegionsBefore(gv uint64) []string {
	s.fsm.mu.RLock()
	defer s.fsm.mu.RUnlock()
	r := s.fsm.st.region
	if r == nil {
		return nil
	}
	var out []string
	for id := range r.Regions {
		out = append(out, id)
	}
	if gv == 0 || gv > r.gv() {
		return out
	}
	e := r.Log[gv-1]
	if e.Type != cmdRegionPut {
		return out
	}
	var p regionPutCmd
	if json.Unmarshal(e.Payload, &p) != nil {
		return out
	}
	for i := 0; i < int(gv)-1; i++ {
		if r.Log[i].Type == cmdRegionPut {
			var q regionPutCmd
			if json.Unmarshal(r.Log[i].Payload, &q) == nil && q.Region.ID == p.Region.ID {
				return out // it was in the registry already
			}
		}
	}
	return slices.DeleteFunc(out, func(id string) bool { return id == p.Region.ID })
}
