package store

import (
	"context"
	"fmt"
	"sort"

	"github.com/aibos/kernel/api"
)

// Tenant data of a region's tenants is streamed to the region's standby
// (same domain), which serves them once the home is failed over. The home
// keeps the changes it applied to its tenants' data in a ring (memory only,
// the same on every node since it is filled in Apply); the standby applies
// them with the home's revision as its cursor, in the same entry.
const (
	cmdStandbyApply = "standby.apply"
	cmdStandbyReset = "standby.reset"
)

// maxTenantChanges bounds the ring; a standby further behind gets a reset.
const maxTenantChanges = 1 << 16

// TenantChange is one change of tenant data: an entity put or deleted, or
// an agent's record replaced. Revision is the home region's.
type TenantChange struct {
	Revision uint64       `json:"revision"`
	Tenant   string       `json:"tenant"`
	Put      *api.Entity  `json:"put,omitempty"`
	Delete   *api.Entity  `json:"delete,omitempty"` // type and id only
	Agent    *agentRecord `json:"agent,omitempty"`
}

// tenantRing is the home's recent tenant changes: complete for every
// revision after floor.
type tenantRing struct {
	floor   uint64
	changes []TenantChange
}

// recordTenantLocked keeps a change of tenant data of a tenant this region
// is home to (not when it stands in for a lost home: it streams to no one).
func (f *fsm) recordTenantLocked(c TenantChange) {
	r := f.st.region
	if r == nil || c.Tenant == "" {
		return
	}
	if t := r.Tenants[c.Tenant]; t == nil || t.Home != r.Self {
		return
	}
	c.Revision = f.st.revision
	ring := &f.tenants
	ring.changes = append(ring.changes, c)
	if n := len(ring.changes); n > maxTenantChanges {
		drop := n - maxTenantChanges
		ring.floor = ring.changes[drop-1].Revision
		ring.changes = append([]TenantChange(nil), ring.changes[drop:]...)
	}
}

// standbyApplyCmd applies a home's changes after its revision Prev (the
// standby's cursor for it) up to Revision.
type standbyApplyCmd struct {
	Source   string         `json:"source"`
	Prev     uint64         `json:"prev"`
	Revision uint64         `json:"revision"`
	Changes  []TenantChange `json:"changes"`
}

// standbyResetCmd replaces the standby's copy of a home's tenant data
// with the home's at Revision.
type standbyResetCmd struct {
	Source   string         `json:"source"`
	Revision uint64         `json:"revision"`
	Changes  []TenantChange `json:"changes"` // puts and agents only
}

// standbyOfLocked checks that this region may hold source's tenant data as
// its standby, and still takes it (source not failed over).
func (f *fsm) standbyOfLocked(source string) (*regionState, error) {
	r := f.st.region
	if r == nil {
		return nil, errNotMultiRegion
	}
	src := r.Regions[source]
	switch {
	case src == nil:
		return nil, fmt.Errorf("%w: region %s", ErrNotFound, source)
	case src.Standby != r.Self:
		return nil, fmt.Errorf("%w: region %s is not the standby of %s", ErrResidency, r.Self, source)
	case src.Domain != r.Domain:
		return nil, fmt.Errorf("%w: %s is in domain %s, %s in %s", ErrResidency, source, src.Domain, r.Self, r.Domain)
	case src.FailedOver:
		return nil, fmt.Errorf("%w: %s was failed over; this region serves its tenants now and takes no more of its data", ErrStaleRegionEpoch, source)
	}
	return r, nil
}

// checkChange refuses a change that is not data of a tenant of source.
func checkChange(r *regionState, source string, c *TenantChange) error {
	t := r.Tenants[c.Tenant]
	if t == nil || t.Home != source {
		return fmt.Errorf("%w: change at revision %d is of tenant %q, not a tenant of %s", ErrResidency, c.Revision, c.Tenant, source)
	}
	n := 0
	for _, set := range []bool{c.Put != nil, c.Delete != nil, c.Agent != nil} {
		if set {
			n++
		}
	}
	switch {
	case n != 1:
		return fmt.Errorf("%w: change at revision %d holds %d kinds, want 1", ErrBadCommand, c.Revision, n)
	case c.Put != nil && (entityTenant(*c.Put) != c.Tenant || c.Put.Type == "" || c.Put.ID == ""):
		return fmt.Errorf("%w: entity put at revision %d is not of tenant %s", ErrBadCommand, c.Revision, c.Tenant)
	case c.Agent != nil && c.Agent.Agent.Tenant != c.Tenant:
		return fmt.Errorf("%w: agent at revision %d is not of tenant %s", ErrBadCommand, c.Revision, c.Tenant)
	case c.Agent != nil:
		// What a snapshot restore checks: a record accepted here must
		// survive this region's next snapshot.
		a := &c.Agent.Agent
		if err := ValidateAgentManifest(&a.AgentManifest); err != nil {
			return fmt.Errorf("%w: agent at revision %d: %v", ErrBadCommand, c.Revision, err)
		}
		if a.State != api.AgentActive && a.State != api.AgentRetired {
			return fmt.Errorf("%w: agent %s at revision %d: unknown state %q", ErrBadCommand, a.ID, c.Revision, a.State)
		}
	}
	return nil
}

// checkAgentTokensLocked refuses agents whose credential belongs to
// another agent here.
func (f *fsm) checkAgentTokensLocked(changes []TenantChange) error {
	seen := map[string]string{}
	for _, c := range changes {
		if c.Agent == nil || c.Agent.TokenHash == "" {
			continue
		}
		id, h := c.Agent.Agent.ID, c.Agent.TokenHash
		if other, ok := f.st.agentTokens[h]; ok && other != id {
			return fmt.Errorf("%w: agent %s: its credential is agent %s's here", ErrBadCommand, id, other)
		}
		if other, ok := seen[h]; ok && other != id {
			return fmt.Errorf("%w: agents %s and %s share a credential", ErrBadCommand, id, other)
		}
		seen[h] = id
	}
	return nil
}

func (f *fsm) applyStandbyApply(c command, p *standbyApplyCmd) (Change, applyResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, err := f.standbyOfLocked(p.Source)
	if err != nil {
		return fail(err)
	}
	cur := r.Standby[p.Source]
	switch {
	case p.Revision <= cur:
		return f.bumpLocked(ChangeRegion) // applied already
	case p.Prev != cur:
		return fail(fmt.Errorf("%w: changes of %s after revision %d; this standby has applied up to %d", ErrReplicationGap, p.Source, p.Prev, cur))
	}
	for i := range p.Changes {
		if err := checkChange(r, p.Source, &p.Changes[i]); err != nil {
			return fail(err)
		}
	}
	if err := f.checkAgentTokensLocked(p.Changes); err != nil {
		return fail(err)
	}
	for _, ch := range p.Changes {
		f.applyTenantChangeLocked(ch)
	}
	nr := r.copy()
	nr.Standby = withCursor(r.Standby, p.Source, p.Revision)
	f.st.region = nr
	return f.bumpLocked(ChangeEntities)
}

func (f *fsm) applyStandbyReset(c command, p *standbyResetCmd) (Change, applyResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, err := f.standbyOfLocked(p.Source)
	if err != nil {
		return fail(err)
	}
	for i := range p.Changes {
		if err := checkChange(r, p.Source, &p.Changes[i]); err != nil {
			return fail(err)
		}
		if p.Changes[i].Delete != nil {
			return bad(c, fmt.Errorf("a reset holds no deletes"))
		}
	}
	if err := f.checkAgentTokensLocked(p.Changes); err != nil {
		return fail(err)
	}
	// Everything of the source's tenants goes, then the source's state
	// comes in whole.
	for k, props := range f.st.entities {
		if t := r.Tenants[tenantOf(props)]; t != nil && t.Home == p.Source {
			delete(f.st.entities, k)
		}
	}
	for id, a := range f.st.agents {
		if t := r.Tenants[a.Agent.Tenant]; t != nil && t.Home == p.Source {
			if a.TokenHash != "" {
				delete(f.st.agentTokens, a.TokenHash)
			}
			delete(f.st.agents, id)
		}
	}
	for _, ch := range p.Changes {
		f.applyTenantChangeLocked(ch)
	}
	nr := r.copy()
	nr.Standby = withCursor(r.Standby, p.Source, p.Revision)
	f.st.region = nr
	return f.bumpLocked(ChangeRestore)
}

func tenantOf(props map[string]any) string {
	t, _ := props["tenant"].(string)
	return t
}

func (f *fsm) applyTenantChangeLocked(ch TenantChange) {
	switch {
	case ch.Put != nil:
		f.st.entities[entityKey{ch.Put.Type, ch.Put.ID}] = normProps(ch.Put.Properties)
	case ch.Delete != nil:
		delete(f.st.entities, entityKey{ch.Delete.Type, ch.Delete.ID})
	case ch.Agent != nil:
		a := ch.Agent
		if old := f.st.agents[a.Agent.ID]; old != nil && old.TokenHash != "" {
			delete(f.st.agentTokens, old.TokenHash)
		}
		if a.TokenHash != "" {
			f.st.agentTokens[a.TokenHash] = a.Agent.ID
		}
		f.st.agents[a.Agent.ID] = newAgentRecord(a.Agent, a.TokenHash, a.Digests)
	}
}

func withCursor(m map[string]uint64, k string, v uint64) map[string]uint64 {
	out := make(map[string]uint64, len(m)+1)
	for kk, vv := range m {
		out[kk] = vv
	}
	out[k] = v
	return out
}

// TenantChanges returns the changes of this region's tenants' data after
// revision from (at most max), and the revision they run to; ok false when
// the ring no longer holds everything after from (the standby needs a
// reset: TenantSnapshot).
func (s *Store) TenantChanges(from uint64, max int) ([]TenantChange, uint64, bool) {
	f := s.fsm
	f.mu.RLock()
	defer f.mu.RUnlock()
	ring := f.tenants
	if from < ring.floor {
		return nil, 0, false
	}
	i := sort.Search(len(ring.changes), func(i int) bool { return ring.changes[i].Revision > from })
	end := min(len(ring.changes), i+max)
	out := append([]TenantChange(nil), ring.changes[i:end]...)
	to := f.st.revision
	if end < len(ring.changes) {
		to = out[len(out)-1].Revision
	}
	return out, to, true
}

// TenantSnapshot is all data of this region's tenants, as puts, at the
// revision returned.
func (s *Store) TenantSnapshot() ([]TenantChange, uint64) {
	f := s.fsm
	f.mu.RLock()
	defer f.mu.RUnlock()
	r := f.st.region
	var out []TenantChange
	if r == nil {
		return nil, f.st.revision
	}
	home := func(t string) bool { tt := r.Tenants[t]; return tt != nil && tt.Home == r.Self }
	for k, props := range f.st.entities {
		if t := tenantOf(props); home(t) {
			out = append(out, TenantChange{Tenant: t, Put: &api.Entity{Type: k.typ, ID: k.id, Properties: props}})
		}
	}
	for _, a := range f.st.agents {
		if home(a.Agent.Tenant) {
			out = append(out, TenantChange{Tenant: a.Agent.Tenant, Agent: a})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		ka, kb := changeKey(a), changeKey(b)
		return ka < kb
	})
	return out, f.st.revision
}

func changeKey(c TenantChange) string {
	if c.Put != nil {
		return "e/" + c.Put.Type + "/" + c.Put.ID
	}
	return "a/" + c.Agent.Agent.ID
}

// StandbyCursor is the revision of source's tenant data this standby has
// applied.
func (s *Store) StandbyCursor(source string) uint64 {
	s.fsm.mu.RLock()
	defer s.fsm.mu.RUnlock()
	if r := s.fsm.st.region; r != nil {
		return r.Standby[source]
	}
	return 0
}

// ApplyStandby applies a home's tenant changes after prev up to rev.
func (s *Store) ApplyStandby(ctx context.Context, source string, prev, rev uint64, changes []TenantChange) error {
	_, err := s.propose(ctx, cmdStandbyApply, standbyApplyCmd{Source: source, Prev: prev, Revision: rev, Changes: changes})
	return err
}

// ResetStandby replaces the copy of a home's tenant data.
func (s *Store) ResetStandby(ctx context.Context, source string, rev uint64, changes []TenantChange) error {
	_, err := s.propose(ctx, cmdStandbyReset, standbyResetCmd{Source: source, Revision: rev, Changes: changes})
	return err
}
