package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/auth"
	"github.com/aibos/kernel/internal/store"
)

// TokenStore is what the token routes and operator authentication need.
type TokenStore interface {
	CreateToken(ctx context.Context, t api.Token, hash string) (api.Token, error)
	RevokeToken(ctx context.Context, accessor, by string, now time.Time) (api.Token, error)
	TokenBySum(sum [32]byte) (api.Token, bool)
	Token(accessor string) (api.Token, bool)
	Tokens() []api.Token
}

// Operator tokens: create (the secret shown once), list, revoke; and who
// the caller is.

func (s *Server) handleCreateToken(w http.ResponseWriter, r *http.Request) {
	var req api.TokenRequest
	if err := decodeJSON(r, s.cfg.MaxBodyBytes, &req); err != nil {
		badRequest(w, err)
		return
	}
	req.Principal = strings.TrimSpace(req.Principal)
	var errs []error
	if req.Principal == "" {
		errs = append(errs, errors.New("principal is missing: name who the token is for, e.g. {\"principal\": \"alice@example.com\", \"roles\": [\"approver\"]}"))
	}
	if len(req.Roles) == 0 {
		errs = append(errs, fmt.Errorf("roles are missing: give at least one of %s", strings.Join(auth.Roles(), ", ")))
	}
	for _, role := range req.Roles {
		if !auth.ValidRole(role) {
			errs = append(errs, fmt.Errorf("role %q is not a built-in role; use one of %s", role, strings.Join(auth.Roles(), ", ")))
		}
	}
	if req.TTL < 0 {
		errs = append(errs, fmt.Errorf("ttl %s is negative: give a duration such as 24h, or none for a token that does not expire", time.Duration(req.TTL)))
	}
	if err := errors.Join(errs...); err != nil {
		badRequest(w, err)
		return
	}
	secret, accessor, err := auth.NewOperatorToken(nil)
	if err != nil {
		writeError(w, http.StatusInternalServerError, codeInternal, err.Error())
		return
	}
	now := s.now().UTC()
	t := api.Token{Accessor: accessor, Principal: req.Principal, Roles: req.Roles, Tenants: req.Tenants, CreatedAt: now}
	if p := principal(r); p != nil {
		t.CreatedBy = p.Name
	}
	if req.TTL > 0 {
		t.ExpiresAt = now.Add(time.Duration(req.TTL))
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.WriteTimeout)
	defer cancel()
	out, err := s.store.CreateToken(ctx, t, auth.Hash(secret))
	if err != nil {
		s.writeTokenError(w, err)
		return
	}
	s.log.Info("operator token created", "accessor", out.Accessor, "principal", out.Principal, "roles", out.Roles)
	writeJSON(w, http.StatusCreated, api.TokenCreated{Token: out, Secret: secret})
}

func (s *Server) handleListTokens(w http.ResponseWriter, r *http.Request) {
	if !s.waitRevision(w, r.Context(), minRevisionParam(r)) {
		return
	}
	writeJSON(w, http.StatusOK, api.TokenList{Tokens: append([]api.Token{}, s.store.Tokens()...)})
}

func (s *Server) handleRevokeToken(w http.ResponseWriter, r *http.Request) {
	acc := r.PathValue("accessor")
	by := ""
	if p := principal(r); p != nil {
		by = p.Name
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.WriteTimeout)
	defer cancel()
	out, err := s.store.RevokeToken(ctx, acc, by, s.now().UTC())
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			writeError(w, http.StatusNotFound, codeNotFound, fmt.Sprintf("no token with accessor %q (GET /v1/tokens lists them)", acc))
			return
		}
		s.writeTokenError(w, err)
		return
	}
	s.log.Info("operator token revoked", "accessor", out.Accessor, "principal", out.Principal)
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleWhoAmI(w http.ResponseWriter, r *http.Request) {
	p := principal(r)
	if p == nil {
		writeError(w, http.StatusUnauthorized, codeUnauthenticated, "no principal")
		return
	}
	writeJSON(w, http.StatusOK, api.WhoAmI{Principal: p.Name, Kind: p.Kind, Accessor: p.Accessor,
		Roles: append([]string{}, p.Roles...), Tenants: p.Tenants, ExpiresAt: p.ExpiresAt})
}

func (s *Server) writeTokenError(w http.ResponseWriter, err error) {
	if errors.Is(err, store.ErrTokenConflict) {
		writeError(w, http.StatusConflict, codeConflict, err.Error())
		return
	}
	s.writeStoreError(w, err)
}
