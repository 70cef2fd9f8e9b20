package server

import "net/http"

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// handleReady answers 200 once the node knows a leader and has applied
// everything that was committed when it last heard from it.
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	if err := s.store.Ready(); err != nil {
		writeError(w, http.StatusServiceUnavailable, codeUnavailable, "not ready: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"status": "ready", "revision": s.store.AppliedRevision(), "version": s.bundles.Version(),
	})
}
