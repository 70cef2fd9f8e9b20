package server

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/audit"
	"github.com/aibos/kernel/internal/auth"
	"github.com/aibos/kernel/internal/engine"
)

// Access to the API (DESIGN.md §3.1): every route but the public ones
// authenticates its caller (internal/auth) and asks the reserved system
// bundle whether the principal may do the route's kernel.* action on its
// target; refusals are audited. Cross-origin browser requests and bodies
// of a foreign media type are refused before any of that.

// Error codes of access.
const (
	codeUnauthenticated = api.CodeUnauthenticated
	codeCrossOrigin     = api.CodeCrossOrigin
	codeMediaType       = api.CodeMediaType
	codeTooManyFailures = api.CodeTooManyFailures
)

// KindAccess is the audit record kind of an operator's act and of a
// refused request (401, 403, 429).
const KindAccess = audit.KindAccess

type principalKey struct{}

// principal is the authenticated principal of r; nil on a public route.
func principal(r *http.Request) *auth.Principal {
	p, _ := r.Context().Value(principalKey{}).(*auth.Principal)
	return p
}

// guard wraps a route's handler in its access checks.
func (s *Server) guard(rt *route) http.HandlerFunc {
	inner := rt.h
	method, _, _ := strings.Cut(rt.pattern, " ")
	if !rt.audited && !rt.query && rt.access == accessOperator && method != http.MethodGet {
		inner = s.auditAct(rt, inner)
	}
	if rt.leader {
		inner = s.leaderOnly(inner)
	}
	switch rt.access {
	case accessPublic:
		return inner
	case accessAgent:
		return func(w http.ResponseWriter, r *http.Request) {
			if s.sameOrigin(w, r, rt) && s.mediaOK(w, r, rt) {
				inner(w, r)
			}
		}
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.sameOrigin(w, r, rt) || !s.mediaOK(w, r, rt) {
			return
		}
		if s.failures.armed() {
			src := sourceAddr(r)
			if wait := s.failures.blocked(src, s.now()); wait > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
				s.refuse(w, r, rt, nil, http.StatusTooManyRequests, codeTooManyFailures,
					fmt.Sprintf("too many failed authentications from %s; retry after %s with a valid token", src, wait.Round(time.Second)))
				return
			}
		}
		if p, ok := s.nodeByCertificate(rt, r); ok {
			// Node mTLS: the certificate is the node's credential for
			// joining (the handler checks it is the joining node's).
			inner(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
			return
		}
		p, err := s.verifier.Authenticate(r)
		if err != nil && !errors.Is(err, auth.ErrNoCredential) && !errors.Is(err, auth.ErrMalformed) && s.store.CaughtUp() != nil {
			// A node still replaying its log (the routes it serves before
			// then: the cluster, metrics) may not hold the token yet: that
			// is not a failed authentication.
			writeNotReady(w, s.store.CaughtUp())
			return
		}
		if err != nil {
			if !errors.Is(err, auth.ErrNoCredential) {
				s.failures.add(sourceAddr(r), s.now())
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="aibos"`)
			msg := rt.pattern + " needs a credential: send \"Authorization: Bearer TOKEN\" with an operator token (the CLI reads --token-file, then $AIBOS_TOKEN, then ./data/root-token, which a new cluster's first node writes; aibos token create makes more)"
			if !errors.Is(err, auth.ErrNoCredential) {
				msg = "authentication failed for " + rt.pattern + ": " + err.Error()
			}
			s.refuse(w, r, rt, nil, http.StatusUnauthorized, codeUnauthenticated, msg)
			return
		}
		if held, d := s.heldAct(&p, rt, r); held {
			pp := p
			r = r.WithContext(context.WithValue(r.Context(), principalKey{}, &pp))
			s.leaderOnly(func(w http.ResponseWriter, r *http.Request) { s.holdAct(w, r, rt, &pp, d, inner) })(w, r)
			return
		}
		if ok, why := s.permitted(&p, rt, r); !ok {
			s.refuse(w, r, rt, &p, http.StatusForbidden, codeForbidden,
				fmt.Sprintf("%s %q may not %s (%s): %s", p.Kind, p.Name, rt.action, rt.pattern, why))
			return
		}
		if s.cfg.Regions != nil {
			if s.routeTenant(w, r, r.Header.Get(api.HeaderTenant)) {
				// The tenant is served by another region: it gets
				// nothing of the request.
				return
			}
			if (method == http.MethodGet || rt.query) && !s.waitGlobal(w, r) {
				return
			}
			if method != http.MethodGet && !rt.query {
				w = &globalVersionWriter{ResponseWriter: w, s: s}
			}
		}
		if rt.query {
			// Decisions and simulations do not need the principal: the
			// hot path saves copying the request.
			inner(w, r)
			return
		}
		pp := p // only this copy escapes to the heap
		inner(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, &pp)))
	}
}

// nodeByCertificate is the principal of a join that comes from a node of
// the cluster over node mTLS (directly, or forwarded by one) and carries no
// token: with node TLS the node certificate identifies the node, as the
// node role's token does without it.
func (s *Server) nodeByCertificate(rt *route, r *http.Request) (*auth.Principal, bool) {
	if (rt.action != "kernel.cluster.join" && !rt.node) || s.cfg.IdentifyNode == nil || r.Header.Get("Authorization") != "" {
		return nil, false
	}
	origin := originNode(r)
	if origin == "" {
		return nil, false
	}
	return &auth.Principal{Name: "node:" + origin, Kind: auth.KindOperator, Accessor: "node-certificate", Roles: []string{auth.RoleNode}}, true
}

// permitted asks the system bundle. Decisions on routes without a target
// depend only on the token and the action (a token's roles never change,
// the system bundle is fixed), so they are remembered per accessor.
func (s *Server) permitted(p *auth.Principal, rt *route, r *http.Request) (bool, string) {
	cacheable := rt.target == nil && p.Kind == auth.KindOperator
	key := permitKey{p.Accessor, rt.action}
	if cacheable && s.system.permitted(key) {
		return true, ""
	}
	sys := s.system.bundle()
	res := api.Entity{Type: "kernel", ID: rt.action}
	if rt.target != nil {
		res = rt.target(s, r)
	}
	d := s.authorizeWith(sys, p, rt.action, res)
	ok := d.Decision == api.Allow
	if cacheable && ok {
		s.system.remember(key, sys)
	}
	if ok {
		return true, ""
	}
	return false, engine.DescribeReasons(d.Reasons)
}

// heldAct reports whether the system bundle holds this act for a second
// person (require_approval). Only routes with a target can be held: the
// decisions of the others are remembered as allows.
func (s *Server) heldAct(p *auth.Principal, rt *route, r *http.Request) (bool, api.Decision) {
	if rt.target == nil || p.Kind != auth.KindOperator {
		return false, api.Decision{}
	}
	d := s.authorize(p, rt.action, rt.target(s, r))
	return d.Decision == api.RequireApproval, d
}

// authorize decides one kernel action with the system bundle. Stored
// entities are not merged in: the principal's roles come from its token
// only.
func (s *Server) authorize(p *auth.Principal, action string, res api.Entity) api.Decision {
	return s.authorizeWith(s.system.bundle(), p, action, res)
}

func (s *Server) authorizeWith(sys *engine.Bundle, p *auth.Principal, action string, res api.Entity) api.Decision {
	props := make(map[string]any, len(res.Properties))
	for k, v := range res.Properties {
		props[k] = v
	}
	res.Properties = props
	req := api.CheckRequest{
		Subject: api.Entity{Type: p.Kind, ID: p.Name, Properties: map[string]any{
			"roles": strs(p.Roles), "tenants": strs(p.Tenants),
		}},
		Action:   api.Action{Name: action},
		Resource: res,
	}
	return sys.Decide(&req, engine.NoEntities{}, s.now())
}

// refine re-decides a route's action once the handler knows its real
// target from the body (the tenant of a registered agent, the scope of a
// kill switch); on a refusal it answers 403, audits, and returns false.
func (s *Server) refine(w http.ResponseWriter, r *http.Request, action string, res api.Entity) bool {
	p := principal(r)
	if p == nil {
		return true
	}
	d := s.authorize(p, action, res)
	if d.Decision == api.Allow {
		return true
	}
	rt := &route{pattern: r.Method + " " + r.URL.Path, action: action}
	s.refuse(w, r, rt, p, http.StatusForbidden, codeForbidden,
		fmt.Sprintf("%s %q may not %s on %s:%s: %s", p.Kind, p.Name, action, res.Type, res.ID, engine.DescribeReasons(d.Reasons)))
	return false
}

func strs(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// refuse answers a refused request and audits it: who (the accessor, never
// the secret), what, from where, and why.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, rt *route, p *auth.Principal, status int, code, msg string) {
	rec := &audit.Record{Kind: KindAccess, Action: rt.action, Resource: r.Method + " " + r.URL.Path,
		Decision: "deny", Status: strconv.Itoa(status), Error: msg, Reason: "source " + sourceAddr(r)}
	if p != nil {
		rec.Subject, rec.By = p.Kind+":"+p.Name, p.Accessor
	}
	s.auditEvent(rec)
	writeError(w, status, code, msg)
}

// auditAct records an operator's act (every write route whose handler
// does not audit itself) with its outcome, on the node that runs it.
func (s *Server) auditAct(rt *route, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h(sw, r)
		rec := &audit.Record{Kind: KindAccess, Action: rt.action, Resource: r.Method + " " + r.URL.Path,
			Decision: "allow", Status: strconv.Itoa(sw.status), Reason: "source " + sourceAddr(r)}
		if p := principal(r); p != nil {
			rec.Subject, rec.By = p.Kind+":"+p.Name, p.Accessor
		}
		s.auditEvent(rec)
	}
}

// statusWriter remembers the status a handler answered.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// sameOrigin refuses a browser's cross-origin request: one whose Origin
// is not this host (browsers send Origin on every cross-origin POST, PUT,
// PATCH and DELETE, and tools do not send it at all).
func (s *Server) sameOrigin(w http.ResponseWriter, r *http.Request, rt *route) bool {
	o := headerValue(r.Header, "Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	if err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host) {
		return true
	}
	s.refuse(w, r, rt, nil, http.StatusForbidden, codeCrossOrigin,
		fmt.Sprintf("cross-origin request refused: Origin %.100q is not this node (%s); call the API from a tool or from a page this node serves", o, r.Host))
	return false
}

// mediaOK refuses a body declared as another media type than the route
// takes (text/plain and form posts are what a browser sends cross-site
// without asking). A body without a Content-Type is read as the route's.
func (s *Server) mediaOK(w http.ResponseWriter, r *http.Request, rt *route) bool {
	ct := headerValue(r.Header, "Content-Type")
	if ct == "" || ct == mediaJSON && rt.media != "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	ok := err == nil
	switch {
	case !ok:
	case rt.media == mediaJSON:
		ok = mt == mediaJSON
	case rt.media == mediaWasm:
		ok = mt == mediaWasm || mt == "application/octet-stream"
	case rt.media == mediaBundle:
		ok = mt == mediaJSON || mt == "application/yaml" || mt == "application/x-yaml" || mt == "text/yaml" || mt == "application/x-tar" || mt == "application/octet-stream"
	default:
		ok = mt == mediaJSON // a route without a body: tools that always send JSON
	}
	if ok {
		return true
	}
	want := "application/json"
	if rt.media == mediaWasm {
		want = "application/wasm"
	}
	if rt.media == mediaBundle {
		want = "application/yaml, application/json or application/x-tar"
	}
	s.refuse(w, r, rt, nil, http.StatusUnsupportedMediaType, codeMediaType,
		fmt.Sprintf("%s takes %s, not Content-Type %.100q", rt.pattern, want, ct))
	return false
}

// headerValue is h.Get(key) for a key in canonical form, without
// canonicalizing it again on every request: the server stores the
// headers it reads under their canonical keys.
func headerValue(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// sourceAddr is the request's peer address without the port.
func sourceAddr(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

// failureLimiter counts failed authentications per source address in
// fixed windows; a source over the limit is refused until its window
// ends.
type failureLimiter struct {
	limit  int
	window time.Duration
	// until is the end (unix ns) of the latest window that reached the
	// limit, 0 once it has passed: before it, blocked looks; after it, no
	// source is blocked, and the decision path reads neither the clock nor
	// the peer address and takes no lock.
	until atomic.Int64
	mu    sync.Mutex
	bySrc map[string]*failWindow // guarded by mu
}

type failWindow struct {
	start time.Time
	n     int
}

// maxFailureSources bounds the sources tracked; past it, expired windows
// are dropped, and if none has, the oldest state is forgotten.
const maxFailureSources = 100_000

func newFailureLimiter(limit int, window time.Duration) *failureLimiter {
	return &failureLimiter{limit: limit, window: window, bySrc: make(map[string]*failWindow)}
}

func (l *failureLimiter) add(src string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fw := l.bySrc[src]
	if fw == nil || now.Sub(fw.start) >= l.window {
		if len(l.bySrc) >= maxFailureSources {
			for k, v := range l.bySrc {
				if now.Sub(v.start) >= l.window {
					delete(l.bySrc, k)
				}
			}
			if len(l.bySrc) >= maxFailureSources {
				clear(l.bySrc)
			}
		}
		fw = &failWindow{start: now}
		l.bySrc[src] = fw
	}
	fw.n++
	if fw.n >= l.limit {
		if end := fw.start.Add(l.window).UnixNano(); end > l.until.Load() {
			l.until.Store(end)
		}
	}
}

// armed reports whether some source may be blocked: a window reached the
// limit and blocked has not yet seen it end.
func (l *failureLimiter) armed() bool { return l.until.Load() != 0 }

// blocked is how long src must wait; 0 if it may try.
func (l *failureLimiter) blocked(src string, now time.Time) time.Duration {
	if u := l.until.Load(); now.UnixNano() >= u {
		// Disarm, unless add has meanwhile armed a later window.
		l.until.CompareAndSwap(u, 0)
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	fw := l.bySrc[src]
	if fw == nil || fw.n < l.limit {
		return 0
	}
	if left := fw.start.Add(l.window).Sub(now); left > 0 {
		return left
	}
	return 0
}
