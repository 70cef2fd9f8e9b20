package region

import (
	"net/http"

	"context"
	"github.com/aibos/kernel/api"

	"github.com/aibos/kernel/internal/store"
)

// standsBy reports whether this region is the standby of another one.
// (The tenant-data stream is being built; until then no region streams.)
func (m *Manager) standsBy(v *store.RegionView) bool { return false }

func (m *Manager) standbyLoop(ctx context.Context) { <-ctx.Done() }

// StandbyPath is the tenant-data stream's route, served by a home region's
// leader to its standby.
const StandbyPath = "/v1/regions/standby/stream"

// ServeStandby serves the tenant-data stream to the home's standby.
func (m *Manager) ServeStandby(w http.ResponseWriter, r *http.Request) {
	writeErr(w, http.StatusNotImplemented, api.CodeUnavailable, "the tenant-data stream is not served yet")
}
