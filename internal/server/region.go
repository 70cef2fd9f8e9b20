package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/auth"
	"github.com/aibos/kernel/internal/region"
	"github.com/aibos/kernel/internal/store"
)

// RegionStore is what the multi-region routes need of the state.
type RegionStore interface {
	Region() (store.RegionView, bool)
	PutRegion(ctx context.Context, r api.Region) (rev, gv uint64, err error)
	PutTenant(ctx context.Context, t api.Tenant) (rev, gv uint64, err error)
	FailoverRegion(ctx context.Context, id, by string, now time.Time) (rev, gv uint64, err error)
	WaitForGlobalVersion(ctx context.Context, gv uint64) error
}

// Regions is the multi-region runtime the server answers for
// (internal/region.Manager); nil: a single region.
type Regions interface {
	Self() string
	Status() api.Replication
	ServeStream(w http.ResponseWriter, r *http.Request)
	ServeStandby(w http.ResponseWriter, r *http.Request)
	Vote(ctx context.Context, req region.VoteRequest) (region.VoteAnswer, error)
	Promote(ctx context.Context) (region.PromoteResult, error)
	CheckSilent(id string, d time.Duration) error
}

func (s *Server) regionRoutes() []route {
	return []route{
		{pattern: "GET /v1/regions", action: "kernel.region.read", h: s.handleRegions},
		{pattern: "POST /v1/regions", action: "kernel.region.write", media: mediaJSON, leader: true, h: s.handlePutRegion},
		{pattern: "POST /v1/regions/vote", action: "kernel.region.vote", media: mediaJSON, leader: true, h: s.handleVote},
		{pattern: "POST /v1/regions/{id}/promote", action: "kernel.region.promote", media: mediaJSON, leader: true, h: s.handlePromote},
		{pattern: "POST /v1/regions/{id}/failover", action: "kernel.region.failover", media: mediaJSON, leader: true, h: s.handleFailover},
		{pattern: "GET " + region.StreamPath, action: "kernel.region.replicate", h: s.regionHandler(func(m Regions) http.HandlerFunc { return m.ServeStream })},
		{pattern: "GET " + region.StandbyPath, action: "kernel.region.replicate", h: s.regionHandler(func(m Regions) http.HandlerFunc { return s.standbyOnly(m.ServeStandby) })},
		{pattern: "GET /v1/replication", action: "kernel.region.read", h: s.handleReplication},
		{pattern: "PUT /v1/tenants/{id}", action: "kernel.tenant.write", media: mediaJSON, leader: true, target: tenantTarget, h: s.handlePutTenant},
		{pattern: "GET /v1/tenants", action: "kernel.region.read", h: s.handleTenants},
	}
}

func tenantTarget(_ *Server, r *http.Request) api.Entity {
	return api.Entity{Type: "tenant", ID: r.PathValue("id"), Properties: map[string]any{"tenant": r.PathValue("id")}}
}

// multiRegion answers 404 with how to turn multi-region mode on, unless
// it is on.
func (s *Server) multiRegion(w http.ResponseWriter) (store.RegionView, bool) {
	if s.cfg.Regions != nil {
		if v, ok := s.store.Region(); ok {
			return v, true
		}
		writeError(w, http.StatusServiceUnavailable, codeNotReady, "this region is entering multi-region mode; retry shortly")
		return store.RegionView{}, false
	}
	writeError(w, http.StatusNotFound, codeNotFound, "this cluster is a single region: start its nodes with --region ID --domain D (and --join URL of the primary) for multi-region mode")
	return store.RegionView{}, false
}

func (s *Server) regionHandler(h func(Regions) http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, ok := s.multiRegion(w); ok && s.regionPeer(w, r) {
			h(s.cfg.Regions)(w, r)
		}
	}
}

// StandbyPrincipal is the principal a region's token must name for the
// region to receive another's tenant data as its standby: tenant data
// goes to that region only, not to whoever holds a region token.
func StandbyPrincipal(region string) string { return "region:" + region }

// standbyOnly lets through only a caller whose principal is the region
// it asks the tenant data for (or an admin).
func (s *Server) standbyOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sb := r.URL.Query().Get("region")
		p := principal(r)
		if p == nil || (p.Name != StandbyPrincipal(sb) && !slices.Contains(p.Roles, auth.RoleAdmin)) {
			name := "no principal"
			if p != nil {
				name = p.Name
			}
			writeError(w, http.StatusForbidden, codeForbidden, fmt.Sprintf("tenant data is streamed to region %q only with a token whose principal is %s (aibos token create --principal %s --role region); this one is %s",
				sb, StandbyPrincipal(sb), StandbyPrincipal(sb), name))
			return
		}
		h(w, r)
	}
}

// regionPeer requires, with node TLS on, that a call regions make of each
// other (the streams, a vote) come over mutual TLS with a node certificate
// of the deployment's CA, besides the region token: a token that leaked
// does not let anyone outside follow the global stream or vote.
func (s *Server) regionPeer(w http.ResponseWriter, r *http.Request) bool {
	if s.cfg.IdentifyNode == nil {
		return true
	}
	if _, ok := s.cfg.IdentifyNode(r.TLS); ok {
		return true
	}
	writeError(w, http.StatusForbidden, codeForbidden, r.URL.Path+": regions talk over mutual TLS: present a node certificate of the deployment's CA (aibos tls cert create --node ID) with the region token")
	return false
}

func regionsOf(v store.RegionView) api.Regions {
	return api.Regions{Self: v.Self, Primary: v.Primary, Epoch: v.Epoch, Regions: v.Regions, Tenants: v.Tenants, GlobalVersion: v.GlobalVersion}
}

func (s *Server) handleRegions(w http.ResponseWriter, r *http.Request) {
	v, ok := s.multiRegion(w)
	if !ok {
		return
	}
	w.Header().Set(api.HeaderGlobalVersion, strconv.FormatUint(v.GlobalVersion, 10))
	writeJSON(w, http.StatusOK, regionsOf(v))
}

func (s *Server) handleTenants(w http.ResponseWriter, r *http.Request) {
	v, ok := s.multiRegion(w)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"tenants": v.Tenants, "global_version": v.GlobalVersion})
}

func (s *Server) handleReplication(w http.ResponseWriter, r *http.Request) {
	v, ok := s.multiRegion(w)
	if !ok {
		return
	}
	st := s.cfg.Regions.Status()
	switch q := r.URL.Query().Get("quarantine"); q {
	case "", "false":
	case "true":
		st.QuarantinedEntries = v.Quarantined
	default:
		badRequest(w, fmt.Errorf("quarantine %q: want true or false", q))
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// waitGlobal waits, for a read with min_version, until this region has
// applied that global version (read-your-writes across regions); false
// if it answered instead.
func (s *Server) waitGlobal(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.RawQuery == "" {
		return true // the decision path's usual case: no query to parse
	}
	mv := r.URL.Query().Get("min_version")
	if mv == "" {
		return true
	}
	gv, err := strconv.ParseUint(mv, 10, 64)
	if err != nil {
		badRequest(w, fmt.Errorf("min_version %q is not a global version: give the global_version a write answered", mv))
		return false
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.MinRevisionWait)
	defer cancel()
	if err := s.store.WaitForGlobalVersion(ctx, gv); err != nil {
		v, _ := s.store.Region()
		writeError(w, http.StatusServiceUnavailable, codeStale, fmt.Sprintf("region %s has applied global version %d, not %d, after %s: retry, or read from the primary", v.Self, v.GlobalVersion, gv, s.cfg.MinRevisionWait))
		return false
	}
	return true
}

// globalAnswer is the answer of a global write.
type globalAnswer struct {
	Revision      uint64 `json:"revision"`
	GlobalVersion uint64 `json:"global_version"`
}

func (s *Server) handlePutRegion(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.multiRegion(w); !ok {
		return
	}
	var reg api.Region
	if err := decodeJSON(r, 1<<20, &reg); err != nil {
		badRequest(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.WriteTimeout)
	defer cancel()
	rev, gv, err := s.store.PutRegion(ctx, reg)
	s.answerGlobal(w, rev, gv, err)
}

func (s *Server) handlePutTenant(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.multiRegion(w); !ok {
		return
	}
	var t api.Tenant
	if err := decodeJSON(r, 1<<16, &t); err != nil {
		badRequest(w, err)
		return
	}
	if t.ID != "" && t.ID != r.PathValue("id") {
		badRequest(w, fmt.Errorf("the body names tenant %q, the path %q", t.ID, r.PathValue("id")))
		return
	}
	t.ID = r.PathValue("id")
	if t.Home == "" {
		badRequest(w, errors.New(`home is required: {"home": "REGION"}`))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.WriteTimeout)
	defer cancel()
	rev, gv, err := s.store.PutTenant(ctx, t)
	s.answerGlobal(w, rev, gv, err)
}

func (s *Server) handleFailover(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.multiRegion(w); !ok {
		return
	}
	var body region.FailoverRequest
	if err := decodeJSON(r, 1<<10, &body); err != nil {
		badRequest(w, err)
		return
	}
	if body.IfSilentFor != "" {
		d, err := time.ParseDuration(body.IfSilentFor)
		if err != nil || d <= 0 {
			badRequest(w, fmt.Errorf("if_silent_for %q is not a positive duration such as 10s", body.IfSilentFor))
			return
		}
		if err := s.cfg.Regions.CheckSilent(r.PathValue("id"), d); err != nil {
			writeError(w, http.StatusConflict, api.CodeConflict, err.Error())
			return
		}
	}
	by := "unknown"
	if p := principal(r); p != nil {
		by = p.Name
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.WriteTimeout)
	defer cancel()
	rev, gv, err := s.store.FailoverRegion(ctx, r.PathValue("id"), by, s.now().UTC())
	s.answerGlobal(w, rev, gv, err)
}

func (s *Server) answerGlobal(w http.ResponseWriter, rev, gv uint64, err error) {
	if err != nil {
		s.writeStoreError(w, err)
		return
	}
	w.Header().Set(api.HeaderGlobalVersion, strconv.FormatUint(gv, 10))
	writeJSON(w, http.StatusOK, globalAnswer{Revision: rev, GlobalVersion: gv})
}

func (s *Server) handleVote(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.multiRegion(w); !ok || !s.regionPeer(w, r) {
		return
	}
	var req region.VoteRequest
	if err := decodeJSON(r, 1<<10, &req); err != nil {
		badRequest(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.WriteTimeout)
	defer cancel()
	ans, err := s.cfg.Regions.Vote(ctx, req)
	if err != nil {
		s.writeStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ans)
}

func (s *Server) handlePromote(w http.ResponseWriter, r *http.Request) {
	v, ok := s.multiRegion(w)
	if !ok {
		return
	}
	var body struct{}
	if err := decodeJSON(r, 1<<10, &body); err != nil {
		badRequest(w, err)
		return
	}
	if id := r.PathValue("id"); id != v.Self {
		msg := fmt.Sprintf("this is region %s; a promotion runs in the region promoted: send it to %s", v.Self, id)
		if reg := v.Region(id); reg != nil {
			msg += " at " + strings.Join(reg.Endpoints, " or ")
		}
		writeError(w, http.StatusBadRequest, codeBadRequest, msg)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	res, err := s.cfg.Regions.Promote(ctx)
	if errors.Is(err, region.ErrNoMajority) {
		writeError(w, http.StatusServiceUnavailable, codeUnavailable, err.Error(), res.Refused...)
		return
	}
	if err != nil {
		s.writeStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// routeTenant answers, for a request for tenant that this region does not
// serve, 307 to the region that does (Aibos-Home-Region), 403 for a tenant
// with no home, or 503 for one whose home is lost with no standby; it
// reports whether it answered. Nothing of the request is kept or logged.
func (s *Server) routeTenant(w http.ResponseWriter, r *http.Request, tenant string) bool {
	if s.cfg.Regions == nil || tenant == "" {
		return false
	}
	v, ok := s.store.Region()
	if !ok {
		return false
	}
	serving, err := v.Serving(tenant)
	switch {
	case errors.Is(err, store.ErrRegionUnavailable):
		writeError(w, http.StatusServiceUnavailable, codeRegionUnavailable, err.Error())
		return true
	case err != nil:
		writeError(w, http.StatusForbidden, codeResidency, err.Error())
		return true
	case serving == v.Self:
		return false
	}
	reg := v.Region(serving)
	if reg == nil || len(reg.Endpoints) == 0 {
		writeError(w, http.StatusServiceUnavailable, codeRegionUnavailable, fmt.Sprintf("tenant %s is served by region %s, whose endpoints this region does not know", tenant, serving))
		return true
	}
	loc, err := url.Parse(strings.TrimSuffix(reg.Endpoints[0], "/") + r.URL.RequestURI())
	if err != nil {
		writeError(w, http.StatusInternalServerError, codeInternal, err.Error())
		return true
	}
	w.Header().Set("Location", loc.String())
	w.Header().Set(api.HeaderHomeRegion, serving)
	writeError(w, http.StatusTemporaryRedirect, codeNotHome, fmt.Sprintf("tenant %s is served by region %s: send the request there (%s)", tenant, serving, loc))
	return true
}

// routeBody routes a write by the tenants its body names: all must be
// served here, or it answers (307 when all are served by one other
// region).
func (s *Server) routeBody(w http.ResponseWriter, r *http.Request, tenants []string) bool {
	if s.cfg.Regions == nil {
		return false
	}
	var first string
	for _, t := range tenants {
		if t == "" {
			continue
		}
		if first == "" {
			first = t
			continue
		}
		if t != first {
			v, _ := s.store.Region()
			a, errA := v.Serving(first)
			b, errB := v.Serving(t)
			if errA == nil && errB == nil && a != b {
				badRequest(w, fmt.Errorf("the write holds data of tenants %s (region %s) and %s (region %s): write each region's tenants to that region", first, a, t, b))
				return true
			}
		}
	}
	for _, t := range tenants {
		if t != "" && s.routeTenant(w, r, t) {
			return true
		}
	}
	return false
}

// globalVersionWriter answers a write, in multi-region mode, with the
// global version the region has applied when it answers (at least the
// write's own, for a global write): a read elsewhere with that
// min_version sees the write. A handler that knows the write's exact
// global version sets the header itself.
type globalVersionWriter struct {
	http.ResponseWriter
	s       *Server
	written bool
}

func (g *globalVersionWriter) WriteHeader(status int) {
	if !g.written {
		g.written = true
		if h := g.Header(); h.Get(api.HeaderGlobalVersion) == "" && status < 300 {
			if v, ok := g.s.store.Region(); ok {
				h.Set(api.HeaderGlobalVersion, strconv.FormatUint(v.GlobalVersion, 10))
			}
		}
	}
	g.ResponseWriter.WriteHeader(status)
}

func (g *globalVersionWriter) Write(b []byte) (int, error) {
	if !g.written {
		g.WriteHeader(http.StatusOK)
	}
	return g.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (g *globalVersionWriter) Unwrap() http.ResponseWriter { return g.ResponseWriter }
