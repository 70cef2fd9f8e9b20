package server

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/mcp"
)

// access says how a route authenticates.
type access int

const (
	// accessOperator: an operator credential, authorized by the system
	// bundle for the route's action (agent credentials reach the bundle
	// too, which refuses them but for what agents may do).
	accessOperator access = iota
	// accessPublic: no credential (liveness, readiness, discovery).
	accessPublic
	// accessAgent: the handler authenticates the agent itself (the
	// gateway's invoke).
	accessAgent
)

// Media types of request bodies; a body of another declared type is
// refused (415), which keeps browsers' form and text/plain posts out.
const (
	mediaJSON   = "application/json"
	mediaBundle = "bundle" // YAML, JSON or a tar (PUT /v1/policies and what takes a bundle)
	mediaWasm   = "application/wasm"
)

// route is one entry of the API: its mux pattern, the kernel.* action the
// system bundle decides for it, what it acts on, and its handler.
type route struct {
	pattern string
	action  string
	access  access
	// media is the body's media type; "" for routes without a body.
	media string
	// target names what the route acts on for the system bundle (tenant,
	// approval's agent, kill switch scope, ...); nil: {kernel, action}.
	target func(*Server, *http.Request) api.Entity
	// leader routes run on the leader; a follower forwards them.
	leader bool
	// audited: the handler writes its own, richer audit record of the act.
	audited bool
	// node: nodes call it on each other; with node TLS a node's
	// certificate is its credential (as for a join).
	node bool
	// query: a POST that changes nothing (a decision, a simulation), so
	// not an operator act to audit.
	query bool
	h     http.HandlerFunc
}

// routeTable is every route the mux serves. routes() registers only
// these, and TestEveryRouteDeclaresAnAction fails on a route without an
// action or one registered around the table.
func (s *Server) routeTable() []route {
	rt := []route{
		{pattern: "POST /v1/check", action: "kernel.decision.check", query: true, media: mediaJSON, h: s.handleCheck},
		{pattern: "POST /v1/check/batch", action: "kernel.decision.check", query: true, media: mediaJSON, h: s.handleCheckBatch},
		{pattern: "POST /access/v1/evaluation", action: "kernel.decision.check", query: true, media: mediaJSON, h: s.handleAuthZENEvaluation},
		{pattern: "POST /access/v1/evaluations", action: "kernel.decision.check", query: true, media: mediaJSON, h: s.handleAuthZENEvaluations},
		{pattern: "GET /.well-known/authzen-configuration", access: accessPublic, h: s.handleAuthZENConfig},
		{pattern: "POST /access/v1/search/subject", action: "kernel.decision.search", query: true, media: mediaJSON, h: s.handleSearch(searchSubject)},
		{pattern: "POST /access/v1/search/resource", action: "kernel.decision.search", query: true, media: mediaJSON, h: s.handleSearch(searchResource)},
		{pattern: "POST /access/v1/search/action", action: "kernel.decision.search", query: true, media: mediaJSON, h: s.handleSearch(searchAction)},
		// An access request is the PEP's (the denied subject's side); it is
		// decided like any held act, by an approver (kernel.approval.decide).
		{pattern: "POST /access/v1/requests", action: "kernel.access.request", media: mediaJSON, leader: true, h: s.handleAccessRequest},
		{pattern: "GET /access/v1/requests/{id}", action: "kernel.access.status", target: accessRequestTarget, h: s.handleAccessRequestStatus},

		{pattern: "PUT /v1/policies", action: "kernel.policy.publish", media: mediaBundle, leader: true, target: bundleTarget, h: s.handlePublish},
		{pattern: "GET /v1/policies", action: "kernel.policy.read", h: s.handleCurrentPolicies},
		{pattern: "GET /v1/policies/versions", action: "kernel.policy.read", h: s.handleVersions},
		{pattern: "GET /v1/policies/versions/{v}", action: "kernel.policy.read", h: s.handleVersion},
		{pattern: "POST /v1/policies/rollback", action: "kernel.policy.rollback", media: mediaJSON, leader: true, target: bundleTarget, h: s.handleRollback},
		{pattern: "POST /v1/policies/simulate", action: "kernel.policy.simulate", query: true, media: mediaBundle, h: s.handleSimulate},

		{pattern: "PUT /v1/entities", action: "kernel.entity.write", media: mediaJSON, leader: true, h: s.handlePutEntities},
		{pattern: "GET /v1/entities/{type}/{id}", action: "kernel.entity.read", target: entityTarget, h: s.handleGetEntity},
		{pattern: "DELETE /v1/entities/{type}/{id}", action: "kernel.entity.delete", leader: true, target: entityTarget, h: s.handleDeleteEntity},

		{pattern: "GET /v1/watch", action: "kernel.policy.watch", h: s.handleWatch},

		{pattern: "POST /v1/rollouts", action: "kernel.rollout.start", media: mediaJSON, leader: true, target: bundleTarget, h: s.handleStartRollout},
		{pattern: "GET /v1/rollouts/current", action: "kernel.rollout.read", h: s.handleCurrentRollout},
		{pattern: "POST /v1/rollouts/abort", action: "kernel.rollout.abort", media: mediaJSON, leader: true, target: bundleTarget, h: s.handleAbortRollout},
		{pattern: "POST /v1/rollouts/promote", action: "kernel.rollout.promote", media: mediaJSON, leader: true, target: bundleTarget, h: s.handlePromoteRollout},

		{pattern: "POST /v1/agents", action: "kernel.agent.register", media: mediaJSON, leader: true, target: deferredTarget("agent"), h: s.handleRegisterAgent},
		{pattern: "GET /v1/agents", action: "kernel.agent.read", h: s.handleListAgents},
		{pattern: "GET /v1/agents/{id}", action: "kernel.agent.read", target: agentTarget, h: s.handleGetAgent},
		{pattern: "PATCH /v1/agents/{id}", action: "kernel.agent.update", media: mediaJSON, leader: true, target: agentTarget, h: s.handleUpdateAgent},
		{pattern: "POST /v1/agents/{id}/retire", action: "kernel.agent.retire", media: mediaJSON, leader: true, target: agentTarget, h: s.handleRetireAgent},
		{pattern: "POST /v1/agents/{id}/credentials/rotate", action: "kernel.agent.credential.rotate", media: mediaJSON, leader: true, target: agentTarget, h: s.handleRotateAgentCredential},
		{pattern: "DELETE /v1/agents/{id}/credentials", action: "kernel.agent.credential.revoke", leader: true, target: agentTarget, h: s.handleRevokeAgentCredential},
		{pattern: "GET /v1/agents/{id}/stats", action: "kernel.agent.stats", target: agentTarget, h: s.handleAgentStats},

		{pattern: "POST /v1/actions/{name}/invoke", action: "kernel.action.invoke", access: accessAgent, h: s.handleInvoke},
		{pattern: "GET /v1/actions", action: "kernel.catalog.read", h: s.handleListActions},
		{pattern: "GET /v1/orchestras", action: "kernel.catalog.read", h: s.handleListOrchestras},
		{pattern: "GET /v1/orchestras/{name}", action: "kernel.catalog.read", target: orchestraTarget, h: s.handleGetOrchestra},
		{pattern: "PUT /v1/orchestras/{name}", action: "kernel.catalog.write", media: mediaJSON, leader: true, target: orchestraTarget, h: s.handlePutOrchestra},
		{pattern: "DELETE /v1/orchestras/{name}", action: "kernel.catalog.delete", leader: true, target: orchestraTarget, h: s.handleDeleteOrchestra},
		{pattern: "POST /v1/orchestras/{name}/accept", action: "kernel.catalog.accept", media: mediaJSON, leader: true, target: orchestraTarget, h: s.handleAcceptOrchestra},

		{pattern: "GET /v1/approvals", action: "kernel.approval.read", h: s.handleListApprovals},
		{pattern: "GET /v1/approvals/{id}", action: "kernel.approval.wait", target: approvalTarget, h: s.handleGetApproval},
		{pattern: "POST /v1/approvals/{id}/approve", action: "kernel.approval.decide", media: mediaJSON, leader: true, audited: true, target: approvalTarget, h: s.handleDecideApproval(true)},
		{pattern: "POST /v1/approvals/{id}/deny", action: "kernel.approval.decide", media: mediaJSON, leader: true, audited: true, target: approvalTarget, h: s.handleDecideApproval(false)},

		{pattern: "GET /v1/kill", action: "kernel.kill.read", h: s.handleListKills},
		{pattern: "POST /v1/kill", action: "kernel.kill.set", media: mediaJSON, leader: true, audited: true, target: deferredTarget("kill"), h: s.handleSetKill},
		{pattern: "POST /v1/kill/{id}/lift", action: "kernel.kill.lift", media: mediaJSON, leader: true, audited: true, target: killSwitchTarget, h: s.handleLiftKill},

		{pattern: "PUT /v1/system-policy", action: "kernel.system.publish", media: mediaBundle, leader: true, h: s.handlePublishSystem},
		{pattern: "GET /v1/system-policy", action: "kernel.system.read", h: s.handleGetSystem},

		{pattern: "POST /v1/tokens", action: "kernel.token.create", media: mediaJSON, leader: true, h: s.handleCreateToken},
		{pattern: "GET /v1/tokens", action: "kernel.token.read", h: s.handleListTokens},
		{pattern: "DELETE /v1/tokens/{accessor}", action: "kernel.token.revoke", leader: true, target: tokenTarget, h: s.handleRevokeToken},
		{pattern: "GET /v1/whoami", action: "kernel.whoami", h: s.handleWhoAmI},

		{pattern: "GET /v1/cluster", action: "kernel.cluster.read", h: s.handleCluster},
		{pattern: "POST /v1/cluster/join", action: "kernel.cluster.join", media: mediaJSON, leader: true, h: s.handleJoin},
		{pattern: "POST /v1/cluster/remove", action: "kernel.cluster.remove", media: mediaJSON, leader: true, h: s.handleRemove},

		{pattern: "GET /healthz", access: accessPublic, h: s.handleHealth},
		{pattern: "GET /readyz", access: accessPublic, h: s.handleReady},
	}
	rt = append(rt, s.regionRoutes()...)
	if s.mcp != nil {
		// The agents' MCP endpoint authenticates its agent tokens itself
		// (internal/mcp); its protected-resource metadata is discovery,
		// open as the AuthZEN configuration is.
		h := func(w http.ResponseWriter, r *http.Request) {
			// A tools/call may run for its action's timeout, and a GET
			// holds the session's notification stream open.
			holdOpen(w, invokeWork)
			s.mcp.ServeHTTP(w, r)
		}
		for _, method := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
			media := ""
			if method == http.MethodPost {
				media = mediaJSON
			}
			rt = append(rt, route{pattern: method + " " + mcp.Path, action: "kernel.mcp.session", access: accessAgent, media: media, h: h})
		}
		rt = append(rt,
			route{pattern: "GET " + mcp.MetadataPath, access: accessPublic, h: s.mcp.ServeHTTP},
			route{pattern: "GET " + mcp.MetadataPath + mcp.Path, access: accessPublic, h: s.mcp.ServeHTTP})
	}
	if s.cfg.Audit != nil {
		h := s.cfg.Audit.Handler()
		rt = append(rt,
			route{pattern: "GET /v1/audit", action: "kernel.audit.read", h: h.ServeHTTP},
			route{pattern: "GET /v1/audit/export", action: "kernel.audit.read", h: streaming(h).ServeHTTP},
			route{pattern: "GET /v1/audit/verify", action: "kernel.audit.read", h: h.ServeHTTP})
	}
	if s.cfg.Gatherer != nil {
		rt = append(rt, route{pattern: "GET /metrics", action: "kernel.metrics.read",
			h: promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{}).ServeHTTP})
	}
	return rt
}

// routes registers the table on the mux, each route behind its guard, and
// the catch-all that answers 404 and 405 (handleNoRoute).
func (s *Server) routes() {
	s.table = s.routeTable()
	for i := range s.table {
		rt := &s.table[i]
		s.mux.HandleFunc(rt.pattern, s.guard(rt))
	}
	s.mux.HandleFunc("/", s.handleNoRoute)
}

// HandleAgentRoute adds a route another package serves on an agent, the
// path's {id} (the agent sandbox's): it goes into the route table behind
// the same guard as every route — authenticated, the system bundle deciding
// action on the agent (its tenant), the act audited, and on the leader if
// leader. media is the body's type ("" for none, application/json,
// application/wasm). Call it before the server serves.
func (s *Server) HandleAgentRoute(pattern, action, media string, leader bool, h http.HandlerFunc) {
	if action == "" || !strings.HasPrefix(action, "kernel.") {
		panic(fmt.Sprintf("server: route %s needs a kernel.* action", pattern))
	}
	s.table = append(s.table, route{pattern: pattern, action: action, media: media, leader: leader, target: agentTarget, h: h})
	rt := &s.table[len(s.table)-1]
	s.mux.HandleFunc(rt.pattern, s.guard(rt))
}

// HandleNodeRoute adds a route the nodes of the cluster call on the
// leader (the agent sandbox's host calls from followers), on an agent as
// HandleAgentRoute's, for a principal with the node role (its token, or
// with node TLS its certificate). The handler records what it does itself
// (an invocation's own audit record), so the route adds none per call.
func (s *Server) HandleNodeRoute(pattern, action, media string, h http.HandlerFunc) {
	if action == "" || !strings.HasPrefix(action, "kernel.") {
		panic(fmt.Sprintf("server: route %s needs a kernel.* action", pattern))
	}
	s.table = append(s.table, route{pattern: pattern, action: action, media: media, leader: true, audited: true, node: true, target: agentTarget, h: h})
	rt := &s.table[len(s.table)-1]
	s.mux.HandleFunc(rt.pattern, s.guard(rt))
}

// routeMux is the server's ServeMux, which also keeps the list of the
// patterns registered on it: the route table that answers which methods a
// path allows.
type routeMux struct {
	*http.ServeMux
	patterns []string
	// posts are the handlers of the POST routes without wildcards, by
	// path: the decision routes among them are the node's hottest, and
	// finding them in a map costs a fifth of the ServeMux's matching
	// (perf: findHandler 1.5 % of a single check's CPU). A path found here
	// is clean and the one pattern that matches it, so the answer is the
	// ServeMux's.
	posts map[string]postRoute
}

type postRoute struct {
	pattern string
	h       http.Handler
}

func (m *routeMux) Handle(pattern string, h http.Handler) {
	m.ServeMux.Handle(pattern, h)
	m.patterns = append(m.patterns, pattern)
	if path, ok := strings.CutPrefix(pattern, http.MethodPost+" "); ok && strings.HasPrefix(path, "/") &&
		!strings.ContainsAny(path, "{}") && !strings.HasSuffix(path, "/") {
		if m.posts == nil {
			m.posts = map[string]postRoute{}
		}
		m.posts[path] = postRoute{pattern, h}
	}
}

func (m *routeMux) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		if rt, ok := m.posts[r.URL.Path]; ok {
			r.Pattern = rt.pattern
			rt.h.ServeHTTP(w, r)
			return
		}
	}
	m.ServeMux.ServeHTTP(w, r)
}

func (m *routeMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(h))
}

// Routes lists the patterns of the server's routes ("POST /v1/check"), in
// the order they were registered; the catch-all "/" that answers 404 and
// 405 is not among them.
func (s *Server) Routes() []string {
	return slices.DeleteFunc(slices.Clone(s.mux.patterns), func(p string) bool { return p == "/" })
}

// routeMethods are the methods a route may serve, in the order an Allow
// header lists them.
var routeMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// handleNoRoute answers a request no route matched: 405 with an Allow
// header when routes serve its path with other methods, else 404. It needs
// no credential: it tells only what the route table (the README) says.
// The catch-all "/" matches every method, so the mux never answers 405
// itself (and its own 405 would be plain text); asking the mux which of
// the other methods would match keeps the answer true to the route table
// as routes are added.
func (s *Server) handleNoRoute(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range routeMethods {
		if m == r.Method {
			continue
		}
		probe := &http.Request{Method: m, Host: r.Host, URL: r.URL}
		if _, p := s.mux.Handler(probe); p != "" && p != "/" {
			allow = append(allow, m)
		}
	}
	if len(allow) == 0 {
		writeError(w, http.StatusNotFound, codeNotFound, "no endpoint "+r.Method+" "+r.URL.Path+": see the API reference in the README")
		return
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeError(w, http.StatusMethodNotAllowed, codeBadMethod,
		fmt.Sprintf("%s is not allowed on %s: it serves %s (see the API reference in the README)", r.Method, r.URL.Path, strings.Join(allow, ", ")))
}

// The targets of routes, as the system bundle sees them.

func bundleTarget(*Server, *http.Request) api.Entity {
	return api.Entity{Type: "bundle", ID: "current"}
}

func entityTarget(_ *Server, r *http.Request) api.Entity {
	return api.Entity{Type: "entity", ID: r.PathValue("type") + "/" + r.PathValue("id")}
}

func orchestraTarget(_ *Server, r *http.Request) api.Entity {
	return api.Entity{Type: "orchestra", ID: r.PathValue("name")}
}

// accessRequestTarget is an access request (an approval of kind
// access_request) with its tenant, for tenant-bound tokens.
func accessRequestTarget(s *Server, r *http.Request) api.Entity {
	id := r.PathValue("id")
	e := api.Entity{Type: "access_request", ID: id}
	if a, ok := s.store.Approval(id); ok && a.Tenant != "" {
		e.Properties = map[string]any{"tenant": a.Tenant}
	}
	return e
}

func tokenTarget(_ *Server, r *http.Request) api.Entity {
	return api.Entity{Type: "token", ID: r.PathValue("accessor")}
}

// deferredTarget is the target of a route whose real one is in the body:
// the guard lets a tenant-bound token through to the handler, which
// decides again with the real target (Server.refine) before it acts.
func deferredTarget(typ string) func(*Server, *http.Request) api.Entity {
	return func(*Server, *http.Request) api.Entity {
		return api.Entity{Type: typ, ID: "*", Properties: map[string]any{"deferred": true}}
	}
}

func agentTarget(s *Server, r *http.Request) api.Entity {
	id := r.PathValue("id")
	a, _ := s.store.Agent(id)
	return agentEntity(id, a.Tenant)
}

func agentEntity(id, tenant string) api.Entity {
	e := api.Entity{Type: "agent", ID: id}
	if tenant != "" {
		e.Properties = map[string]any{"tenant": tenant}
	}
	return e
}

func approvalTarget(s *Server, r *http.Request) api.Entity {
	id := r.PathValue("id")
	e := api.Entity{Type: "approval", ID: id}
	if a, ok := s.store.Approval(id); ok {
		e.Properties = map[string]any{"agent": a.Agent}
		if a.Tenant != "" {
			e.Properties["tenant"] = a.Tenant
		}
	}
	return e
}

func killSwitchTarget(s *Server, r *http.Request) api.Entity {
	id := r.PathValue("id")
	for _, k := range s.store.Kills() {
		if k.ID == id {
			return s.killEntity(k.ID, k.Scope, k.Target)
		}
	}
	return api.Entity{Type: "kill", ID: id}
}

// killEntity is a kill switch as the system bundle sees it: its scope and,
// for a tenant or an agent of a tenant, that tenant.
func (s *Server) killEntity(id, scope, target string) api.Entity {
	props := map[string]any{"scope": scope}
	switch scope {
	case api.KillTenant:
		props["tenant"] = target
	case api.KillAgent:
		if a, ok := s.store.Agent(target); ok && a.Tenant != "" {
			props["tenant"] = a.Tenant
		}
	}
	return api.Entity{Type: "kill", ID: id, Properties: props}
}

// RouteInfo describes one route for documentation and tests.
type RouteInfo struct {
	Pattern string // "POST /v1/check"
	Action  string // kernel.* action; "" for public routes
	Public  bool   // no credential needed
	Agent   bool   // authenticated by the handler as an agent
}

// RouteTable lists every route of the table with its action, in table
// order (Routes lists the mux's patterns).
func (s *Server) RouteTable() []RouteInfo {
	out := make([]RouteInfo, len(s.table))
	for i, rt := range s.table {
		out[i] = RouteInfo{Pattern: rt.pattern, Action: rt.action, Public: rt.access == accessPublic, Agent: rt.access == accessAgent}
	}
	return out
}
