package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/audit"
	"github.com/aibos/kernel/internal/auth"
	"github.com/aibos/kernel/internal/gateway"
	"github.com/aibos/kernel/internal/store"
)

// GatewayStore is what the catalog, approval and kill switch routes need (the gateway itself declares its own, gateway.Store).
type GatewayStore interface {
	PutOrchestra(ctx context.Context, o api.Orchestra, now time.Time) (api.Orchestra, error)
	DeleteOrchestra(ctx context.Context, name string, now time.Time) (uint64, error)
	Orchestra(name string) (api.Orchestra, bool)
	Orchestras() []api.Orchestra
	CreateApproval(ctx context.Context, a api.Approval) (api.Approval, error)
	DecideApproval(ctx context.Context, id string, approve bool, by, reason string, now time.Time) (api.Approval, error)
	ConsumeApproval(ctx context.Context, id, agent, agentVersion, action, argsDigest, invocationID string, now time.Time) (api.Approval, error)
	Approval(id string) (api.Approval, bool)
	Approvals() []api.Approval
	SetKill(ctx context.Context, k api.KillSwitch) (api.KillSwitch, error)
	LiftKill(ctx context.Context, id, by, reason string, now time.Time) (api.KillSwitch, error)
	Kills() []api.KillSwitch
	ActiveKills() []api.KillSwitch
}

// The agent gateway's routes: invocations (any node; forwarded to the
// leader when they need a replicated write), the catalog, approvals, kill
// switches, per-agent stats and the audit log.

// Codes of the gateway's operator endpoints.
const (
	codeForbidden   = api.CodeForbidden
	codeGone        = api.CodeGone
	codeNoGateway   = api.CodeNoGateway
	maxApprovalWait = 60 * time.Second
)

func (s *Server) handleInvoke(w http.ResponseWriter, r *http.Request) {
	if s.gw == nil {
		writeError(w, http.StatusServiceUnavailable, codeNoGateway, "this node runs without the agent gateway")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, gateway.MaxInvokeBody))
	if err != nil {
		badRequest(w, describeJSONError(err))
		return
	}
	holdOpen(w, invokeWork)
	// A malformed or absent header is an empty token: the gateway answers
	// 401 for it as for an unknown one.
	token, _ := auth.Credential(r)
	rep := s.gw.Invoke(r.Context(), gateway.Call{
		Token: token, Action: r.PathValue("name"),
		IdempotencyKey: r.Header.Get("Idempotency-Key"), Body: body,
	})
	if rep.Forward {
		leader := s.store.LeaderHTTP()
		if leader == "" || r.Header.Get(headerForwarded) != "" {
			writeError(w, http.StatusServiceUnavailable, codeNoLeader, "this invocation needs the leader (approvals and kernel writes are replicated) and none is known right now; retry shortly")
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		s.forward(w, r, leader)
		return
	}
	if rep.Err != nil {
		writeJSON(w, rep.Status, api.ErrorBody{Error: *rep.Err})
		return
	}
	writeJSON(w, rep.Status, rep.Resp)
}

func (s *Server) handleListActions(w http.ResponseWriter, r *http.Request) {
	if s.gw == nil {
		writeError(w, http.StatusServiceUnavailable, codeNoGateway, "this node runs without the agent gateway")
		return
	}
	if !s.waitRevision(w, r.Context(), minRevisionParam(r)) {
		return
	}
	out := api.ActionList{Actions: []api.CatalogAction{}}
	orch, risk := r.URL.Query().Get("orchestra"), r.URL.Query().Get("risk")
	for _, a := range s.gw.Catalog() {
		if (orch == "" || a.Orchestra == orch) && (risk == "" || a.Risk == risk) {
			out.Actions = append(out.Actions, a)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleListOrchestras(w http.ResponseWriter, r *http.Request) {
	if !s.waitRevision(w, r.Context(), minRevisionParam(r)) {
		return
	}
	out := api.OrchestraList{Orchestras: append([]api.Orchestra{gateway.BuiltinOrchestra()}, s.store.Orchestras()...)}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleGetOrchestra(w http.ResponseWriter, r *http.Request) {
	if !s.waitRevision(w, r.Context(), minRevisionParam(r)) {
		return
	}
	name := r.PathValue("name")
	if name == api.BuiltinOrchestra {
		writeJSON(w, http.StatusOK, gateway.BuiltinOrchestra())
		return
	}
	o, ok := s.store.Orchestra(name)
	if !ok {
		writeError(w, http.StatusNotFound, codeNotFound, fmt.Sprintf("no orchestra %q (create it with PUT /v1/orchestras/%s)", name, name))
		return
	}
	writeJSON(w, http.StatusOK, o)
}

func (s *Server) handlePutOrchestra(w http.ResponseWriter, r *http.Request) {
	var o api.Orchestra
	if err := decodeJSON(r, s.cfg.MaxBodyBytes, &o); err != nil {
		badRequest(w, err)
		return
	}
	name := r.PathValue("name")
	if o.Name == "" {
		o.Name = name
	}
	if o.Name != name {
		badRequest(w, fmt.Errorf("the body names orchestra %q but the path %q: make them equal", o.Name, name))
		return
	}
	o.UpdatedAt, o.Revision = time.Time{}, 0
	if o.Backend.Type == api.BackendMCP {
		if err := s.resolveMCP(r.Context(), &o); err != nil {
			badRequest(w, err)
			return
		}
	}
	if err := errors.Join(store.ValidateOrchestra(&o), gateway.ValidateOrchestra(&o)); err != nil {
		badRequest(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.WriteTimeout)
	defer cancel()
	out, err := s.store.PutOrchestra(ctx, o, s.now())
	if err != nil {
		s.writeGatewayStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleDeleteOrchestra(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("name") == api.BuiltinOrchestra {
		writeError(w, http.StatusConflict, codeConflict, fmt.Sprintf("orchestra %q is built in (the kernel's own actions) and cannot be deleted; to stop its actions, set a kill switch: aibos kill set --scope action --target '%s.*' --reason ...", api.BuiltinOrchestra, api.BuiltinOrchestra))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.WriteTimeout)
	defer cancel()
	rev, err := s.store.DeleteOrchestra(ctx, r.PathValue("name"), s.now())
	if err != nil {
		s.writeGatewayStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]uint64{"revision": rev})
}

// presentApproval shows an approval with its effective state (expired
// once its time is up, though the log still holds it as pending).
func (s *Server) presentApproval(a api.Approval) api.Approval {
	a.State = store.EffectiveApprovalState(a, s.now())
	return a
}

func (s *Server) handleListApprovals(w http.ResponseWriter, r *http.Request) {
	if !s.waitRevision(w, r.Context(), minRevisionParam(r)) {
		return
	}
	q := r.URL.Query()
	out := api.ApprovalList{Approvals: []api.Approval{}}
	for _, a := range s.store.Approvals() {
		a = s.presentApproval(a)
		if (q.Get("state") == "" || a.State == q.Get("state")) && (q.Get("agent") == "" || a.Agent == q.Get("agent")) &&
			(q.Get("action") == "" || a.Action == q.Get("action")) {
			out.Approvals = append(out.Approvals, a)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// handleGetApproval answers one approval; with ?wait=30s it holds the
// answer until the approval leaves the pending state (or the wait ends), so
// an agent can wait for its human without polling fast.
func (s *Server) handleGetApproval(w http.ResponseWriter, r *http.Request) {
	if !s.waitRevision(w, r.Context(), minRevisionParam(r)) {
		return
	}
	id := r.PathValue("id")
	var wait time.Duration
	if v := r.URL.Query().Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			badRequest(w, fmt.Errorf("wait=%q: want a duration such as 30s", v))
			return
		}
		wait = min(d, maxApprovalWait)
		holdOpen(w, wait+answerMargin)
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	for {
		rev := s.store.AppliedRevision()
		a, ok := s.store.Approval(id)
		if !ok {
			writeError(w, http.StatusNotFound, codeNotFound, fmt.Sprintf("no approval %q", id))
			return
		}
		a = s.presentApproval(a)
		if a.State != api.ApprovalPending || wait == 0 {
			writeJSON(w, http.StatusOK, a)
			return
		}
		wctx, wcancel := context.WithDeadline(ctx, minTime(a.ExpiresAt.Add(time.Millisecond), deadline(ctx)))
		err := s.store.WaitForRevision(wctx, rev+1)
		wcancel()
		if err != nil && ctx.Err() != nil {
			writeJSON(w, http.StatusOK, s.presentApproval(a))
			return
		}
	}
}

func deadline(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func (s *Server) handleDecideApproval(approve bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var v api.ApprovalVerdict
		if r.ContentLength != 0 {
			if err := decodeJSON(r, s.cfg.MaxBodyBytes, &v); err != nil {
				badRequest(w, err)
				return
			}
		}
		approver, ok := s.attribution(w, r, v.Approver, "approver")
		if !ok {
			return
		}
		if strings.TrimSpace(approver) == "" {
			badRequest(w, errors.New("approver is missing: authenticate as the person who decides"))
			return
		}
		id := r.PathValue("id")
		a, ok := s.store.Approval(id)
		if !ok {
			writeError(w, http.StatusNotFound, codeNotFound, fmt.Sprintf("no approval %q", id))
			return
		}
		owner := func(agent string) string {
			ag, _ := s.store.Agent(agent)
			return ag.Owner
		}
		if err := gateway.CheckApprover(a, approver, owner); err != nil {
			writeError(w, http.StatusForbidden, codeForbidden, err.Error())
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.WriteTimeout)
		defer cancel()
		out, err := s.store.DecideApproval(ctx, id, approve, approver, v.Reason, s.now())
		if err != nil {
			s.writeGatewayStoreError(w, err)
			return
		}
		rec := &audit.Record{Kind: audit.KindApproval, Agent: out.Agent, AgentVersion: out.AgentVersion, Tenant: out.Tenant,
			Action: out.Action, ApprovalID: out.ID, Status: out.State, By: approver, Reason: v.Reason, ArgsDigest: out.ArgsDigest}
		s.attribute(rec, r)
		s.auditEvent(rec)
		writeJSON(w, http.StatusOK, s.presentApproval(out))
	}
}

// attribute names the principal's credential (its accessor) and the
// source address in an operator act's audit record.
func (s *Server) attribute(rec *audit.Record, r *http.Request) {
	if p := principal(r); p != nil {
		rec.Subject = p.Kind + ":" + p.Name + " " + p.Accessor
	}
	rec.Resource = "source " + sourceAddr(r)
}

func (s *Server) handleListKills(w http.ResponseWriter, r *http.Request) {
	if !s.waitRevision(w, r.Context(), minRevisionParam(r)) {
		return
	}
	out := api.KillList{Kills: []api.KillSwitch{}}
	all := r.URL.Query().Get("all") == "true"
	for _, k := range s.store.Kills() {
		if all || k.Active {
			out.Kills = append(out.Kills, k)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleSetKill(w http.ResponseWriter, r *http.Request) {
	var kr api.KillRequest
	if err := decodeJSON(r, s.cfg.MaxBodyBytes, &kr); err != nil {
		badRequest(w, err)
		return
	}
	by, ok := s.attribution(w, r, kr.By, "by")
	if !ok {
		return
	}
	id := gateway.NewID("kill_")
	if !s.refine(w, r, "kernel.kill.set", s.killEntity(id, kr.Scope, kr.Target)) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.WriteTimeout)
	defer cancel()
	k, err := s.store.SetKill(ctx, api.KillSwitch{ID: id, Scope: kr.Scope, Target: kr.Target, Reason: kr.Reason, By: by, CreatedAt: s.now()})
	if err != nil {
		s.writeGatewayStoreError(w, err)
		return
	}
	rec := &audit.Record{Kind: audit.KindKill, Reason: k.Reason, By: k.By, Status: "set", Action: killTarget(k)}
	s.attribute(rec, r)
	s.auditEvent(rec)
	writeJSON(w, http.StatusCreated, k)
}

func (s *Server) handleLiftKill(w http.ResponseWriter, r *http.Request) {
	var lr api.LiftRequest
	if r.ContentLength != 0 {
		if err := decodeJSON(r, s.cfg.MaxBodyBytes, &lr); err != nil {
			badRequest(w, err)
			return
		}
	}
	by, ok := s.attribution(w, r, lr.By, "by")
	if !ok {
		return
	}
	if strings.TrimSpace(by) == "" {
		badRequest(w, errors.New("by is missing: say who lifts the kill switch"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.WriteTimeout)
	defer cancel()
	k, err := s.store.LiftKill(ctx, r.PathValue("id"), by, lr.Reason, s.now())
	if err != nil {
		s.writeGatewayStoreError(w, err)
		return
	}
	rec := &audit.Record{Kind: audit.KindKill, Reason: lr.Reason, By: by, Status: "lifted", Action: killTarget(k)}
	s.attribute(rec, r)
	s.auditEvent(rec)
	writeJSON(w, http.StatusOK, k)
}

func killTarget(k api.KillSwitch) string {
	if k.Target == "" {
		return k.ID + " " + k.Scope
	}
	return k.ID + " " + k.Scope + ":" + k.Target
}

func (s *Server) handleAgentStats(w http.ResponseWriter, r *http.Request) {
	if s.gw == nil {
		writeError(w, http.StatusServiceUnavailable, codeNoGateway, "this node runs without the agent gateway")
		return
	}
	id := r.PathValue("id")
	if _, ok := s.store.Agent(id); !ok {
		writeError(w, http.StatusNotFound, codeNotFound, fmt.Sprintf("no agent %q", id))
		return
	}
	writeJSON(w, http.StatusOK, s.gw.Stats(id))
}

// auditEvent records an operator's act (an approval decided, a kill switch
// set or lifted) durably; a failure is logged, the act stands (it is in the
// replicated log already).
func (s *Server) auditEvent(rec *audit.Record) {
	if s.cfg.Audit == nil {
		return
	}
	rec.Time, rec.Node = s.now(), s.cfg.NodeID
	if _, err := s.cfg.Audit.AppendSync(context.Background(), rec); err != nil {
		s.log.Error("audit append failed", "kind", rec.Kind, "err", err)
	}
}

func (s *Server) writeGatewayStoreError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, store.ErrApprovalExpired):
		writeError(w, http.StatusGone, codeGone, err.Error())
	case errors.Is(err, store.ErrApprovalState), errors.Is(err, store.ErrApprovalVoided),
		errors.Is(err, store.ErrApprovalConflict), errors.Is(err, store.ErrKillState),
		errors.Is(err, store.ErrCatalogConflict), errors.Is(err, store.ErrKilled):
		writeError(w, http.StatusConflict, codeConflict, err.Error())
	default:
		s.writeStoreError(w, err)
	}
}
