package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/gateway"
	"github.com/aibos/kernel/internal/store"
)

// Placement: the leader places every agent asked to run on a live voter
// (least loaded; an agent stays where it is while its node is alive),
// each placement in a new epoch; every node runs the agents placed on it.
// Every host call that acts (invoke, kv writes, timers, a version pin) is
// fenced by the agent's epoch: checked on the calling node against its
// replica, then performed on the leader, which checks it again against
// its own — the replica every placement is written through first — and
// the store's apply checks kv and timer writes a third time, so a write
// that raced a re-placement is refused on every replica. See DESIGN.md.

// Peers is how the runtime reaches other nodes: the server's forwarding.
type Peers interface {
	// CallLeader posts body to path on the leader with this node's
	// credential and answers the status and body.
	CallLeader(ctx context.Context, path string, body []byte) (int, []byte, error)
	// ForwardToNode answers r with the answer of the node at httpAddr.
	ForwardToNode(w http.ResponseWriter, r *http.Request, httpAddr string)
	// CallerNode is the node that sent r, when node TLS vouches for it.
	CallerNode(r *http.Request) (string, bool)
}

// Host operations a node sends the leader for an agent it runs.
const (
	opInvoke      = "invoke"
	opKV          = "kv"
	opTimerSet    = "timer_set"
	opTimerCancel = "timer_cancel"
	opTimerFired  = "timer_fired"
	opVersion     = "version"
	opStatus      = "status" // not fenced: apply orders reports by epoch
)

// hostOp is one host operation of an agent, performed on the leader: the
// body of POST /v1/agents/{id}/host, which nodes send each other.
type hostOp struct {
	Node    string            `json:"node"`
	Epoch   uint64            `json:"epoch"`
	Op      string            `json:"op"`
	Action  string            `json:"action,omitempty"`
	Body    []byte            `json:"body,omitempty"`
	Key     string            `json:"key,omitempty"`
	Value   []byte            `json:"value,omitempty"`
	Delete  bool              `json:"delete,omitempty"`
	Name    string            `json:"name,omitempty"`
	Due     time.Time         `json:"due,omitzero"`
	Version string            `json:"version,omitempty"`
	Status  *api.AgentRuntime `json:"status,omitempty"`
}

// maxHostOpBytes bounds a host operation: an invocation body or a value,
// base64 in JSON, plus the rest.
const maxHostOpBytes = 2*gateway.MaxInvokeBody + 64<<10

// decodeHostOp decodes and checks a host operation's body.
func decodeHostOp(b []byte) (hostOp, error) {
	var op hostOp
	if len(b) > maxHostOpBytes {
		return op, fmt.Errorf("host operation is %d bytes; at most %d", len(b), maxHostOpBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&op); err != nil {
		return hostOp{}, fmt.Errorf("host operation: %v", err)
	}
	if dec.More() {
		return hostOp{}, errors.New("host operation: unexpected data after the JSON object")
	}
	if op.Node == "" {
		return hostOp{}, errors.New("host operation: no node")
	}
	switch op.Op {
	case opInvoke:
		if op.Action == "" {
			return hostOp{}, errors.New("host operation invoke: no action")
		}
	case opKV:
		if err := store.ValidateKVKey(op.Key); err != nil {
			return hostOp{}, fmt.Errorf("host operation kv: %v", err)
		}
	case opTimerSet, opTimerCancel, opTimerFired:
		if op.Name == "" || len(op.Name) > maxTimerName {
			return hostOp{}, fmt.Errorf("host operation %s: a timer name of 1 to %d bytes", op.Op, maxTimerName)
		}
	case opVersion:
	case opStatus:
		if op.Status == nil {
			return hostOp{}, errors.New("host operation status: no status")
		}
	default:
		return hostOp{}, fmt.Errorf("host operation %q: unknown", op.Op)
	}
	return op, nil
}

// fence refuses a host call of an agent from node in epoch unless the
// replica has the agent placed there in that epoch.
func (r *Runtime) fence(agent, node string, epoch uint64) *hostError {
	pn, pe := r.cfg.Store.AgentPlacement(agent)
	if epoch == 0 || pn != node || pe != epoch {
		return &hostError{Code: codeStaleEpoch, Message: fmt.Sprintf("agent %s runs on node %q in epoch %d, not on %q in epoch %d: the call is refused (it was placed elsewhere)", agent, pn, pe, node, epoch)}
	}
	return nil
}

// act performs a host operation of an agent this node runs: fenced here,
// then performed on the leader (here if this node leads).
func (r *Runtime) act(ctx context.Context, agent string, op hostOp) ([]byte, *hostError) {
	op.Node = r.cfg.Node
	if op.Op != opStatus {
		if herr := r.fence(agent, op.Node, op.Epoch); herr != nil {
			return nil, herr
		}
	}
	if r.cfg.Store.IsLeader() {
		return r.perform(ctx, agent, op)
	}
	if r.cfg.Peers == nil {
		return nil, &hostError{Code: codeUnavailable, Message: "this node cannot reach the leader (no peers configured)"}
	}
	body, err := json.Marshal(op)
	if err != nil {
		return nil, &hostError{Code: codeUnavailable, Message: err.Error()}
	}
	status, resp, err := r.cfg.Peers.CallLeader(ctx, "/v1/agents/"+url.PathEscape(agent)+"/host", body)
	if err != nil {
		return nil, &hostError{Code: codeUnavailable, Message: "the leader could not be reached: " + err.Error()}
	}
	if status == http.StatusOK {
		if op.Op == opKV || op.Op == opVersion {
			// Read your writes: kv_get and the version to run are read
			// from this replica.
			var w struct {
				Revision uint64 `json:"revision"`
			}
			if json.Unmarshal(resp, &w) == nil && w.Revision > 0 {
				if err := r.cfg.Store.WaitForRevision(ctx, w.Revision); err != nil {
					r.log.Debug("sandbox write not yet applied here", "agent", agent, "revision", w.Revision, "err", err)
				}
			}
		}
		return resp, nil
	}
	var eb api.ErrorBody
	if json.Unmarshal(resp, &eb) != nil || eb.Error.Code == "" {
		return nil, &hostError{Code: codeUnavailable, Message: fmt.Sprintf("the leader answered %d: %.200s", status, resp)}
	}
	return nil, &hostError{Code: eb.Error.Code, Message: eb.Error.Message}
}

// perform runs a host operation on the leader; the caller has fenced it.
func (r *Runtime) perform(ctx context.Context, agent string, op hostOp) ([]byte, *hostError) {
	var rev uint64
	var err error
	switch op.Op {
	case opInvoke:
		// The same pipeline as POST /v1/actions/{name}/invoke: the agent is
		// the subject, vouched for by the kernel (no credential in the guest).
		c := gateway.Call{Agent: agent, Action: op.Action, Body: op.Body, Origin: Origin}
		if op.Node != r.cfg.Node {
			c.Note = "from the sandbox on node " + op.Node
		}
		rep := r.cfg.Gateway.Invoke(ctx, c)
		switch {
		case rep.Forward:
			return nil, &hostError{Code: codeUnavailable, Message: "this node lost leadership during the call; retry in a later tick"}
		case rep.Err != nil:
			return nil, &hostError{Code: rep.Err.Code, Message: rep.Err.Message}
		}
		b, err := json.Marshal(invokeAnswer{InvokeResponse: rep.Resp, HTTPStatus: rep.Status})
		if err != nil {
			return nil, &hostError{Code: codeUnavailable, Message: err.Error()}
		}
		return b, nil
	case opKV:
		rev, err = r.cfg.Store.PutAgentKV(ctx, agent, op.Epoch, op.Key, op.Value, op.Delete)
		if errors.Is(err, store.ErrQuota) {
			return nil, &hostError{Code: codeStateQuota, Message: err.Error()}
		}
	case opTimerSet, opTimerCancel, opTimerFired:
		sop := map[string]string{opTimerSet: store.TimerSet, opTimerCancel: store.TimerCancel, opTimerFired: store.TimerFired}[op.Op]
		rev, err = r.cfg.Store.SetAgentTimer(ctx, agent, op.Epoch, sop, op.Name, op.Due)
		if errors.Is(err, store.ErrQuota) {
			return nil, &hostError{Code: codeQuota, Message: err.Error()}
		}
	case opVersion:
		rev, err = r.cfg.Store.SetAgentRunVersion(ctx, agent, op.Version, r.cfg.Now())
	case opStatus:
		st := *op.Status
		st.Agent, st.Node = agent, op.Node
		rev, err = r.cfg.Store.SetAgentStatus(ctx, st)
	}
	switch {
	case err == nil:
		return fmt.Appendf(nil, `{"revision":%d}`, rev), nil
	case errors.Is(err, store.ErrStaleEpoch):
		return nil, &hostError{Code: codeStaleEpoch, Message: err.Error()}
	case errors.Is(err, store.ErrAgentConflict), errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrBadCommand):
		return nil, &hostError{Code: codeBadArgument, Message: err.Error()}
	}
	return nil, &hostError{Code: codeUnavailable, Message: "not written: " + err.Error()}
}

// handleHost is POST /v1/agents/{id}/host on the leader: a host
// operation of an agent another node runs, fenced against the leader's
// replica.
func (r *Runtime) handleHost(w http.ResponseWriter, req *http.Request) {
	b, err := io.ReadAll(http.MaxBytesReader(w, req.Body, maxHostOpBytes))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("a host operation is at most %d bytes", maxHostOpBytes))
		return
	}
	op, err := decodeHostOp(b)
	if err != nil {
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, err.Error())
		return
	}
	if r.cfg.Peers != nil {
		if from, ok := r.cfg.Peers.CallerNode(req); ok && from != op.Node {
			writeError(w, http.StatusForbidden, api.CodeForbidden, fmt.Sprintf("node %s may not make host calls as node %s", from, op.Node))
			return
		}
	}
	id := req.PathValue("id")
	var herr *hostError
	if op.Op != opStatus {
		herr = r.fence(id, op.Node, op.Epoch)
	}
	var out []byte
	if herr == nil {
		ctx, cancel := context.WithCancelCause(req.Context())
		done := r.inflight(id, op.Epoch, cancel)
		out, herr = r.perform(ctx, id, op)
		done()
		cancel(nil)
	}
	if herr != nil {
		status := http.StatusServiceUnavailable
		switch herr.Code {
		case codeStaleEpoch:
			status = http.StatusConflict
		case codeBadArgument, codeStateQuota, codeQuota:
			status = http.StatusUnprocessableEntity
		}
		writeError(w, status, herr.Code, herr.Message)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(out)
}

// place is the leader's placement pass: every agent asked to run that is
// on no live voter goes to the least loaded one. Agents on live nodes
// stay (no churn); the epoch each was seen in makes the write refuse a
// placement that raced another.
func (r *Runtime) place() {
	if !r.cfg.Store.IsLeader() {
		return
	}
	live, err := r.cfg.Store.LiveVoters(r.cfg.DeadAfter)
	if err != nil || len(live) == 0 {
		return
	}
	load := make(map[string]int, len(live))
	for _, n := range live {
		load[n] = 0
	}
	all := r.cfg.Store.SandboxPlacements()
	var moves []api.AgentPlacement
	for _, p := range all {
		if _, ok := load[p.Node]; ok {
			load[p.Node]++
		} else {
			moves = append(moves, p)
		}
	}
	if len(moves) == 0 {
		return
	}
	for i := range moves {
		best := live[0]
		for _, n := range live[1:] {
			if load[n] < load[best] {
				best = n
			}
		}
		if moves[i].Node != "" {
			r.log.Info("agent re-placed", "agent", moves[i].Agent, "from", moves[i].Node, "to", best, "epoch", moves[i].Epoch)
		}
		moves[i].Node = best
		load[best]++
	}
	ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
	defer cancel()
	if _, err := r.cfg.Store.PlaceAgents(ctx, moves, r.cfg.Now()); err != nil {
		r.log.Warn("sandbox placement not recorded", "agents", len(moves), "err", err)
	}
}

// hostCall is a host operation the leader performs for another node.
type hostCall struct {
	epoch  uint64
	cancel context.CancelCauseFunc
}

// inflight registers a host operation being performed for agent in
// epoch; done unregisters it.
func (r *Runtime) inflight(agent string, epoch uint64, cancel context.CancelCauseFunc) (done func()) {
	c := &hostCall{epoch: epoch, cancel: cancel}
	r.mu.Lock()
	if r.calls[agent] == nil {
		r.calls[agent] = map[*hostCall]struct{}{}
	}
	r.calls[agent][c] = struct{}{}
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		delete(r.calls[agent], c)
		if len(r.calls[agent]) == 0 {
			delete(r.calls, agent)
		}
		r.mu.Unlock()
	}
}

// cancelStale cancels the host operations in flight on this node (the
// leader) whose epoch is no longer their agent's: an invocation admitted
// just before a re-placement stops (as far as its backend honours the
// cancel) when this replica applies the placement, as the agent's own
// tick does on a node it is moved away from.
func (r *Runtime) cancelStale() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for agent, calls := range r.calls {
		node, epoch := r.cfg.Store.AgentPlacement(agent)
		for c := range calls {
			if node == "" || c.epoch != epoch {
				c.cancel(fmt.Errorf("agent %s was placed elsewhere (epoch %d on node %q) while this call ran", agent, epoch, node))
			}
		}
	}
}
