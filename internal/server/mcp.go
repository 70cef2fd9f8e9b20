package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/audit"
	"github.com/aibos/kernel/internal/mcp"
	"github.com/aibos/kernel/internal/store"
)

// The MCP gateway's routes: the agents' endpoint /mcp with its
// protected-resource metadata (internal/mcp), and the operator's accept of
// changed tool definitions.

// MCP is the node's MCP endpoint (nil without one).
func (s *Server) MCP() *mcp.Endpoint { return s.mcp }

func (s *Server) resolveMCP(ctx context.Context, o *api.Orchestra) error {
	if s.cfg.MCP == nil {
		return fmt.Errorf("orchestra %q: this node runs without the MCP gateway, so it cannot put an mcp orchestra", o.Name)
	}
	if err := store.ValidateOrchestraBackend(o); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout+30e9)
	defer cancel()
	return s.cfg.MCP.ResolveOrchestra(ctx, o)
}

func (s *Server) handleAcceptOrchestra(w http.ResponseWriter, r *http.Request) {
	if s.cfg.MCP == nil {
		writeError(w, http.StatusServiceUnavailable, codeNoGateway, "this node runs without the MCP gateway")
		return
	}
	var req api.AcceptRequest
	if r.ContentLength != 0 {
		if err := decodeJSON(r, s.cfg.MaxBodyBytes, &req); err != nil {
			badRequest(w, err)
			return
		}
	}
	// Who accepts is the authenticated principal, as for kill switches: a
	// "by" in the body must name it.
	by, ok := s.attribution(w, r, req.By, "by")
	if !ok {
		return
	}
	name := r.PathValue("name")
	o, moved, err := s.cfg.MCP.Accept(r.Context(), name, req.Tool)
	if err != nil {
		if _, ok := s.store.Orchestra(name); !ok {
			writeError(w, http.StatusNotFound, "not_found", err.Error())
			return
		}
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
	if s.cfg.Audit != nil {
		if by == "" {
			by = "operator"
		}
		tool := req.Tool
		if tool == "" {
			tool = "*"
		}
		if _, err := s.cfg.Audit.AppendSync(context.WithoutCancel(ctx), &audit.Record{
			Time: s.now(), Node: s.cfg.NodeID, Kind: audit.KindMCPAccept, Action: name + "." + tool, By: by,
			Reason: "accepted the server's current definition of " + strings.Join(append([]string{}, moved...), ", "),
		}); err != nil {
			writeError(w, http.StatusInternalServerError, "audit_unavailable", "the accept is stored but could not be audited: "+err.Error())
			return
		}
	}
	if moved == nil {
		moved = []string{}
	}
	writeJSON(w, http.StatusOK, api.AcceptResponse{Orchestra: out, Accepted: moved})
}
