package server

import (
	"net/http"
	"strconv"
	"time"
)

// notReadyRetry is the Retry-After of a not_ready answer: a restart replays
// in well under a second on a small log; a client that retries sooner only
// adds load.
const notReadyRetry = time.Second

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// handleReady answers 200 once the node knows a leader and has caught up
// (store.Store.Ready): before that the node answers nothing but these
// probes (see servedBeforeCaughtUp), so readiness and service agree.
// Once caught up, a node that loses its leader keeps deciding from its
// replica (decisions never stop on a failover) but is not ready: writes
// cannot be forwarded, and a node cut off from the others falls behind.
// A node whose audit log has failed (a write or fsync error; it then
// refuses every record) is not ready either: it would refuse every
// invocation, so a load balancer should send agents elsewhere.
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	if err := s.store.Ready(); err != nil {
		if s.store.CaughtUp() != nil {
			writeNotReady(w, err)
			return
		}
		writeError(w, http.StatusServiceUnavailable, codeUnavailable, "not ready: "+err.Error()+"; decisions and reads are answered from this node's replica meanwhile")
		return
	}
	if s.cfg.Audit != nil {
		if err := s.cfg.Audit.Err(); err != nil {
			writeError(w, http.StatusServiceUnavailable, codeUnavailable, "not ready: the audit log failed ("+err.Error()+"); invocations are refused until the node restarts with a writable data directory")
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"status": "ready", "revision": s.store.AppliedRevision(), "version": s.pdp.Holder().Version(),
	})
}

// servedBeforeCaughtUp lists what a node answers before its store has
// caught up after a start: liveness, readiness, metrics and the cluster
// view, which decide nothing and show where the node stands. Everything
// else — decisions, invocations, reads, and writes (their checks read the
// local state) — waits, so that nothing is answered from a state older than
// the one this node served before it stopped.
func servedBeforeCaughtUp(r *http.Request) bool {
	switch r.URL.Path {
	case "/healthz", "/readyz", "/metrics", "/v1/cluster":
		return true
	}
	return false
}

// writeNotReady refuses a request that arrived before the node caught up:
// 503 not_ready with Retry-After. Nothing was done; retrying is always safe.
func writeNotReady(w http.ResponseWriter, err error) {
	w.Header().Set("Retry-After", strconv.Itoa(int(notReadyRetry/time.Second)))
	writeError(w, http.StatusServiceUnavailable, codeNotReady,
		"this node is replaying its state after a start and answers nothing from it yet ("+err.Error()+"); retry in a moment, or ask another node")
}
