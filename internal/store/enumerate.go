package store

import (
	"slices"

	"github.com/aibos/kernel/api"
)

// EntityIDs lists the ids of the entities of type typ on the local
// replica, sorted; for type agent, the registered agents' ids too (each id
// once). It scans every stored entity under the read lock, without copying
// properties: O(entities) plus the sort of the ids found. Searches page
// through the result by id.
func (s *Store) EntityIDs(typ string) []string {
	f := s.fsm
	f.mu.RLock()
	var ids []string
	for k := range f.st.entities {
		if k.typ == typ {
			ids = append(ids, k.id)
		}
	}
	if typ == api.EntityTypeAgent {
		for id := range f.st.agents {
			ids = append(ids, id)
		}
	}
	f.mu.RUnlock()
	slices.Sort(ids)
	return slices.Compact(ids)
}
