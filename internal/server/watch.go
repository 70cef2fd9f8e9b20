package server

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/coder/websocket"

	"github.com/aibos/kernel/internal/watch"
)

// handleWatch upgrades GET /v1/watch?from=V[&content=true] to a WebSocket
// and hands it to the watch hub. Without from, the stream starts with the
// node's current version. Files are sent only with content=true: most
// watchers only need to know that a version exists, and a fleet of them
// each receiving a large bundle on every publish would multiply the node's
// egress by the number of watchers.
func (s *Server) handleWatch(w http.ResponseWriter, r *http.Request) {
	hub := s.cfg.Watch
	if hub == nil {
		writeError(w, http.StatusServiceUnavailable, codeUnavailable, "this node does not serve the watch stream")
		return
	}
	q := r.URL.Query()
	sub := watch.Subscription{FromCurrent: true}
	if v := q.Get("from"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			badRequest(w, fmt.Errorf("from %q is not a version number: give the last version you have (0 for all)", v))
			return
		}
		sub.From, sub.FromCurrent = n, false
	}
	if v := q.Get("content"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			badRequest(w, fmt.Errorf("content %q is not true or false", v))
			return
		}
		sub.Content = b
	}
	if err := hub.Validate(sub); err != nil {
		badRequest(w, err)
		return
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		// Accept has answered the request.
		return
	}
	c.SetReadLimit(4096)
	hub.Serve(r.Context(), c, sub)
}
