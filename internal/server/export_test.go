package server

import "net/http"

// UnguardedServer is the server as it was before it authenticated its
// API: ServeHTTP's own steps and a mux of the same routes, each its bare
// handler (leader routes still forwarded). What a benchmark measures
// against it is what the guard adds, not the mux that was always there.
func (s *Server) UnguardedServer() http.HandlerFunc {
	mux := http.NewServeMux()
	for _, rt := range s.table {
		h := rt.h
		if rt.leader {
			h = s.leaderOnly(h)
		}
		mux.HandleFunc(rt.pattern, h)
	}
	mux.HandleFunc("/", s.handleNoRoute)
	return func(w http.ResponseWriter, r *http.Request) {
		if err := s.store.CaughtUp(); err != nil && !servedBeforeCaughtUp(r) {
			writeNotReady(w, err)
			return
		}
		if r.URL.RawQuery != "" {
			if err := checkMinRevisionParam(r); err != nil {
				badRequest(w, err)
				return
			}
		}
		mux.ServeHTTP(w, s.admitNode(r))
	}
}

// GuardOf is the guard of the route with pattern around h instead of the
// route's handler: what a benchmark measures of it is the guard alone.
func (s *Server) GuardOf(pattern string, h http.HandlerFunc) http.HandlerFunc {
	for _, rt := range s.table {
		if rt.pattern == pattern {
			c := rt
			c.h = h
			return s.guard(&c)
		}
	}
	panic("no route " + pattern)
}
