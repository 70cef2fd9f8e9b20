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

func (s *Server) mcpRoutes(m *routeMux) {
	m.HandleFunc("POST /v1/orchestras/{name}/accept", s.leaderOnly(s.handleAcceptOrchestra))
	if s.mcp == nil {
		return
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A tools/call may run for its action's timeout, and a GET holds
		// the session's notification stream open.
		holdOpen(w, invokeWork)
		s.mcp.ServeHTTP(w, r)
	})
	for _, method := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
		m.Handle(method+" "+mcp.Path, h)
	}
	m.Handle("GET "+mcp.MetadataPath, s.mcp)
	m.Handle("GET "+mcp.MetadataPath+mcp.Path, s.mcp)
}

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
		by := req.By
		if by == "" {
			by = "operator"
		}
		tool := req.Tool
		if tool == "" {
			tool = "*"
		}
		if _, err := s.cfg.Audit.AppendSync(context.WithoutCancel(ctx), &audit.Record{
			Time: s.now(), Node: s.cfg.NodeID, Kind: "mcp_accept", Action: name + "." + tool, By: by,
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
