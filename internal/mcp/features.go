package mcp

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"iter"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/aibos/kernel/internal/gateway"
)

// Resources, prompts and completions of the orchestras' servers, proxied.
//
// Names. A prompt is named as a tool is (ToolAction): "<orchestra>.<prompt>".
// A resource's URI, and a resource template's, gets the orchestra and "+"
// in front: "everything+demo://resource/static/document/features.md"
// (ResourceURI). Orchestra names hold no "+", so the first "+" ends the
// orchestra, and the rest is the server's URI unchanged; a template stays
// a template (its expressions are after the prefix). URIs in what a server
// answers (read contents, resources embedded in or linked from a prompt)
// are prefixed the same way, so a client can read what it was given.
//
// Lists aggregate the orchestras' lists (each one fetched in full, every
// page, cached until the server says the list changed or the session is
// replaced), keep only what the agent may use — an item that policy
// denies outright when decided as the method that uses it
// (mcp.resources.read on the resource, mcp.prompts.get on the prompt,
// gateway.DeniedOutright) — and are paged by the kernel: sorted by the
// prefixed name, PageSize items a page, the cursor naming the last item
// of the page before.

// resourceSep ends the orchestra at the start of a proxied resource URI.
const resourceSep = "+"

// maxListItems bounds the items one server's list may have.
const maxListItems = 10000

// ResourceURI is the URI an agent sees for a resource (or a template) of
// orchestra's server.
func ResourceURI(orchestra, uri string) string { return orchestra + resourceSep + uri }

// SplitResourceURI is the inverse of ResourceURI: the orchestra and the
// server's URI.
func SplitResourceURI(uri string) (orchestra, upstream string, err error) {
	o, rest, ok := strings.Cut(uri, resourceSep)
	if !ok || o == "" {
		return "", "", fmt.Errorf("resource %q names no orchestra: the kernel's resource URIs are <orchestra>+<the server's URI> (from resources/list)", uri)
	}
	return o, rest, nil
}

// lists caches an upstream's resource, template and prompt lists.
type lists struct {
	mu    sync.Mutex
	gen   uint64         // bumped by invalidate; guarded by mu
	items map[string]any // list method → its items; guarded by mu
}

func (l *lists) invalidate() {
	l.mu.Lock()
	l.gen++
	l.items = nil
	l.mu.Unlock()
}

// cachedList is the list of one method of u's server, from the cache or
// fetched in full.
func cachedList[T any](ctx context.Context, u *upstream, method string, fetch func(*mcp.ClientSession) iter.Seq2[T, error]) ([]T, error) {
	u.lists.mu.Lock()
	if v, ok := u.lists.items[method]; ok {
		u.lists.mu.Unlock()
		return v.([]T), nil
	}
	gen := u.lists.gen
	u.lists.mu.Unlock()
	s, err := u.session(ctx)
	if err != nil {
		return nil, err
	}
	var out []T
	for it, err := range fetch(s) {
		if err != nil {
			return nil, err
		}
		if out = append(out, it); len(out) > maxListItems {
			return nil, fmt.Errorf("the server's %s has more than %d items", method, maxListItems)
		}
	}
	u.lists.mu.Lock()
	if u.lists.gen == gen {
		if u.lists.items == nil {
			u.lists.items = map[string]any{}
		}
		u.lists.items[method] = out
	}
	u.lists.mu.Unlock()
	return out, nil
}

// offers reports whether u's server offers a feature; unknown (not
// connected) counts as yes.
func (u *upstream) offers(feature string) bool {
	u.mu.Lock()
	s := u.sess
	u.mu.Unlock()
	if s == nil || s.InitializeResult() == nil {
		return true
	}
	c := s.InitializeResult().Capabilities
	if c == nil {
		return false
	}
	switch feature {
	case "resources":
		return c.Resources != nil
	case "prompts":
		return c.Prompts != nil
	case "completions":
		return c.Completions != nil
	case "subscribe":
		return c.Resources != nil && c.Resources.Subscribe
	}
	return false
}

// upstreams is every upstream, by orchestra name.
func (m *Manager) upstreamList() []*upstream {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*upstream, 0, len(m.upstreams))
	for _, u := range m.upstreams {
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// promptUpstream is the upstream of a prompt name and the server's name of
// the prompt.
func (m *Manager) promptUpstream(name string) (*upstream, string, error) {
	for _, u := range m.upstreamList() {
		if strings.HasPrefix(name, u.name+".") {
			p, err := ToolName(u.name, name)
			return u, p, err
		}
	}
	return nil, "", fmt.Errorf("prompt %q is not of an MCP orchestra: the kernel's prompt names are <orchestra>.<prompt> (from prompts/list)", name)
}

// resourceUpstream is the upstream of a resource URI and the server's URI.
func (m *Manager) resourceUpstream(uri string) (*upstream, string, error) {
	o, rest, err := SplitResourceURI(uri)
	if err != nil {
		return nil, "", err
	}
	u := m.upstream(o)
	if u == nil {
		return nil, "", fmt.Errorf("resource %q: %q is not an MCP orchestra", uri, o)
	}
	return u, rest, nil
}

// advertise fills the capabilities the endpoint offers an agent: the
// resources, prompts and completions of any orchestra's server (one not
// connected yet may have them), with list_changed passed on.
func (e *Endpoint) advertise(c *mcp.ServerCapabilities) {
	if c == nil {
		return
	}
	for _, u := range e.m.upstreamList() {
		if u.offers("resources") && c.Resources == nil {
			c.Resources = &mcp.ResourceCapabilities{ListChanged: true}
		}
		if u.offers("subscribe") && c.Resources != nil {
			c.Resources.Subscribe = true
		}
		if u.offers("prompts") && c.Prompts == nil {
			c.Prompts = &mcp.PromptCapabilities{ListChanged: true}
		}
		if u.offers("completions") && c.Completions == nil {
			c.Completions = &mcp.CompletionCapabilities{}
		}
	}
}

// keyed is a list item under the name the agent sees.
type keyed[T any] struct {
	key  string
	item T
}

// pageOf is one page of items after cursor.
func pageOf[T any](items []keyed[T], cursor string, size int) ([]T, string, error) {
	sort.Slice(items, func(i, j int) bool { return items[i].key < items[j].key })
	start := 0
	if cursor != "" {
		after, err := base64.RawURLEncoding.DecodeString(cursor)
		if err != nil || len(cursor) > 8192 {
			return nil, "", &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("invalid cursor %.40q: pass the nextCursor of the previous page unchanged", cursor)}
		}
		start = sort.Search(len(items), func(i int) bool { return items[i].key > string(after) })
	}
	end := min(start+size, len(items))
	out := make([]T, 0, end-start)
	for _, it := range items[start:end] {
		out = append(out, it.item)
	}
	next := ""
	if end < len(items) {
		next = base64.RawURLEncoding.EncodeToString([]byte(items[end-1].key))
	}
	return out, next, nil
}

// gather fetches one list of every orchestra that offers feature, in
// parallel; an orchestra whose server is down or fails is left out (and
// logged), the others still listed.
func gather[T any](ctx context.Context, e *Endpoint, feature, method string, fetch func(*mcp.ClientSession) iter.Seq2[T, error], each func(u *upstream, it T)) {
	ups := e.m.upstreamList()
	res := make([][]T, len(ups))
	var wg sync.WaitGroup
	for i, u := range ups {
		if !u.offers(feature) {
			continue
		}
		wg.Go(func() {
			// A server not connected yet (just put, restarting) gets a
			// moment; one that stays down does not hold the list.
			cctx, cancel := context.WithTimeout(ctx, e.m.cfg.ListWait)
			defer cancel()
			items, err := cachedList(cctx, u, method, fetch)
			if err != nil {
				e.m.log.Warn("mcp: listing a server's "+method+" failed; left out", "orchestra", u.name, "err", err)
				return
			}
			res[i] = items
		})
	}
	wg.Wait()
	for i, u := range ups {
		for _, it := range res[i] {
			each(u, it)
		}
	}
}

// visible decides whether the agent may see an item: the method that uses
// it, decided as the endpoint decides that method, is not denied
// outright.
func (e *Endpoint) visible(c *caller, method string, params mcp.Params, orchestra string) bool {
	_, dec := e.decide(c, method, params, orchestra)
	return !gateway.DeniedOutright(dec)
}

// list answers resources/list, resources/templates/list and prompts/list.
func (e *Endpoint) list(ctx context.Context, c *caller, method string, req mcp.Request) (mcp.Result, error) {
	cursor := cursorOf(req.GetParams())
	if e.gw.KillFor(c.agent, "mcp."+strings.ReplaceAll(method, "/", ".")) != nil {
		return emptyList(method), nil
	}
	size := e.m.cfg.PageSize
	switch method {
	case "resources/list":
		var items []keyed[*mcp.Resource]
		gather(ctx, e, "resources", method, func(s *mcp.ClientSession) iter.Seq2[*mcp.Resource, error] { return s.Resources(ctx, nil) },
			func(u *upstream, r *mcp.Resource) {
				cp := *r
				cp.URI = ResourceURI(u.name, r.URI)
				if e.visible(c, "resources/read", &mcp.ReadResourceParams{URI: cp.URI}, u.name) {
					items = append(items, keyed[*mcp.Resource]{cp.URI, &cp})
				}
			})
		out, next, err := pageOf(items, cursor, size)
		if err != nil {
			return nil, err
		}
		return &mcp.ListResourcesResult{Resources: out, NextCursor: next}, nil
	case "resources/templates/list":
		var items []keyed[*mcp.ResourceTemplate]
		gather(ctx, e, "resources", method, func(s *mcp.ClientSession) iter.Seq2[*mcp.ResourceTemplate, error] {
			return s.ResourceTemplates(ctx, nil)
		}, func(u *upstream, t *mcp.ResourceTemplate) {
			cp := *t
			cp.URITemplate = ResourceURI(u.name, t.URITemplate)
			if e.visible(c, "resources/read", &mcp.ReadResourceParams{URI: cp.URITemplate}, u.name) {
				items = append(items, keyed[*mcp.ResourceTemplate]{cp.URITemplate, &cp})
			}
		})
		out, next, err := pageOf(items, cursor, size)
		if err != nil {
			return nil, err
		}
		return &mcp.ListResourceTemplatesResult{ResourceTemplates: out, NextCursor: next}, nil
	default: // prompts/list
		var items []keyed[*mcp.Prompt]
		gather(ctx, e, "prompts", method, func(s *mcp.ClientSession) iter.Seq2[*mcp.Prompt, error] { return s.Prompts(ctx, nil) },
			func(u *upstream, p *mcp.Prompt) {
				name, err := ToolAction(u.name, p.Name)
				if err != nil {
					e.m.log.Warn("mcp: a prompt's name does not map; left out", "orchestra", u.name, "prompt", p.Name, "err", err)
					return
				}
				cp := *p
				cp.Name = name
				if e.visible(c, "prompts/get", &mcp.GetPromptParams{Name: name}, u.name) {
					items = append(items, keyed[*mcp.Prompt]{name, &cp})
				}
			})
		out, next, err := pageOf(items, cursor, size)
		if err != nil {
			return nil, err
		}
		return &mcp.ListPromptsResult{Prompts: out, NextCursor: next}, nil
	}
}

func cursorOf(p mcp.Params) string {
	switch p := p.(type) {
	case *mcp.ListResourcesParams:
		if p != nil {
			return p.Cursor
		}
	case *mcp.ListResourceTemplatesParams:
		if p != nil {
			return p.Cursor
		}
	case *mcp.ListPromptsParams:
		if p != nil {
			return p.Cursor
		}
	}
	return ""
}

func emptyList(method string) mcp.Result {
	switch method {
	case "resources/list":
		return &mcp.ListResourcesResult{Resources: []*mcp.Resource{}}
	case "resources/templates/list":
		return &mcp.ListResourceTemplatesResult{ResourceTemplates: []*mcp.ResourceTemplate{}}
	}
	return &mcp.ListPromptsResult{Prompts: []*mcp.Prompt{}}
}

// routed is a request for one orchestra's server: resources/read,
// prompts/get, completion/complete; and resources/subscribe and
// unsubscribe, whose call is nil (the SDK's server handles them, through
// the endpoint's handlers).
type routed struct {
	u    *upstream
	call func(ctx context.Context, s *mcp.ClientSession) (mcp.Result, error)
}

// route finds the orchestra a request is for and how to ask its server
// (names and URIs unprefixed, the answer's URIs prefixed); an error says
// what was wrong with the request.
func (e *Endpoint) route(method string, req mcp.Request) (*routed, error) {
	bad := func(err error) error { return &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: err.Error()} }
	switch r := req.(type) {
	case *mcp.ReadResourceRequest:
		if r.Params == nil || r.Params.URI == "" {
			return nil, bad(errors.New("resources/read needs params {uri}"))
		}
		u, uri, err := e.m.resourceUpstream(r.Params.URI)
		if err != nil {
			return nil, bad(err)
		}
		p := *r.Params
		p.URI = uri
		return &routed{u: u, call: func(ctx context.Context, s *mcp.ClientSession) (mcp.Result, error) {
			res, err := s.ReadResource(ctx, &p)
			if err != nil {
				return nil, err
			}
			cp := *res
			cp.Contents = prefixContents(u.name, res.Contents)
			return &cp, nil
		}}, nil
	case *mcp.GetPromptRequest:
		if r.Params == nil || r.Params.Name == "" {
			return nil, bad(errors.New("prompts/get needs params {name}"))
		}
		u, name, err := e.m.promptUpstream(r.Params.Name)
		if err != nil {
			return nil, bad(err)
		}
		p := *r.Params
		p.Name = name
		return &routed{u: u, call: func(ctx context.Context, s *mcp.ClientSession) (mcp.Result, error) {
			res, err := s.GetPrompt(ctx, &p)
			if err != nil {
				return nil, err
			}
			cp := *res
			cp.Messages = make([]*mcp.PromptMessage, len(res.Messages))
			for i, m := range res.Messages {
				mc := *m
				mc.Content = prefixContent(u.name, m.Content)
				cp.Messages[i] = &mc
			}
			return &cp, nil
		}}, nil
	case *mcp.SubscribeRequest, *mcp.UnsubscribeRequest:
		// The SDK's server keeps who subscribed (for ResourceUpdated) and
		// calls the endpoint's handlers (subscribe.go): no call here.
		uri := ""
		if sr, ok := r.(*mcp.SubscribeRequest); ok && sr.Params != nil {
			uri = sr.Params.URI
		} else if ur, ok := r.(*mcp.UnsubscribeRequest); ok && ur.Params != nil {
			uri = ur.Params.URI
		}
		if uri == "" {
			return nil, bad(fmt.Errorf("%s needs params {uri}", method))
		}
		u, _, err := e.m.resourceUpstream(uri)
		if err != nil {
			return nil, bad(err)
		}
		return &routed{u: u}, nil
	case *mcp.CompleteRequest:
		if r.Params == nil || r.Params.Ref == nil {
			return nil, bad(errors.New("completion/complete needs params {ref, argument}"))
		}
		p := *r.Params
		ref := *r.Params.Ref
		var u *upstream
		var err error
		switch ref.Type {
		case "ref/prompt":
			u, ref.Name, err = e.m.promptUpstream(ref.Name)
		case "ref/resource":
			u, ref.URI, err = e.m.resourceUpstream(ref.URI)
		default:
			err = fmt.Errorf("completion/complete: ref.type %q is neither ref/prompt nor ref/resource", ref.Type)
		}
		if err != nil {
			return nil, bad(err)
		}
		p.Ref = &ref
		return &routed{u: u, call: func(ctx context.Context, s *mcp.ClientSession) (mcp.Result, error) {
			return s.Complete(ctx, &p)
		}}, nil
	}
	return nil, bad(fmt.Errorf("%s is not routed to a server", method))
}

func prefixContents(orchestra string, cs []*mcp.ResourceContents) []*mcp.ResourceContents {
	out := make([]*mcp.ResourceContents, len(cs))
	for i, c := range cs {
		if c == nil {
			continue
		}
		cp := *c
		if cp.URI != "" {
			cp.URI = ResourceURI(orchestra, cp.URI)
		}
		out[i] = &cp
	}
	return out
}

func prefixContent(orchestra string, c mcp.Content) mcp.Content {
	switch c := c.(type) {
	case *mcp.EmbeddedResource:
		cp := *c
		if c.Resource != nil {
			cp.Resource = prefixContents(orchestra, []*mcp.ResourceContents{c.Resource})[0]
		}
		return &cp
	case *mcp.ResourceLink:
		cp := *c
		cp.URI = ResourceURI(orchestra, c.URI)
		return &cp
	}
	return c
}

// forwardRouted asks the server, bounded by RequestTimeout; the server's
// JSON-RPC error is answered as it is.
func (e *Endpoint) forwardRouted(ctx context.Context, method string, r *routed) (mcp.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, e.m.cfg.RequestTimeout)
	defer cancel()
	s, err := r.u.session(ctx)
	if err != nil {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: err.Error(), Data: errorData(gateway.CodeUnavailable, err.Error())}
	}
	start := time.Now()
	res, err := r.call(ctx, s)
	if mt := e.m.cfg.Metrics; mt != nil {
		mt.observeRequest(r.u.name, method, time.Since(start), err)
	}
	if err != nil {
		var je *jsonrpc.Error
		if errors.As(err, &je) {
			return nil, je
		}
		msg := fmt.Sprintf("orchestra %q: %s: %v", r.u.name, method, err)
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: msg, Data: errorData(gateway.CodeBackend, msg)}
	}
	return res, nil
}

// routedMethods are answered by one orchestra's server.
var routedMethods = []string{"resources/read", "prompts/get", "completion/complete", "resources/subscribe", "resources/unsubscribe"}

// listMethods are aggregated over the orchestras' servers.
var listMethods = []string{"resources/list", "resources/templates/list", "prompts/list"}

func isRouted(method string) bool { return slices.Contains(routedMethods, method) }
func isList(method string) bool   { return slices.Contains(listMethods, method) }
