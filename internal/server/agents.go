package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/auth"
	"github.com/aibos/kernel/internal/policy"
	"github.com/aibos/kernel/internal/store"
)

// AgentStore is what the agent registry routes (and agent authentication) need.
type AgentStore interface {
	RegisterAgent(ctx context.Context, m api.AgentManifest, tokenHash string, now time.Time) (api.Agent, bool, error)
	UpdateAgent(ctx context.Context, id string, u api.AgentUpdate, now time.Time) (api.Agent, error)
	RetireAgent(ctx context.Context, id string, now time.Time) (api.Agent, error)
	SetAgentCredential(ctx context.Context, id, tokenHash string, now time.Time) (api.Agent, error)
	Agent(id string) (api.Agent, bool)
	Agents() []api.Agent
	AgentByToken(token string) (api.Agent, bool)
}

// codeConflict answers a write that contradicts the agent registry.
const codeConflict = api.CodeConflict

func (s *Server) writeAgentError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, store.ErrAgentConflict):
		writeError(w, http.StatusConflict, codeConflict, err.Error())
	case errors.Is(err, store.ErrBadCommand):
		writeError(w, http.StatusBadRequest, codeBadRequest, err.Error())
	default:
		s.writeStoreError(w, err)
	}
}

func (s *Server) handleRegisterAgent(w http.ResponseWriter, r *http.Request) {
	var m api.AgentManifest
	if err := decodeJSON(r, s.cfg.MaxBodyBytes, &m); err != nil {
		badRequest(w, err)
		return
	}
	if err := store.ValidateAgentManifest(&m); err != nil {
		badRequest(w, fmt.Errorf("agent manifest: %v", err))
		return
	}
	if !s.refine(w, r, "kernel.agent.register", agentEntity(m.ID, m.Tenant)) {
		return
	}
	if s.routeBody(w, r, []string{m.Tenant}) {
		return
	}
	token, hash, err := auth.NewAgentToken(nil)
	if err != nil {
		writeError(w, http.StatusInternalServerError, codeInternal, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.WriteTimeout)
	defer cancel()
	a, created, err := s.store.RegisterAgent(ctx, m, hash, s.now())
	if err != nil {
		s.writeAgentError(w, err)
		return
	}
	if !created {
		writeJSON(w, http.StatusOK, api.AgentRegistration{Agent: a})
		return
	}
	writeJSON(w, http.StatusCreated, api.AgentRegistration{Agent: a, Token: token})
}

func (s *Server) handleListAgents(w http.ResponseWriter, r *http.Request) {
	if !s.waitRevision(w, r.Context(), minRevisionParam(r)) {
		return
	}
	q := r.URL.Query()
	capability, skill, tenant, state := q.Get("capability"), q.Get("skill"), q.Get("tenant"), q.Get("state")
	var labelKey, labelVal string
	hasLabel := q.Has("label")
	if hasLabel {
		var ok bool
		if labelKey, labelVal, ok = strings.Cut(q.Get("label"), "="); !ok || labelKey == "" {
			badRequest(w, fmt.Errorf("label %q: write label=key=value", q.Get("label")))
			return
		}
	}
	out := api.AgentList{Agents: []api.Agent{}}
	for _, a := range s.store.Agents() {
		switch {
		case tenant != "" && a.Tenant != tenant,
			state != "" && a.State != state,
			capability != "" && !slices.ContainsFunc(a.Capabilities, func(p string) bool { return policy.PatternCovers(p, capability) }),
			skill != "" && !slices.ContainsFunc(a.Skills, func(sk api.AgentSkill) bool { return sk.ID == skill || slices.Contains(sk.Tags, skill) }),
			hasLabel && (a.Labels == nil || a.Labels[labelKey] != labelVal):
			continue
		}
		if hasLabel {
			if _, ok := a.Labels[labelKey]; !ok {
				continue
			}
		}
		out.Agents = append(out.Agents, a)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleGetAgent(w http.ResponseWriter, r *http.Request) {
	if !s.waitRevision(w, r.Context(), minRevisionParam(r)) {
		return
	}
	id := r.PathValue("id")
	a, ok := s.store.Agent(id)
	if !ok {
		writeError(w, http.StatusNotFound, codeNotFound, fmt.Sprintf("no agent %q (register it with POST /v1/agents)", id))
		return
	}
	writeJSON(w, http.StatusOK, a)
}

func (s *Server) handleUpdateAgent(w http.ResponseWriter, r *http.Request) {
	var u api.AgentUpdate
	if err := decodeJSON(r, s.cfg.MaxBodyBytes, &u); err != nil {
		badRequest(w, fmt.Errorf("%v (mutable fields: description, owner, labels; register a new version to change anything else)", err))
		return
	}
	s.agentWrite(w, r, func(ctx context.Context, id string) (api.Agent, error) {
		return s.store.UpdateAgent(ctx, id, u, s.now())
	})
}

func (s *Server) handleRetireAgent(w http.ResponseWriter, r *http.Request) {
	s.agentWrite(w, r, func(ctx context.Context, id string) (api.Agent, error) {
		return s.store.RetireAgent(ctx, id, s.now())
	})
}

func (s *Server) handleRevokeAgentCredential(w http.ResponseWriter, r *http.Request) {
	s.agentWrite(w, r, func(ctx context.Context, id string) (api.Agent, error) {
		return s.store.SetAgentCredential(ctx, id, "", s.now())
	})
}

func (s *Server) handleRotateAgentCredential(w http.ResponseWriter, r *http.Request) {
	token, hash, err := auth.NewAgentToken(nil)
	if err != nil {
		writeError(w, http.StatusInternalServerError, codeInternal, err.Error())
		return
	}
	id := r.PathValue("id")
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.WriteTimeout)
	defer cancel()
	if _, err := s.store.SetAgentCredential(ctx, id, hash, s.now()); err != nil {
		s.writeAgentError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, api.AgentCredential{ID: id, Token: token})
}

func (s *Server) agentWrite(w http.ResponseWriter, r *http.Request, write func(context.Context, string) (api.Agent, error)) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.WriteTimeout)
	defer cancel()
	a, err := write(ctx, r.PathValue("id"))
	if err != nil {
		s.writeAgentError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}
