package store

import (
	"context"

	"github.com/aibos/kernel/api"
)

// Entity returns the stored properties of an entity from the local replica.
// The map is shared and must not be modified. This is on the path of every
// decision: one read-lock and one map lookup, no copy.
//
// A registered agent is the entity {type: agent, id}: its registry
// properties (api.Agent.Properties) win over a stored entity of the same
// type and id, which stays stored but unseen while the agent is registered.
func (s *Store) Entity(typ, id string) (map[string]any, bool) {
	f := s.fsm
	f.mu.RLock()
	if typ == api.EntityTypeAgent {
		if a, ok := f.st.agents[id]; ok {
			f.mu.RUnlock()
			return a.props, true
		}
	}
	p, ok := f.st.entities[entityKey{typ, id}]
	f.mu.RUnlock()
	return p, ok
}

// Current returns the latest bundle version, false if none was published.
// Files are shared and must not be modified.
func (s *Store) Current() (api.BundleVersion, bool) {
	f := s.fsm
	f.mu.RLock()
	defer f.mu.RUnlock()
	if n := len(f.st.versions); n > 0 {
		return *f.st.versions[n-1], true
	}
	return api.BundleVersion{}, false
}

// Version returns bundle version v. Files are shared and must not be
// modified.
func (s *Store) Version(v uint64) (api.BundleVersion, bool) {
	f := s.fsm
	f.mu.RLock()
	defer f.mu.RUnlock()
	if v == 0 || v > uint64(len(f.st.versions)) {
		return api.BundleVersion{}, false
	}
	return *f.st.versions[v-1], true
}

// Versions lists every bundle version, oldest first.
func (s *Store) Versions() []api.VersionInfo {
	f := s.fsm
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]api.VersionInfo, len(f.st.versions))
	for i, v := range f.st.versions {
		out[i] = v.VersionInfo
	}
	return out
}

// AppliedRevision is the revision this node has applied (including
// OnApply). Never decreases while the store runs.
func (s *Store) AppliedRevision() uint64 { return s.fsm.applied.Load() }

// WaitForRevision returns nil once this node has applied rev, or an error
// when ctx ends or the store closes first. Waiters sleep on a broadcast
// channel; nothing polls.
func (s *Store) WaitForRevision(ctx context.Context, rev uint64) error {
	for {
		ch := s.fsm.revWait.Wait()
		if s.fsm.applied.Load() >= rev {
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
