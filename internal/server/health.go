package server

import "net/http"

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// handleReady answers 200 once the node knows a leader and has applied
// everything that was committed when it last heard from it.
// A node whose audit log has failed (a write or fsync error; it then
// refuses every record) is not ready either: it would refuse every
// invocation, so a load balancer should send agents elsewhere.
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	if err := s.store.Ready(); err != nil {
		writeError(w, http.StatusServiceUnavailable, codeUnavailable, "not ready: "+err.Error())
		return
	}
	if s.cfg.Audit != nil {
		if err := s.cfg.Audit.Err(); err != nil {
			writeError(w, http.StatusServiceUnavailable, codeUnavailable, "not ready: the audit log failed ("+err.Error()+"); invocations are refused until the node restarts with a writable data directory")
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"status": "ready", "revision": s.store.AppliedRevision(), "version": s.bundles.Version(),
	})
}
