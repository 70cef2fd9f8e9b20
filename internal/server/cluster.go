package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/store"
)

// ClusterStore is what the cluster, health and forwarding routes need: the replica's place in the cluster and its progress.
type ClusterStore interface {
	AppliedRevision() uint64
	WaitForRevision(ctx context.Context, rev uint64) error
	IsLeader() bool
	LeaderHTTP() string
	LeaderID() string
	Nodes() ([]api.Node, error)
	Join(ctx context.Context, nodeID, raftAddr, httpAddr string, voter bool) error
	Remove(ctx context.Context, nodeID string) error
	Ready() error
	CaughtUp() error
}

// JoinRequest asks the leader to add a node.
type JoinRequest struct {
	ID   string `json:"id"`
	Raft string `json:"raft"`
	HTTP string `json:"http"`
	// Voter false joins a non-voting read replica. Absent means true.
	Voter *bool `json:"voter,omitempty"`
}

// RemoveRequest asks the leader to remove a node.
type RemoveRequest struct {
	ID string `json:"id"`
}

// handleCluster lists the members with what each says of itself: the
// store knows only this node's applied revision (raft does not export the
// leader's view of its followers), so every member's GET /readyz (this
// node's too, so that all are judged by the same rule) is asked, in
// parallel and for at most peerProbeTimeout, for its applied revision and
// readiness. A member that does not answer is unreachable.
func (s *Server) handleCluster(w http.ResponseWriter, r *http.Request) {
	nodes, err := s.store.Nodes()
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, codeUnavailable, "cluster configuration unavailable: "+err.Error())
		return
	}
	if nodes == nil {
		nodes = []api.Node{}
	}
	ctx, cancel := context.WithTimeout(r.Context(), peerProbeTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for i := range nodes {
		n := &nodes[i]
		wg.Go(func() { s.probePeer(ctx, n) })
	}
	wg.Wait()
	writeJSON(w, http.StatusOK, api.Cluster{Leader: s.store.LeaderID(), Region: s.cfg.Region, Nodes: nodes})
}

// peerProbeTimeout bounds how long GET /v1/cluster waits for the members'
// answers: a dead member costs the listing this much.
const peerProbeTimeout = time.Second

// probePeer asks a member's GET /readyz for its applied revision.
func (s *Server) probePeer(ctx context.Context, n *api.Node) {
	if n.HTTP == "" && n.ID == s.cfg.NodeID {
		// Not recorded yet (a new leader records its addresses): the
		// store still knows this node's own state.
		n.AppliedRevision, n.Status = s.store.AppliedRevision(), api.NodeReady
		if err := s.store.Ready(); err != nil {
			n.Status, n.Detail = api.NodeNotReady, err.Error()
		}
		return
	}
	if n.HTTP == "" {
		n.Status, n.Detail = api.NodeUnreachable, "its HTTP address is not known yet (it has not finished joining)"
		return
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.peerScheme()+"://"+n.HTTP+"/readyz", nil)
	if err != nil {
		n.Status, n.Detail = api.NodeUnreachable, err.Error()
		return
	}
	resp, err := s.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is the member's, already listed
		}
		n.Status, n.Detail = api.NodeUnreachable, err.Error()
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		var eb api.ErrorBody
		n.Status, n.Detail = api.NodeNotReady, resp.Status
		if json.Unmarshal(body, &eb) == nil && eb.Error.Message != "" {
			n.Detail = eb.Error.Message
		}
		return
	}
	var ready struct {
		Revision uint64 `json:"revision"`
	}
	if err := json.Unmarshal(body, &ready); err != nil {
		n.Status, n.Detail = api.NodeNotReady, "its /readyz answer is not JSON: "+err.Error()
		return
	}
	n.Status, n.AppliedRevision = api.NodeReady, ready.Revision
}

func (s *Server) handleJoin(w http.ResponseWriter, r *http.Request) {
	var req JoinRequest
	if err := decodeJSON(r, s.cfg.MaxBodyBytes, &req); err != nil {
		badRequest(w, err)
		return
	}
	if req.ID == "" || req.Raft == "" || req.HTTP == "" {
		badRequest(w, errors.New("join needs id, raft and http addresses"))
		return
	}
	if s.cfg.IdentifyNode != nil {
		if origin := originNode(r); origin != req.ID {
			presented := "no node certificate"
			if origin != "" {
				presented = "the certificate of node " + origin
			}
			writeError(w, http.StatusForbidden, codeForbidden, "joining as node "+req.ID+" needs that node's certificate from the cluster CA, and the request presented "+presented+"; issue one with `aibos tls cert create --node "+req.ID+"` and start the node with --node-cert, --node-key and --node-ca")
			return
		}
	}
	voter := req.Voter == nil || *req.Voter
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.WriteTimeout)
	defer cancel()
	if voter && !s.isMember(req.ID, req.Raft) {
		// A new voter joins as a non-voter first: it counts toward the
		// quorum only once it has caught up and asks again (see
		// JoinResponse), so a node that never catches up cannot cost the
		// cluster its majority.
		if err := s.store.Join(ctx, req.ID, req.Raft, req.HTTP, false); err != nil {
			s.writeJoinError(w, err)
			return
		}
		rev := s.store.AppliedRevision()
		s.log.Info("node joined as a non-voter until it catches up", "id", req.ID, "raft", req.Raft, "http", req.HTTP, "revision", rev)
		writeJSON(w, http.StatusAccepted, JoinResponse{Joined: req.ID, Revision: rev,
			Message: fmt.Sprintf("joined as a non-voter; send the same join again once node %s has applied revision %d to become a voter", req.ID, rev)})
		return
	}
	if err := s.store.Join(ctx, req.ID, req.Raft, req.HTTP, voter); err != nil {
		s.writeJoinError(w, err)
		return
	}
	s.log.Info("node joined", "id", req.ID, "raft", req.Raft, "http", req.HTTP, "voter", voter)
	writeJSON(w, http.StatusOK, JoinResponse{Joined: req.ID, Voter: voter, Revision: s.store.AppliedRevision()})
}

// JoinResponse answers a join: 200 when the node is a member as asked,
// 202 when a new voter was added as a non-voter and must join again, with
// the same request, once it has applied Revision (the node does this by
// itself).
type JoinResponse struct {
	Joined   string `json:"joined"`
	Voter    bool   `json:"voter"`
	Revision uint64 `json:"revision"`
	Message  string `json:"message,omitempty"`
}

// isMember reports whether id is already in the configuration at raftAddr
// (as a voter or not).
func (s *Server) isMember(id, raftAddr string) bool {
	nodes, err := s.store.Nodes()
	if err != nil {
		return false
	}
	for _, n := range nodes {
		if n.ID == id && n.Raft == raftAddr {
			return true
		}
	}
	return false
}

func (s *Server) writeJoinError(w http.ResponseWriter, err error) {
	if errors.Is(err, store.ErrUnreachable) {
		writeError(w, http.StatusBadRequest, codeBadRequest, err.Error())
		return
	}
	s.writeStoreError(w, err)
}

func (s *Server) handleRemove(w http.ResponseWriter, r *http.Request) {
	var req RemoveRequest
	if err := decodeJSON(r, s.cfg.MaxBodyBytes, &req); err != nil {
		badRequest(w, err)
		return
	}
	if req.ID == "" {
		badRequest(w, errors.New("remove needs the node id"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.WriteTimeout)
	defer cancel()
	if err := s.store.Remove(ctx, req.ID); err != nil {
		s.writeStoreError(w, err)
		return
	}
	s.log.Info("node removed", "id", req.ID)
	writeJSON(w, http.StatusOK, map[string]any{"removed": req.ID})
}

// headerForwarded marks a write forwarded by a follower, so that a request
// is forwarded at most once.
const headerForwarded = "X-Aibos-Forwarded"

// leaderOnly runs h on the leader and forwards the request to the leader
// from any other node, returning the leader's answer unchanged.
func (s *Server) leaderOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.store.IsLeader() {
			h(w, r)
			return
		}
		leader := s.store.LeaderHTTP()
		if leader == "" || r.Header.Get(headerForwarded) != "" {
			writeError(w, http.StatusServiceUnavailable, codeNoLeader, "no leader is known to this node right now (an election may be under way); retry shortly")
			return
		}
		s.forward(w, r, leader)
	}
}

// CallLeader posts a JSON body to path on the leader as this node (its
// node credential; marked forwarded, so that a node that is no longer the
// leader answers no_leader instead of passing it on) and answers the
// leader's status and body (at most 16 MiB).
func (s *Server) CallLeader(ctx context.Context, path string, body []byte) (int, []byte, error) {
	return s.callLeader(ctx, path, body, nil)
}

func (s *Server) callLeader(ctx context.Context, path string, body []byte, h http.Header) (int, []byte, error) {
	leader := s.store.LeaderHTTP()
	if leader == "" {
		return 0, nil, errors.New("no leader known")
	}
	u := url.URL{Scheme: s.peerScheme(), Host: leader, Path: path}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(headerForwarded, "1")
	if s.cfg.NodeToken != "" {
		req.Header.Set("Authorization", "Bearer "+s.cfg.NodeToken)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("reading the leader's answer: %w", err)
	}
	return resp.StatusCode, b, nil
}

// ForwardToNode answers r with the answer of the node at httpAddr (the
// node a sandboxed agent runs on); a request that was forwarded already
// is answered 503 instead, so none goes round in circles while a move
// settles.
func (s *Server) ForwardToNode(w http.ResponseWriter, r *http.Request, httpAddr string) {
	if r.Header.Get(headerForwarded) != "" {
		writeError(w, http.StatusServiceUnavailable, codeUnavailable, "the agent is moving between nodes; retry shortly")
		return
	}
	s.forward(w, r, httpAddr)
}

// CallerNode is the node that sent r over node mTLS (ForwardedByNode).
func (s *Server) CallerNode(r *http.Request) (string, bool) { return ForwardedByNode(r) }

func (s *Server) forward(w http.ResponseWriter, r *http.Request, leader string) {
	target := url.URL{Scheme: s.peerScheme(), Host: leader, Path: r.URL.Path, RawQuery: r.URL.RawQuery}
	body := http.MaxBytesReader(nil, r.Body, 64<<20)
	req, err := http.NewRequestWithContext(r.Context(), r.Method, target.String(), body)
	if err != nil {
		writeError(w, http.StatusInternalServerError, codeInternal, err.Error())
		return
	}
	req.Header = r.Header.Clone()
	req.Header.Set(headerForwarded, "1")
	if origin := originNode(r); origin != "" {
		req.Header.Set(headerNode, origin)
	}
	req.ContentLength = r.ContentLength
	resp, err := s.client.Do(req)
	if err != nil {
		s.metrics.forwardErrors.Inc()
		var opErr *net.OpError
		if errors.As(err, &opErr) && opErr.Op == "dial" {
			// The request never left this node.
			writeError(w, http.StatusServiceUnavailable, codeNoLeader, "could not reach the leader at "+leader+": "+err.Error()+"; retry")
			return
		}
		writeError(w, http.StatusServiceUnavailable, codeOutcomeUnknown, "the connection to the leader at "+leader+" failed after the write was sent ("+err.Error()+"): it may or may not have been applied; read the state before retrying")
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}
