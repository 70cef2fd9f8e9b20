package mcp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/aibos/kernel/api"
)

// Per-session tools/list_changed. The SDK sends a list_changed only to
// every session at once (Server.changeAndNotify, reached through AddTool
// and RemoveTools: the sentinel of toolsChanged), and has no call that
// sends a notification to one session. What it does have is the sending
// middleware, which every outgoing message of a session passes, with the
// session it is for. So the broadcast stays, and the middleware drops it
// for each session whose visible tool list did not change: the endpoint
// remembers, per session, a digest of the list it last showed or told it
// about (at initialize and at every tools/list), and when a list_changed
// is about to go out it lists the session's agent's tools again; equal
// digests: dropped, else sent and remembered. A session it knows nothing
// about (never initialized here) is told.

// sessionView is what a session was last shown.
type sessionView struct {
	agent  string // to list as that agent again
	digest string
}

// toolsDigest names a visible tool list: the SHA-256 of the list as the
// session would receive it.
func toolsDigest(r *mcp.ListToolsResult) string {
	b, err := json.Marshal(r.Tools)
	if err != nil {
		return "unencodable: " + err.Error() // never equal to a digest: the session is told
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// shown remembers the tool list a session was shown.
func (e *Endpoint) shown(c *caller, r *mcp.ListToolsResult) {
	if c.session == "" {
		return
	}
	e.viewsMu.Lock()
	e.views[c.session] = sessionView{agent: c.agent.ID, digest: toolsDigest(r)}
	e.viewsMu.Unlock()
}

// pruneViews forgets sessions that ended.
func (e *Endpoint) pruneViews() {
	live := map[string]bool{}
	for s := range e.srv.Sessions() {
		live[s.ID()] = true
	}
	e.viewsMu.Lock()
	for id := range e.views {
		if !live[id] {
			delete(e.views, id)
		}
	}
	e.viewsMu.Unlock()
}

// sending is the sending middleware: it lets a tools/list_changed reach a
// session only if the session's visible tools changed.
func (e *Endpoint) sending(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		if method != "notifications/tools/list_changed" {
			return next(ctx, method, req)
		}
		ss, ok := req.GetSession().(*mcp.ServerSession)
		if !ok || ss.ID() == "" {
			return next(ctx, method, req)
		}
		e.viewsMu.Lock()
		v, known := e.views[ss.ID()]
		e.viewsMu.Unlock()
		if !known {
			return next(ctx, method, req)
		}
		a, ok := e.store.Agent(v.agent)
		if !ok || a.State != api.AgentActive {
			return next(ctx, method, req) // its list is gone: the next tools/list says so
		}
		c := &caller{agent: a, session: ss.ID()}
		now := e.listTools(c)
		if toolsDigest(now) == v.digest {
			return nil, nil
		}
		e.shown(c, now)
		return next(ctx, method, req)
	}
}
