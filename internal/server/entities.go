package server

import (
	"bytes"
	"context"
	"fmt"
	"net/http"

	"github.com/aibos/kernel/api"
)

// EntityStore is what the entity routes (and decisions, searches) need: stored entities.
type EntityStore interface {
	PutEntities(ctx context.Context, ents []api.Entity) (uint64, error)
	DeleteEntity(ctx context.Context, typ, id string) (uint64, error)
	Entity(typ, id string) (map[string]any, bool)
	EntityIDs(typ string) []string
}

// MaxEntitiesPerWrite bounds one entities upsert.
const MaxEntitiesPerWrite = 10_000

func (s *Server) handlePutEntities(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r, s.cfg.MaxBodyBytes, nil)
	var req api.EntitiesRequest
	if err == nil {
		err = decodeJSONFrom(bytes.NewReader(body), &req)
	}
	if err != nil {
		badRequest(w, err)
		return
	}
	if len(req.Entities) == 0 {
		badRequest(w, fmt.Errorf("entities is empty: give {\"entities\": [{\"type\": ..., \"id\": ..., \"properties\": {...}}]}"))
		return
	}
	if len(req.Entities) > MaxEntitiesPerWrite {
		writeError(w, http.StatusRequestEntityTooLarge, codeTooLarge, fmt.Sprintf("%d entities; at most %d per write", len(req.Entities), MaxEntitiesPerWrite))
		return
	}
	for i, e := range req.Entities {
		if e.Type == "" || e.ID == "" {
			badRequest(w, fmt.Errorf("entities[%d] needs a type and an id", i))
			return
		}
	}
	if api.MangledText(body) {
		for i := range req.Entities {
			if err := api.CheckEntityText(fmt.Sprintf("entities[%d]", i), &req.Entities[i]); err != nil {
				badRequest(w, err)
				return
			}
		}
	}
	if s.cfg.Regions != nil {
		tenants := make([]string, len(req.Entities))
		for i, e := range req.Entities {
			tenants[i], _ = e.Properties["tenant"].(string)
		}
		if s.routeBody(w, r, tenants) {
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.WriteTimeout)
	defer cancel()
	rev, err := s.store.PutEntities(ctx, req.Entities)
	if err != nil {
		s.writeStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, api.WriteResponse{Revision: rev})
}

func (s *Server) handleGetEntity(w http.ResponseWriter, r *http.Request) {
	if !s.waitRevision(w, r.Context(), minRevisionParam(r)) {
		return
	}
	typ, id := r.PathValue("type"), r.PathValue("id")
	props, ok := s.store.Entity(typ, id)
	if !ok {
		writeError(w, http.StatusNotFound, codeNotFound, fmt.Sprintf("no entity %s/%s", typ, id))
		return
	}
	writeJSON(w, http.StatusOK, api.Entity{Type: typ, ID: id, Properties: props})
}

func (s *Server) handleDeleteEntity(w http.ResponseWriter, r *http.Request) {
	typ, id := r.PathValue("type"), r.PathValue("id")
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.WriteTimeout)
	defer cancel()
	rev, err := s.store.DeleteEntity(ctx, typ, id)
	if err != nil {
		s.writeStoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, api.WriteResponse{Revision: rev})
}
