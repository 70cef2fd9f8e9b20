package server

import (
	"fmt"
	"net/http"
	"time"

	"github.com/aibos/kernel/internal/engine"
	"github.com/aibos/kernel/internal/simulate"
)

// handleSimulate replays this node's logged decisions of the last ?since=
// (default 1h) against the candidate bundle in the body (the formats of
// PUT /v1/policies) and answers a simulate.Report. Only this node's log is
// read: each node logs the decisions it made.
func (s *Server) handleSimulate(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Decisions == nil {
		writeError(w, http.StatusServiceUnavailable, codeUnavailable,
			"this node keeps no decision log to simulate with: start it with --decision-log-sample above 0")
		return
	}
	since := time.Hour
	if v := r.URL.Query().Get("since"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			badRequest(w, fmt.Errorf("since=%q is not a positive duration: give e.g. since=30m or since=24h", v))
			return
		}
		since = d
	}
	files, ok := readBundle(w, r)
	if !ok {
		return
	}
	candidate, err := engine.LoadContext(r.Context(), files, engine.Options{Limits: s.cfg.BundleLimits})
	if err != nil {
		writeBundleError(w, err)
		return
	}
	rep, err := simulate.Replay(r.Context(), s.cfg.Decisions, candidate, simulate.Options{
		Since: s.now().Add(-since), Entities: s.store,
	})
	if err != nil {
		s.log.Error("simulation failed", "err", err)
		writeError(w, http.StatusInternalServerError, codeInternal, "simulation failed: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, rep)
}
