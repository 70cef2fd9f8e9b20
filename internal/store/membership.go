package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/aibos/kernel/api"
)

// Roles reported by Nodes.
const (
	RoleLeader   = "leader"
	RoleFollower = "follower"
	RoleNonvoter = "nonvoter"
)

// IsLeader reports whether this node is the leader.
func (s *Store) IsLeader() bool { return s.raft.State() == raft.Leader }

// LeaderID returns the leader's node id, "" if unknown.
func (s *Store) LeaderID() string {
	_, id := s.raft.LeaderWithID()
	return string(id)
}

// Term is this node's current Raft term.
func (s *Store) Term() uint64 { return s.raft.CurrentTerm() }

// LeaderHTTP returns the leader's advertised HTTP address, "" if the leader
// or its address is unknown. Forward writes there on ErrNotLeader.
func (s *Store) LeaderHTTP() string {
	id := s.LeaderID()
	if id == "" {
		return ""
	}
	s.fsm.mu.RLock()
	defer s.fsm.mu.RUnlock()
	return s.fsm.st.nodes[id].HTTP
}

// WaitForLeader returns once this node knows a leader (itself or another),
// or when ctx ends or the store closes.
func (s *Store) WaitForLeader(ctx context.Context) error {
	for {
		ch := s.leaderWait.Wait()
		if s.LeaderID() != "" {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return ErrClosed
		}
	}
}

// Nodes lists the members of raft's latest configuration with their
// addresses and roles. AppliedRevision is known for this node only; it is
// 0 for the others (the server asks them if it needs it).
func (s *Store) Nodes() ([]api.Node, error) {
	cf := s.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return nil, fmt.Errorf("store: configuration: %w", mapRaftErr(err))
	}
	leader := s.LeaderID()
	s.fsm.mu.RLock()
	defer s.fsm.mu.RUnlock()
	var out []api.Node
	for _, srv := range cf.Configuration().Servers {
		n := api.Node{ID: string(srv.ID), Raft: string(srv.Address), HTTP: s.fsm.st.nodes[string(srv.ID)].HTTP}
		switch {
		case n.ID == leader:
			n.Role = RoleLeader
		case srv.Suffrage != raft.Voter:
			n.Role = RoleNonvoter
		default:
			n.Role = RoleFollower
		}
		if n.ID == s.cfg.NodeID {
			n.AppliedRevision = s.AppliedRevision()
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Join adds a node to the cluster as a voter or a non-voter and records
// its addresses. Leader only. Idempotent: joining again with the same id
// and raft address changes nothing but a changed HTTP address or
// suffrage; a known id at a new address (or a new id at a known address)
// replaces the old member.
func (s *Store) Join(ctx context.Context, nodeID, raftAddr, httpAddr string, voter bool) error {
	if nodeID == "" || raftAddr == "" {
		return fmt.Errorf("%w: join needs a node id and a raft address", ErrBadCommand)
	}
	if !s.IsLeader() {
		return ErrNotLeader
	}
	cf := s.raft.GetConfiguration()
	if err := waitFuture(ctx, cf); err != nil {
		return fmt.Errorf("store: join %s: %w", nodeID, mapRaftErr(err))
	}
	id, addr := raft.ServerID(nodeID), raft.ServerAddress(raftAddr)
	member, isVoter := false, false
	for _, srv := range cf.Configuration().Servers {
		if srv.ID == id && srv.Address == addr {
			member, isVoter = true, srv.Suffrage == raft.Voter
		}
	}
	if !member || (voter && !isVoter) {
		// A new member or a promotion to voter must answer first, before
		// anything changes: a voter where nothing listens counts toward
		// the quorum and can cost the cluster its leader.
		if err := s.probe(ctx, raftAddr); err != nil {
			return fmt.Errorf("store: join %s at %s refused: %w", nodeID, raftAddr, err)
		}
	}
	for _, srv := range cf.Configuration().Servers {
		switch {
		case srv.ID == id && srv.Address == addr: // this member itself: kept
		case srv.ID == id || srv.Address == addr:
			s.log.Info("replacing member", "id", srv.ID, "raft", srv.Address, "new_id", id, "new_raft", addr)
			if err := waitFuture(ctx, s.raft.RemoveServer(srv.ID, 0, enqueueTimeout(ctx))); err != nil {
				return fmt.Errorf("store: join %s: remove old member %s: %w", nodeID, srv.ID, mapRaftErr(err))
			}
		}
	}
	var f raft.IndexFuture
	switch {
	case member && isVoter == voter:
	case voter:
		// Also promotes an existing non-voter.
		f = s.raft.AddVoter(id, addr, 0, enqueueTimeout(ctx))
	case member: // a voter asked to become a non-voter
		f = s.raft.DemoteVoter(id, 0, enqueueTimeout(ctx))
	default:
		f = s.raft.AddNonvoter(id, addr, 0, enqueueTimeout(ctx))
	}
	if f != nil {
		if err := waitFuture(ctx, f); err != nil {
			return fmt.Errorf("store: join %s: %w", nodeID, mapRaftErr(err))
		}
		s.log.Info("member joined", "id", nodeID, "raft", raftAddr, "http", httpAddr, "voter", voter)
	}
	return s.setNode(ctx, nodeMeta{ID: nodeID, HTTP: httpAddr, Raft: raftAddr})
}

// setNode records a member's addresses unless the local replica already
// has exactly them.
func (s *Store) setNode(ctx context.Context, m nodeMeta) error {
	s.fsm.mu.RLock()
	cur, ok := s.fsm.st.nodes[m.ID]
	s.fsm.mu.RUnlock()
	if ok && cur == m {
		return nil
	}
	if _, err := s.propose(ctx, cmdNodeSet, nodeSetCmd(m)); err != nil {
		return fmt.Errorf("store: record node %s: %w", m.ID, err)
	}
	return nil
}

// Remove takes a node out of the cluster and forgets its addresses. Leader
// only; removing an unknown node is not an error. Removing the leader
// itself makes it step down once the change commits.
func (s *Store) Remove(ctx context.Context, nodeID string) error {
	if !s.IsLeader() {
		return ErrNotLeader
	}
	// Addresses first: once this node is removed it cannot propose.
	s.fsm.mu.RLock()
	_, known := s.fsm.st.nodes[nodeID]
	s.fsm.mu.RUnlock()
	if known {
		if _, err := s.propose(ctx, cmdNodeRemove, nodeRemoveCmd{ID: nodeID}); err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("store: remove %s: %w", nodeID, err)
		}
	}
	if err := waitFuture(ctx, s.raft.RemoveServer(raft.ServerID(nodeID), 0, enqueueTimeout(ctx))); err != nil {
		return fmt.Errorf("store: remove %s: %w", nodeID, mapRaftErr(err))
	}
	return nil
}

// peerHealth is what the leader's heartbeats tell of its followers: since
// when each failing one has not answered. raft reports a failed heartbeat
// at every attempt (backing off up to half the heartbeat timeout) and a
// resumed one at the first success after failures.
type peerHealth struct {
	mu      sync.Mutex
	failing map[string]time.Time // guarded by mu
	// heard: when this node, as the new leader, last heard from the
	// leader before it (its last contact as a follower); guarded by mu.
	heard map[string]time.Time
	prev  string // the last leader known; guarded by mu
}

// leaderChanged starts a new leader's view afresh. The old leader's
// silence counts from this node's last contact with it: if it died, the
// election has already waited a heartbeat timeout for it.
func (p *peerHealth) leaderChanged(leader, self string, lastContact time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if leader == self {
		p.failing, p.heard = nil, nil
		if p.prev != "" && p.prev != self && !lastContact.IsZero() {
			p.heard = map[string]time.Time{p.prev: lastContact}
		}
	}
	if leader != "" {
		p.prev = leader
	}
}

func (p *peerHealth) failed(id string, lastContact, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.failing[id]; ok {
		return
	}
	if p.failing == nil {
		p.failing = map[string]time.Time{}
	}
	since := now
	if !lastContact.IsZero() && lastContact.Before(since) {
		since = lastContact
	}
	if h, ok := p.heard[id]; ok && h.Before(since) {
		since = h
	}
	p.failing[id] = since
}

func (p *peerHealth) resumed(id string) {
	p.mu.Lock()
	delete(p.failing, id)
	delete(p.heard, id)
	p.mu.Unlock()
}

// downFor is how long id's heartbeats have failed (0: they answer).
func (p *peerHealth) downFor(id string, now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if since, ok := p.failing[id]; ok {
		return now.Sub(since)
	}
	return 0
}

// LiveVoters lists, by id, the voters of raft's latest configuration that
// the leader hears from: itself, and every other voter whose heartbeats
// have not been failing for deadAfter or longer (a killed node refuses
// them at once; a hung one fails when the transport's timeout ends). A
// node that left is not in the configuration. Leader only: a follower
// does not hear from the others (ErrNotLeader).
func (s *Store) LiveVoters(deadAfter time.Duration) ([]string, error) {
	if !s.IsLeader() {
		return nil, ErrNotLeader
	}
	cf := s.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return nil, fmt.Errorf("store: configuration: %w", mapRaftErr(err))
	}
	now := time.Now()
	var out []string
	for _, srv := range cf.Configuration().Servers {
		id := string(srv.ID)
		if srv.Suffrage != raft.Voter || (id != s.cfg.NodeID && s.peers.downFor(id, now) >= deadAfter) {
			continue
		}
		out = append(out, id)
	}
	sort.Strings(out)
	return out, nil
}

// NodeHTTP is a member's advertised HTTP address ("" if unknown).
func (s *Store) NodeHTTP(id string) string {
	s.fsm.mu.RLock()
	defer s.fsm.mu.RUnlock()
	return s.fsm.st.nodes[id].HTTP
}

// watchLeader wakes WaitForLeader callers on every leader change. raft
// drops an observation when the channel is full; a pending one still wakes
// the waiters after the change, so none is lost.
func (s *Store) watchLeader(obs <-chan raft.Observation) {
	defer s.wg.Done()
	for {
		select {
		case <-obs:
			s.leaderWait.Broadcast()
		case <-s.ctx.Done():
			s.leaderWait.Broadcast()
			return
		}
	}
}

// leaderDuties runs what a new leader owes the cluster: recording its own
// addresses (a bootstrapped node was never joined; a restarted one may have
// a new HTTP address).
func (s *Store) leaderDuties() {
	defer s.wg.Done()
	for {
		select {
		case isLeader := <-s.raft.LeaderCh():
			if !isLeader {
				continue
			}
			ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
			err := s.registerSelf(ctx)
			cancel()
			if err != nil && s.ctx.Err() == nil {
				s.log.Warn("recording own addresses as new leader failed", "err", err)
			}
		case <-s.ctx.Done():
			return
		}
	}
}

func (s *Store) registerSelf(ctx context.Context) error {
	// The barrier makes the local replica current, so setNode compares
	// against the committed metadata.
	if err := waitFuture(ctx, s.raft.Barrier(enqueueTimeout(ctx))); err != nil {
		return mapRaftErr(err)
	}
	return s.setNode(ctx, nodeMeta{ID: s.cfg.NodeID, HTTP: s.cfg.HTTPAddr, Raft: s.raftAddr})
}
