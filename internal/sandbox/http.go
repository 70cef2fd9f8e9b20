package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/store"
)

// Router is where the runtime's routes are added: the node's HTTP server,
// which authenticates each, has the system bundle decide its action on the
// agent, audits it, and runs leader routes on the leader.
type Router interface {
	HandleAgentRoute(pattern, action, media string, leader bool, h http.HandlerFunc)
	// HandleNodeRoute adds a route the nodes call each other on, on the
	// leader; its handler audits what it does itself.
	HandleNodeRoute(pattern, action, media string, h http.HandlerFunc)
}

// Routes adds the agent runtime's endpoints.
func (r *Runtime) Routes(rt Router) {
	rt.HandleAgentRoute("PUT /v1/agents/{id}/module", "kernel.agent.deploy", "application/wasm", true, r.handleDeploy)
	rt.HandleAgentRoute("POST /v1/agents/{id}/start", "kernel.agent.start", "application/json", true, r.handleRun(api.SandboxRun))
	rt.HandleAgentRoute("POST /v1/agents/{id}/stop", "kernel.agent.stop", "application/json", true, r.handleRun(api.SandboxStop))
	// An upgrade, the runtime status (with the live view: memory, ticks,
	// health) and messages are answered by the node the agent is placed
	// on: any node forwards them there.
	rt.HandleAgentRoute("POST /v1/agents/{id}/upgrade", "kernel.agent.upgrade", "application/json", false, r.onAgentNode(r.handleUpgrade))
	rt.HandleAgentRoute("GET /v1/agents/{id}/runtime", "kernel.agent.runtime", "", false, r.onAgentNode(r.handleStatus))
	rt.HandleAgentRoute("POST /v1/agents/{id}/messages", "kernel.agent.message", "application/json", false, r.onAgentNode(r.handleMessage))
	// The host calls of agents that run on followers (place.go).
	rt.HandleNodeRoute("POST /v1/agents/{id}/host", "kernel.sandbox.host", "application/json", r.handleHost)
}

// onAgentNode runs h on the node the agent is placed on, forwarding the
// request there from any other node; an agent placed nowhere is answered
// here (from the replicated state).
func (r *Runtime) onAgentNode(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		node, _ := r.cfg.Store.AgentPlacement(req.PathValue("id"))
		if node == "" || node == r.cfg.Node || r.cfg.Peers == nil {
			// What the forwarding node had applied, this one applies
			// first (a deploy just made through it, say); bounded.
			if rev, err := strconv.ParseUint(req.Header.Get(headerRevision), 10, 64); err == nil && rev > 0 {
				ctx, cancel := context.WithTimeout(req.Context(), 5*time.Second)
				err := r.cfg.Store.WaitForRevision(ctx, rev)
				cancel()
				if err != nil {
					writeError(w, http.StatusServiceUnavailable, api.CodeUnavailable, fmt.Sprintf("this node has not yet applied revision %d, which the forwarding node had: retry shortly", rev))
					return
				}
			}
			h(w, req)
			return
		}
		addr := r.cfg.Store.NodeHTTP(node)
		if addr == "" {
			writeError(w, http.StatusServiceUnavailable, api.CodeUnavailable, fmt.Sprintf("the agent runs on node %s, whose address this node does not know; retry shortly", node))
			return
		}
		req.Header.Set(headerRevision, strconv.FormatUint(r.cfg.Store.AppliedRevision(), 10))
		r.cfg.Peers.ForwardToNode(w, req, addr)
	}
}

// headerRevision carries, on a request forwarded to an agent's node, the
// revision the forwarding node had applied.
const headerRevision = "X-Aibos-Applied-Revision"

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string, details ...string) {
	writeJSON(w, status, api.ErrorBody{Error: api.ErrorDetail{Code: code, Message: msg, Details: details}})
}

// writeStoreError maps a store or validation error to its answer.
func writeStoreError(w http.ResponseWriter, err error) {
	var ve *ValidationError
	switch {
	case errors.As(err, &ve):
		writeError(w, http.StatusUnprocessableEntity, "invalid_module", ve.Error(), ve.Problems...)
	case errors.Is(err, ErrUpgrade):
		writeError(w, http.StatusUnprocessableEntity, "upgrade_refused", err.Error())
	case errors.Is(err, ErrNotRunning):
		writeError(w, http.StatusConflict, "not_running", err.Error())
	case errors.Is(err, ErrNotFound), errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, store.ErrAgentConflict):
		writeError(w, http.StatusConflict, "conflict", err.Error())
	case errors.Is(err, store.ErrBadCommand):
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, err.Error())
	case errors.Is(err, store.ErrNotLeader):
		// As the API's other writes answer: the write was not made, so a
		// client retries it (the SDK does).
		writeError(w, http.StatusServiceUnavailable, api.CodeNoLeader, "this node lost leadership during the write; retry (the write was not acknowledged)")
	case errors.Is(err, store.ErrLeadershipLost):
		writeError(w, http.StatusServiceUnavailable, api.CodeOutcomeUnknown, "leadership changed while the write was committing: it may or may not have been applied; read the state before retrying")
	default:
		writeError(w, http.StatusServiceUnavailable, api.CodeUnavailable, err.Error())
	}
}

func (r *Runtime) handleDeploy(w http.ResponseWriter, req *http.Request) {
	id := req.PathValue("id")
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, maxModuleBytes+1))
	if err != nil || len(body) > maxModuleBytes {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("a module is at most %d bytes (build with -ldflags='-s -w' to strip it)", maxModuleBytes))
		return
	}
	m, err := r.Deploy(req.Context(), id, body)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	r.Changed()
	writeJSON(w, http.StatusOK, m)
}

func (r *Runtime) handleRun(desired string) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		id := req.PathValue("id")
		if _, ok := r.cfg.Store.Agent(id); !ok {
			writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no agent %q: register it first", id))
			return
		}
		if _, err := r.cfg.Store.SetAgentRun(req.Context(), id, desired, r.cfg.Now()); err != nil {
			writeStoreError(w, err)
			return
		}
		if err := r.pinOnStart(req.Context(), id, desired); err != nil {
			writeStoreError(w, err)
			return
		}
		r.Changed()
		writeJSON(w, http.StatusOK, r.Status(id))
	}
}

func (r *Runtime) handleStatus(w http.ResponseWriter, req *http.Request) {
	id := req.PathValue("id")
	if _, ok := r.cfg.Store.Agent(id); !ok {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no agent %q", id))
		return
	}
	writeJSON(w, http.StatusOK, r.Status(id))
}

func (r *Runtime) handleMessage(w http.ResponseWriter, req *http.Request) {
	id := req.PathValue("id")
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, 64<<10))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", "a message is at most 64 KiB")
		return
	}
	if err := r.Send(id, body); err != nil {
		status := http.StatusConflict
		if errors.Is(err, ErrNotRunning) {
			status = http.StatusNotFound
		}
		writeError(w, status, "not_running", err.Error())
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"agent": id, "status": "queued"})
}

// UpgradeRequest is the body of POST /v1/agents/{id}/upgrade.
type UpgradeRequest struct {
	Version string `json:"version"`
}

func (r *Runtime) handleUpgrade(w http.ResponseWriter, req *http.Request) {
	var u UpgradeRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, req.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&u); err != nil || u.Version == "" {
		writeError(w, http.StatusBadRequest, "bad_request", `the body is {"version": "V"}: a registered version of the agent with a module`)
		return
	}
	st, err := r.Upgrade(req.Context(), req.PathValue("id"), u.Version)
	if err != nil {
		writeStoreError(w, err)
		return
	}
	r.Changed()
	writeJSON(w, http.StatusOK, st)
}
