package mcp

import (
	"context"
	"fmt"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Resource subscriptions. The middleware decides resources/subscribe and
// unsubscribe (mcp.resources.subscribe on the prefixed URI) and, if
// allowed, lets the SDK's server have them: it keeps which sessions
// subscribed to what (and forgets a session that ends) and calls these
// handlers. The endpoint subscribes upstream once per URI, however many
// sessions want it (subs), and unsubscribes when the last one does. A
// server's resources/updated is passed, under the prefixed URI, to the
// sessions the SDK has for it (Server.ResourceUpdated); if none of the
// endpoint's subscribers is still connected (sessions that ended without
// unsubscribing), it unsubscribes upstream instead. A reconnected server
// has forgotten its subscriptions: they are made again.

func (e *Endpoint) subscribe(ctx context.Context, req *mcp.SubscribeRequest) error {
	u, uri, err := e.m.resourceUpstream(req.Params.URI)
	if err != nil {
		return &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: err.Error()}
	}
	e.subsMu.Lock()
	set := e.subs[req.Params.URI]
	first := len(set) == 0
	if set == nil {
		set = map[string]bool{}
		e.subs[req.Params.URI] = set
	}
	set[req.Session.ID()] = true
	e.subsMu.Unlock()
	if !first {
		return nil
	}
	if err := e.upstreamSubscribe(ctx, u, uri, true); err != nil {
		e.subsMu.Lock()
		delete(e.subs[req.Params.URI], req.Session.ID())
		e.subsMu.Unlock()
		return err
	}
	return nil
}

func (e *Endpoint) unsubscribe(ctx context.Context, req *mcp.UnsubscribeRequest) error {
	u, uri, err := e.m.resourceUpstream(req.Params.URI)
	if err != nil {
		return &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: err.Error()}
	}
	e.subsMu.Lock()
	set := e.subs[req.Params.URI]
	delete(set, req.Session.ID())
	last := len(set) == 0
	if last {
		delete(e.subs, req.Params.URI)
	}
	e.subsMu.Unlock()
	if !last {
		return nil
	}
	return e.upstreamSubscribe(ctx, u, uri, false)
}

// upstreamSubscribe subscribes (on) or unsubscribes the server's uri.
func (e *Endpoint) upstreamSubscribe(ctx context.Context, u *upstream, uri string, on bool) error {
	ctx, cancel := context.WithTimeout(ctx, e.m.cfg.RequestTimeout)
	defer cancel()
	s, err := u.session(ctx)
	if err != nil {
		return &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: err.Error()}
	}
	method := "resources/subscribe"
	if on {
		err = s.Subscribe(ctx, &mcp.SubscribeParams{URI: uri})
	} else {
		method = "resources/unsubscribe"
		err = s.Unsubscribe(ctx, &mcp.UnsubscribeParams{URI: uri})
	}
	if err != nil {
		return fmt.Errorf("orchestra %q: %s %s: %w", u.name, method, uri, err)
	}
	return nil
}

// resourceUpdated passes a server's resources/updated on.
func (e *Endpoint) resourceUpdated(orchestra, uri string) {
	key := ResourceURI(orchestra, uri)
	live := map[string]bool{}
	for s := range e.srv.Sessions() {
		live[s.ID()] = true
	}
	e.subsMu.Lock()
	set := e.subs[key]
	for id := range set {
		if !live[id] {
			delete(set, id)
		}
	}
	none := len(set) == 0
	if none {
		delete(e.subs, key)
	}
	e.subsMu.Unlock()
	if none {
		if u := e.m.upstream(orchestra); u != nil {
			// Not on the session's goroutine, which delivered this.
			go func() {
				if err := e.upstreamSubscribe(context.Background(), u, uri, false); err != nil {
					e.m.log.Warn("mcp: unsubscribing a resource no session wants failed", "orchestra", orchestra, "uri", uri, "err", err)
				}
			}()
		}
		return
	}
	go e.srv.ResourceUpdated(context.Background(), &mcp.ResourceUpdatedNotificationParams{URI: key})
}

// resubscribe makes an orchestra's subscriptions again on its new session.
func (e *Endpoint) resubscribe(orchestra string) {
	e.subsMu.Lock()
	var uris []string
	for key, set := range e.subs {
		if o, uri, err := SplitResourceURI(key); err == nil && o == orchestra && len(set) > 0 {
			uris = append(uris, uri)
		}
	}
	e.subsMu.Unlock()
	u := e.m.upstream(orchestra)
	if u == nil {
		return
	}
	for _, uri := range uris {
		if err := e.upstreamSubscribe(e.m.ctx, u, uri, true); err != nil {
			e.m.log.Warn("mcp: subscribing again after a reconnect failed", "orchestra", orchestra, "uri", uri, "err", err)
		}
	}
}
