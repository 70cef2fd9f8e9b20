package region

import (
	"context"

	"github.com/aibos/kernel/internal/store"
)

// standsBy reports whether this region is the standby of another one.
// (The tenant-data stream is being built; until then no region streams.)
func (m *Manager) standsBy(v *store.RegionView) bool { return false }

func (m *Manager) standbyLoop(ctx context.Context) { <-ctx.Done() }
