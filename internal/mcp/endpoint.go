package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/audit"
	kauth "github.com/aibos/kernel/internal/auth"
	"github.com/aibos/kernel/internal/gateway"
	"github.com/aibos/kernel/internal/jcs"
	"github.com/aibos/kernel/internal/store"
)

// Paths the endpoint serves.
const (
	Path         = "/mcp"
	MetadataPath = "/.well-known/oauth-protected-resource"
)

// Codes of the endpoint's refusals, in a tool error's
// _meta["aibos/error"].code or a JSON-RPC error's data.code.
const (
	CodeQuarantined      = api.CodeQuarantined
	CodeApprovalRequired = api.CodeApprovalRequired
	CodeApprovalPending  = api.CodeApprovalPending
	CodeMappingError     = api.CodeMappingError
	CodeUnknownTool      = api.CodeUnknownTool
	// codeDenied is the JSON-RPC error code of a method the kernel denied.
	codeDenied = -32003
)

// Endpoint serves MCP to agents: Path (streamable HTTP, through the SDK's
// server, which keeps its Origin and DNS-rebinding protection) and the
// protected-resource metadata (RFC 9728).
type Endpoint struct {
	m       *Manager
	gw      *gateway.Gateway
	store   Store
	audit   gateway.Recorder
	node    string
	srv     *mcp.Server
	handler http.Handler
	now     func() time.Time
	access  AccessTokens // nil: agent tokens only
	issuer  string

	toolsMu  sync.Mutex
	tools    map[string]*mcp.Tool // decoded definitions by digest; guarded by toolsMu
	mappings map[string]compiled  // declared mappings by digest; guarded by toolsMu

	subsMu sync.Mutex
	subs   map[string]map[string]bool // prefixed URI → the sessions subscribed to it; guarded by subsMu

	viewsMu sync.Mutex
	views   map[string]sessionView // by session id: the tool list it was last shown; guarded by viewsMu
}

// compiled is a tool's declared mapping (nil: none) or why it failed.
type compiled struct {
	m   *Mapping
	err error
}

// EndpointConfig configures an Endpoint.
type EndpointConfig struct {
	Gateway *gateway.Gateway
	Audit   gateway.Recorder
	Node    string
	Now     func() time.Time
	// AccessTokens, if set, verifies the access tokens of the OIDC issuer
	// the node trusts (the server's auth.Verifier): an agent may then
	// present one whose sub is the user and whose client_id (or azp) is
	// the agent's id, instead of its aibos_ token.
	AccessTokens AccessTokens
	// Issuer, with AccessTokens, is the issuer's URL, named in the
	// protected-resource metadata as the authorization server.
	Issuer string
}

// AccessTokens verifies an OIDC issuer's access tokens (*auth.Verifier).
type AccessTokens interface {
	VerifyAccessToken(ctx context.Context, raw string) (kauth.AccessToken, error)
}

// sentinelTool is added and removed again to make the SDK send
// tools/list_changed to every session: the SDK has no other way to send
// it, and the tools it lists are never the SDK's (tools/list and
// tools/call are answered by the middleware).
const sentinelTool = "aibos-list-changed"

// Endpoint builds the downstream endpoint over the gateway.
func (m *Manager) Endpoint(cfg EndpointConfig) *Endpoint {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	e := &Endpoint{m: m, gw: cfg.Gateway, store: m.cfg.Store, audit: cfg.Audit, node: cfg.Node, now: cfg.Now, access: cfg.AccessTokens, issuer: cfg.Issuer,
		tools: make(map[string]*mcp.Tool), mappings: make(map[string]compiled), views: make(map[string]sessionView), subs: make(map[string]map[string]bool)}
	e.srv = mcp.NewServer(&mcp.Implementation{Name: "aibos-kernel", Title: "AI-BOS Kernel MCP gateway", Version: "1"}, &mcp.ServerOptions{
		Capabilities:       &mcp.ServerCapabilities{Tools: &mcp.ToolCapabilities{ListChanged: true}},
		Logger:             m.log,
		SubscribeHandler:   e.subscribe,
		UnsubscribeHandler: e.unsubscribe,
	})
	e.srv.AddReceivingMiddleware(e.middleware)
	e.srv.AddSendingMiddleware(e.sending)
	sdk := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return e.srv }, &mcp.StreamableHTTPOptions{
		Logger: m.log, SessionTimeout: 30 * time.Minute,
	})
	// The agent is verified once, below; the SDK's middleware only
	// carries the result into the session.
	verified := func(ctx context.Context, token string, r *http.Request) (*auth.TokenInfo, error) {
		if info, ok := ctx.Value(verifiedKey{}).(*auth.TokenInfo); ok {
			return info, nil
		}
		return e.verify(ctx, token, r)
	}
	bearer := auth.RequireBearerToken(verified, &auth.RequireBearerTokenOptions{
		ResourceMetadataURL: "", AllowMissingExpiration: true,
	})
	e.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// RequireBearerToken names the metadata only when configured; the
		// URL depends on the host the client used.
		w.Header().Set("WWW-Authenticate", fmt.Sprintf("Bearer resource_metadata=%q", metadataURL(r)))
		// Refused here, the 401 is the API's JSON error, as on every
		// other route.
		var info *auth.TokenInfo
		tok, err := kauth.Credential(r)
		if err == nil {
			info, err = e.verify(r.Context(), tok, r)
		}
		if err != nil {
			msg := err.Error()
			if errors.Is(err, kauth.ErrNoCredential) {
				msg = r.Method + " " + Path + " needs the agent's token: send the token issued at registration as 'Authorization: Bearer aibos_...'"
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(api.ErrorBody{Error: api.ErrorDetail{Code: "unauthenticated", Message: msg}})
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), verifiedKey{}, info))
		bearer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Del("WWW-Authenticate")
			sdk.ServeHTTP(w, r)
		})).ServeHTTP(w, r)
	})
	m.OnToolsChanged(e.toolsChanged)
	m.OnListChanged(e.listChanged)
	m.OnResourceUpdated(e.resourceUpdated)
	m.OnConnected(e.resubscribe)
	return e
}

// verifiedKey holds the *auth.TokenInfo of the agent the endpoint has
// verified for a request.
type verifiedKey struct{}

func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func metadataURL(r *http.Request) string { return baseURL(r) + MetadataPath + Path }

// ServeHTTP serves Path and the metadata.
func (e *Endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, MetadataPath) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		md := map[string]any{
			"resource":                 baseURL(r) + Path,
			"bearer_methods_supported": []string{"header"},
			"resource_name":            "AI-BOS Kernel MCP gateway",
			"resource_documentation":   "Authenticate with the agent's token from registration: Authorization: Bearer aibos_...",
		}
		if e.access != nil && e.issuer != "" {
			md["authorization_servers"] = []string{e.issuer}
			md["resource_documentation"] = "Authenticate with the agent's token from registration (Authorization: Bearer aibos_...), or with an access token of " + e.issuer + " whose sub is the user and whose client_id is the agent's id"
		}
		json.NewEncoder(w).Encode(md)
		return
	}
	e.handler.ServeHTTP(w, r)
}

// Close ends every downstream session.
func (e *Endpoint) Close() {
	for s := range e.srv.Sessions() {
		s.Close()
	}
}

// Sessions is the number of downstream sessions.
func (e *Endpoint) Sessions() int {
	n := 0
	for range e.srv.Sessions() {
		n++
	}
	return n
}

func (e *Endpoint) toolsChanged() {
	e.pruneViews()
	e.srv.AddTool(&mcp.Tool{Name: sentinelTool, InputSchema: map[string]any{"type": "object"}},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return nil, errors.New("not a tool")
		})
	e.srv.RemoveTools(sentinelTool)
}

// listChanged passes a server's resources or prompts list_changed on to
// every session, the way toolsChanged does (a sentinel added and removed;
// the middleware answers those lists and reads itself, so the SDK's own
// are never seen).
func (e *Endpoint) listChanged(list string) {
	switch list {
	case "resources":
		e.srv.AddResource(&mcp.Resource{URI: "aibos://list-changed", Name: sentinelTool},
			func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
				return nil, errors.New("not a resource")
			})
		e.srv.RemoveResources("aibos://list-changed")
	case "prompts":
		e.srv.AddPrompt(&mcp.Prompt{Name: sentinelTool}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return nil, errors.New("not a prompt")
		})
		e.srv.RemovePrompts(sentinelTool)
	}
}

// verify authenticates an agent for RequireBearerToken: its aibos_ token,
// or an access token of the trusted OIDC issuer whose client_id (or azp)
// is a registered, active agent and whose sub is the user it acts for.
func (e *Endpoint) verify(ctx context.Context, token string, r *http.Request) (*auth.TokenInfo, error) {
	// aud is this server as the client addressed it: the resource id of
	// the methods whose resource is the MCP server (COAZ-MCP's $token.aud).
	aud := baseURL(r) + Path
	if e.access != nil && !strings.HasPrefix(token, "aibos_") {
		at, err := e.access.VerifyAccessToken(ctx, token)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", auth.ErrInvalidToken, err)
		}
		a, ok := e.store.Agent(at.ClientID)
		if !ok {
			return nil, fmt.Errorf("%w: the access token's client %q is not a registered agent: register the agent under the client id its issuer gives it", auth.ErrInvalidToken, at.ClientID)
		}
		if a.State != api.AgentActive {
			return nil, fmt.Errorf("%w: agent %q is %s", auth.ErrInvalidToken, a.ID, a.State)
		}
		// The SDK binds a session to UserID: the agent acting for this
		// user, so another user's token of the same agent cannot use it.
		return &auth.TokenInfo{UserID: a.ID + "\x00" + at.Issuer + "\x00" + at.Subject, Expiration: at.ExpiresAt,
			Extra: map[string]any{"token": token, "aud": aud, "agent": a.ID, "user": at.Subject, "issuer": at.Issuer, "claims": at.Claims}}, nil
	}
	a, ok := e.store.AgentByToken(token)
	if !ok {
		return nil, fmt.Errorf("%w: no valid agent credential: send the token issued at registration as 'Authorization: Bearer aibos_...'", auth.ErrInvalidToken)
	}
	if a.State != api.AgentActive {
		return nil, fmt.Errorf("%w: agent %q is %s", auth.ErrInvalidToken, a.ID, a.State)
	}
	return &auth.TokenInfo{UserID: a.ID, Extra: map[string]any{"token": token, "aud": aud}}, nil
}

// caller is the authenticated agent of a request.
type caller struct {
	agent   api.Agent
	token   string
	session string
	aud     string
	// user and issuer: the user the agent acts for, from a verified OIDC
	// access token ("": the agent's own token, no user); claims are all
	// of that token's (shared, read only).
	user, issuer string
	claims       map[string]any
}

func (e *Endpoint) caller(req mcp.Request) (*caller, error) {
	ex := req.GetExtra()
	if ex == nil || ex.TokenInfo == nil {
		return nil, errors.New("no credential")
	}
	tok, _ := ex.TokenInfo.Extra["token"].(string)
	c := &caller{token: tok}
	var a api.Agent
	var ok bool
	if id, isOIDC := ex.TokenInfo.Extra["agent"].(string); isOIDC {
		a, ok = e.store.Agent(id)
		c.user, _ = ex.TokenInfo.Extra["user"].(string)
		c.issuer, _ = ex.TokenInfo.Extra["issuer"].(string)
		c.claims, _ = ex.TokenInfo.Extra["claims"].(map[string]any)
	} else {
		a, ok = e.store.AgentByToken(tok)
	}
	if !ok || a.State != api.AgentActive {
		return nil, errors.New("the agent's credential is no longer valid")
	}
	c.agent = a
	if s, ok := req.GetSession().(*mcp.ServerSession); ok {
		c.session = s.ID()
	}
	c.aud, _ = ex.TokenInfo.Extra["aud"].(string)
	return c, nil
}

// token_ is the token as a declared mapping sees it (COAZ-MCP's $token):
// an access token's claims, with sub the user the agent acts for (or the
// agent itself when it speaks for no one), client_id the agent and aud
// this server (one string, as COAZ-MCP resolves it).
func (c *caller) token_() map[string]any {
	t := make(map[string]any, len(c.claims)+3)
	for k, v := range c.claims {
		t[k] = v
	}
	t["sub"], t["client_id"], t["aud"] = cmpOr(c.user, c.agent.ID), c.agent.ID, c.aud
	return t
}

// userContext is context.user of the caller's decisions (nil: none).
func (c *caller) userContext() map[string]any {
	if c.user == "" {
		return nil
	}
	return map[string]any{"id": c.user, "issuer": c.issuer}
}

// middleware decides every method before the SDK's server sees it.
func (e *Endpoint) middleware(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		if method == "ping" || strings.HasPrefix(method, "notifications/") {
			e.m.cfg.Metrics.request(method, "pass")
			return next(ctx, method, req)
		}
		c, err := e.caller(req)
		if err != nil {
			return nil, &jsonrpc.Error{Code: codeDenied, Message: err.Error()}
		}
		switch method {
		case "tools/call":
			r, _ := req.(*mcp.CallToolRequest)
			if r == nil || r.Params == nil {
				return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "tools/call needs params {name, arguments}"}
			}
			return e.callTool(ctx, c, r)
		}
		var rt *routed
		orchestra := ""
		if isRouted(method) {
			if rt, err = e.route(method, req); err != nil {
				e.m.cfg.Metrics.request(method, "deny")
				e.record(c, method, "", "deny", err.Error())
				return nil, err
			}
			orchestra = rt.u.name
		}
		d, dec := e.decide(c, method, req.GetParams(), orchestra)
		if d.action == "" {
			e.m.cfg.Metrics.request(method, "deny")
			e.record(c, method, "", "deny", "unknown method: the kernel denies methods it has no mapping for")
			return nil, &jsonrpc.Error{Code: jsonrpc.CodeMethodNotFound, Message: fmt.Sprintf("method %q is not allowed through the kernel: it has no COAZ-MCP mapping", method)}
		}
		if k := e.gw.KillFor(c.agent, d.action); k != nil && rt != nil && method != "resources/unsubscribe" {
			// As for tools/call: a kill switch stops what would reach a
			// server (but not giving up a subscription).
			msg := fmt.Sprintf("%s: stopped by kill switch %s (%s %s): %s", d.action, k.ID, k.Scope, k.Target, k.Reason)
			e.m.cfg.Metrics.request(method, "deny")
			dec.Decision = api.Deny
			e.recordDecision(c, method, d, dec, "", gateway.CodeKilled+": "+msg)
			return nil, &jsonrpc.Error{Code: codeDenied, Message: msg, Data: errorData(gateway.CodeKilled, msg)}
		}
		e.m.cfg.Metrics.request(method, string(dec.Decision))
		if dec.Decision != api.Allow {
			msg := gateway.DenyMessage(dec)
			if dec.Decision == api.RequireApproval {
				msg = "method " + method + " requires approval, which only tools/call supports: ask an operator to allow " + d.action
			}
			e.recordDecision(c, method, d, dec, "", msg)
			return nil, &jsonrpc.Error{Code: codeDenied, Message: fmt.Sprintf("%s (action %s): %s", method, d.action, msg), Data: errorData(gateway.CodeDenied, msg)}
		}
		switch {
		case rt != nil:
			var res mcp.Result
			if rt.call == nil {
				res, err = next(ctx, method, req)
			} else {
				res, err = e.forwardRouted(ctx, method, rt)
			}
			status, msg := api.InvocationCompleted, ""
			if err != nil {
				status, msg = api.InvocationFailed, err.Error()
			}
			e.recordDecision(c, method, d, dec, status, msg)
			return res, err
		case method == "tools/list":
			e.recordDecision(c, method, d, dec, "", "")
			r := e.listTools(c)
			e.shown(c, r)
			return r, nil
		case isList(method):
			e.recordDecision(c, method, d, dec, "", "")
			return e.list(ctx, c, method, req)
		}
		e.recordDecision(c, method, d, dec, "", "")
		res, err := next(ctx, method, req)
		switch r := res.(type) {
		case *mcp.InitializeResult:
			e.advertise(r.Capabilities)
			e.shown(c, e.listTools(c)) // what it would see: told only of changes from here
		case *mcp.DiscoverResult:
			e.advertise(r.Capabilities)
		}
		return res, err
	}
}

// decide decides a method other than tools/call by its COAZ-MCP default
// mapping (an empty action: the method has none, and is denied). The
// orchestra, for a method that one orchestra's server answers, is in the
// context.
func (e *Endpoint) decide(c *caller, method string, params mcp.Params, orchestra string) (mapped, api.Decision) {
	d, ok := defaultMapping(method, params)
	if !ok {
		return mapped{}, api.Decision{Decision: api.Deny}
	}
	if d.resource.ID == "" {
		d.resource.ID = c.aud
	}
	ctxMap := map[string]any{"agent": c.agent.ID, "mcp_method": method}
	if orchestra != "" {
		ctxMap["orchestra"] = orchestra
	}
	for k, v := range d.context {
		ctxMap[k] = v
	}
	if u := c.userContext(); u != nil {
		ctxMap["user"] = u
	}
	return d, e.gw.DecideFor(c.agent, d.action, d.resource, ctxMap)
}

func errorData(code, msg string) json.RawMessage {
	b, _ := json.Marshal(map[string]string{"code": code, "message": msg})
	return b
}

// listTools lists the tools the agent may call: its capabilities cover
// them, no kill switch stops them, policy does not deny them outright, and
// their definition is the pinned one.
func (e *Endpoint) listTools(c *caller) *mcp.ListToolsResult {
	out := &mcp.ListToolsResult{Tools: []*mcp.Tool{}}
	for _, a := range e.gw.Catalog() {
		if a.Backend != api.BackendMCP || a.MCP == nil {
			continue
		}
		if e.gw.Screen(c.agent, a.Name) != "" || e.m.Quarantine(a.Orchestra, a.MCP) != "" {
			continue
		}
		t := e.tool(a.MCP)
		if t == nil {
			continue
		}
		cp := *t
		cp.Name = a.Name
		if a.Description != "" {
			cp.Description = a.Description
		}
		out.Tools = append(out.Tools, &cp)
	}
	return out
}

func (e *Endpoint) tool(pin *api.MCPTool) *mcp.Tool {
	e.toolsMu.Lock()
	defer e.toolsMu.Unlock()
	if t, ok := e.tools[pin.Digest]; ok {
		return t
	}
	t, _, err := DecodeDefinition(pin.Definition)
	if err != nil {
		e.m.log.Error("mcp: pinned tool definition unreadable", "tool", pin.Tool, "err", err)
		return nil
	}
	if len(e.tools) > 10000 {
		clear(e.tools)
	}
	e.tools[pin.Digest] = t
	return t
}

// mapping is the compiled declared mapping of a pinned tool, compiled
// once per definition.
func (e *Endpoint) mapping(pin *api.MCPTool) (*Mapping, error) {
	e.toolsMu.Lock()
	c, ok := e.mappings[pin.Digest]
	e.toolsMu.Unlock()
	if ok {
		return c.m, c.err
	}
	t := e.tool(pin)
	if t == nil {
		return nil, fmt.Errorf("%w: the pinned definition of %q is unreadable", ErrMapping, pin.Tool)
	}
	c.m, c.err = compileMapping(t.InputSchema)
	e.toolsMu.Lock()
	if len(e.mappings) > 10000 {
		clear(e.mappings)
	}
	e.mappings[pin.Digest] = c
	e.toolsMu.Unlock()
	return c.m, c.err
}

// toolError is a tools/call answer the agent (and its model) can read.
func toolError(code, msg string, extra map[string]any) *mcp.CallToolResult {
	meta := map[string]any{"code": code, "message": msg}
	for k, v := range extra {
		meta[k] = v
	}
	return &mcp.CallToolResult{
		IsError: true,
		Content: []mcp.Content{&mcp.TextContent{Text: code + ": " + msg}},
		Meta:    mcp.Meta{"aibos/error": meta},
	}
}

// callTool runs a tools/call through the gateway's pipeline.
func (e *Endpoint) callTool(ctx context.Context, c *caller, r *mcp.CallToolRequest) (mcp.Result, error) {
	return e.call(ctx, c, r, false)
}

// call is callTool; waited: this is the call again after waiting for its
// approval (it does not wait twice).
func (e *Endpoint) call(ctx context.Context, c *caller, r *mcp.CallToolRequest, waited bool) (mcp.Result, error) {
	name := r.Params.Name
	entry, ok := e.gw.Action(name)
	if !ok || entry.Backend != api.BackendMCP || entry.MCP == nil {
		e.m.cfg.Metrics.request("tools/call", "deny")
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("unknown tool %q: call tools/list for the tools this agent may call", name), Data: errorData(CodeUnknownTool, name)}
	}
	if q := e.m.Quarantine(entry.Orchestra, entry.MCP); q != "" {
		msg := q + "; it is quarantined until an operator accepts the new definition (aibos orchestra accept " + entry.Orchestra + " " + entry.MCP.Tool + ")"
		e.record(c, "tools/call", name, "deny", CodeQuarantined+": "+msg)
		e.m.cfg.Metrics.request("tools/call", "deny")
		return toolError(CodeQuarantined, msg, nil), nil
	}
	args := r.Params.Arguments
	if len(args) == 0 || string(args) == "null" {
		args = json.RawMessage("{}")
	}
	body := api.InvokeRequest{Input: args}
	if m, err := e.mapping(entry.MCP); err != nil {
		return toolError(CodeMappingError, err.Error(), nil), nil
	} else {
		in := MappingInput{Token: c.token_(), Params: map[string]any{"name": name}}
		if m != nil {
			var argv any
			_ = json.Unmarshal(args, &argv)
			in.Params["arguments"] = argv
		}
		mapped, err := evalToolMapping(m, in, name)
		if err != nil {
			e.record(c, "tools/call", name, "deny", CodeMappingError+": "+err.Error())
			e.m.cfg.Metrics.request("tools/call", "deny")
			return toolError(CodeMappingError, err.Error(), nil), nil
		}
		body.Resource, body.Context = mapped.Resource, mapped.Context
	}
	digest, err := jcs.Digest(args)
	if err == nil {
		// For a user's call, the approval binds the user too.
		if a, ok := e.findApproval(c.agent, name, gateway.ApprovalDigest(digest, c.issuer, c.user)); ok {
			if a.State == api.ApprovalPending {
				msg := fmt.Sprintf("this call is waiting for approval %s (expires %s): once an operator approves it (aibos approval approve %s), call the tool again with the same arguments", a.ID, a.ExpiresAt.UTC().Format(time.RFC3339), a.ID)
				return toolError(CodeApprovalPending, msg, map[string]any{"approval_id": a.ID}), nil
			}
			body.ApprovalID = a.ID
		}
	}
	b, _ := json.Marshal(body)
	if tok := r.Params.GetProgressToken(); tok != nil {
		if ss := r.Session; ss != nil {
			ctx = WithProgress(ctx, func(p *mcp.ProgressNotificationParams) {
				ss.NotifyProgress(context.WithoutCancel(ctx), &mcp.ProgressNotificationParams{ProgressToken: tok, Progress: p.Progress, Total: p.Total, Message: p.Message})
			})
		}
	}
	call := gateway.Call{Token: c.token, Action: name, Body: b, Kind: audit.KindMCP, Note: "mcp tools/call session " + c.session}
	if c.user != "" {
		// Verified here (an access token): the gateway takes the agent
		// from the endpoint, and the user into the decision.
		call.Token, call.Agent, call.User, call.UserIssuer = "", c.agent.ID, c.user, c.issuer
	}
	rep := e.gw.Invoke(ctx, call)
	if rep.Forward {
		var err error
		if rep, err = e.forward(ctx, c, name, b); err != nil {
			return toolError(gateway.CodeUnavailable, err.Error(), nil), nil
		}
	}
	switch {
	case rep.Err != nil:
		e.m.cfg.Metrics.request("tools/call", "deny")
		return toolError(rep.Err.Code, rep.Err.Message, nil), nil
	}
	resp := rep.Resp
	e.m.cfg.Metrics.request("tools/call", string(resp.Decision))
	switch resp.Status {
	case api.InvocationCompleted:
		var res mcp.CallToolResult
		if err := json.Unmarshal(resp.Result, &res); err != nil {
			return toolError(gateway.CodeBackend, "the server's result is not a CallToolResult: "+err.Error(), nil), nil
		}
		return &res, nil
	case api.InvocationPendingApproval:
		if !waited {
			if a, ok := e.waitForApproval(ctx, r.Session, resp.ApprovalID, name); ok {
				if a.State == api.ApprovalDenied {
					return toolError(gateway.CodeDenied, fmt.Sprintf("approval %s was denied by %s: %s", a.ID, a.DecidedBy, a.Reason), map[string]any{"approval_id": a.ID}), nil
				}
				return e.call(ctx, c, r, true) // approved: the same arguments redeem it
			}
		}
		msg := fmt.Sprintf("held for approval %s: it runs once an operator approves it (aibos approval approve %s, or POST /v1/approvals/%s/approve); then call the tool again with the same arguments — it runs exactly once, and other arguments do not match", resp.ApprovalID, resp.ApprovalID, resp.ApprovalID)
		return toolError(CodeApprovalRequired, msg, map[string]any{"approval_id": resp.ApprovalID, "invocation_id": resp.InvocationID}), nil
	}
	code, msg := gateway.CodeUnavailable, "the call did not run"
	if resp.Error != nil {
		code, msg = resp.Error.Code, resp.Error.Message
	}
	return toolError(code, msg, map[string]any{"invocation_id": resp.InvocationID}), nil
}

// evalToolMapping applies a tool's declared mapping, or the default
// tools/call mapping (resource {type: tool, id: the tool's name}).
func evalToolMapping(m *Mapping, in MappingInput, name string) (Mapped, error) {
	if m == nil {
		return Mapped{Resource: &api.Entity{Type: "tool", ID: name}, Context: map[string]any{"agent": in.Token["client_id"]}}, nil
	}
	out, err := m.Eval(in)
	if err != nil {
		return out, err
	}
	if out.Resource == nil {
		out.Resource = &api.Entity{Type: "tool", ID: name}
	}
	if out.Context == nil {
		out.Context = map[string]any{}
	}
	if _, ok := out.Context["agent"]; !ok {
		out.Context["agent"] = in.Token["client_id"]
	}
	return out, nil
}

// findApproval is the agent's approval for exactly this call (same agent
// version, action and argument digest) that is approved (to redeem) or
// pending (to wait for); approved wins.
func (e *Endpoint) findApproval(a api.Agent, action, digest string) (api.Approval, bool) {
	now := e.now()
	var pending api.Approval
	found := false
	for _, ap := range e.store.Approvals() {
		if ap.Agent != a.ID || ap.AgentVersion != a.Version || ap.Action != action || ap.ArgsDigest != digest {
			continue
		}
		switch store.EffectiveApprovalState(ap, now) {
		case api.ApprovalApproved:
			return ap, true
		case api.ApprovalPending:
			pending, found = ap, true
		}
	}
	return pending, found
}

func (e *Endpoint) record(c *caller, method, tool, decision, msg string) {
	if e.audit == nil {
		return
	}
	e.audit.Append(&audit.Record{Time: e.now(), Node: e.node, Kind: audit.KindMCP, Agent: c.agent.ID, AgentVersion: c.agent.Version,
		Tenant: c.agent.Tenant, Subject: api.EntityTypeAgent + ":" + c.agent.ID, Action: cmpOr(tool, "mcp."+strings.ReplaceAll(method, "/", ".")),
		Decision: decision, Error: msg, Reason: "mcp " + method + " session " + c.session, User: c.user})
}

func (e *Endpoint) recordDecision(c *caller, method string, d mapped, dec api.Decision, status, msg string) {
	if e.audit == nil {
		return
	}
	r := &audit.Record{Time: e.now(), Node: e.node, Kind: audit.KindMCP, Agent: c.agent.ID, AgentVersion: c.agent.Version,
		Tenant: c.agent.Tenant, Subject: api.EntityTypeAgent + ":" + c.agent.ID, Action: d.action,
		Resource: d.resource.Type + ":" + d.resource.ID, Decision: string(dec.Decision), Version: dec.Version,
		Status: status, Error: msg, Reason: "mcp " + method + " session " + c.session, User: c.user}
	for _, rs := range dec.Reasons {
		if rs.Policy != "" {
			r.Rules = append(r.Rules, rs.Policy+"/"+rs.Rule)
		}
	}
	e.audit.Append(r)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
