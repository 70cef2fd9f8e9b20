package store

import "fmt"

// TransferLeadership hands leadership to another voter if this node leads
// and one exists; otherwise it does nothing. The node calls it first when
// shutting down, so writes are accepted elsewhere while it drains.
func (s *Store) TransferLeadership() { s.transferLeadership() }

// Ready reports nil once this node is open, knows a leader and its HTTP
// address, and has (once since New) applied every entry it knew to be
// committed, so a restarted node is not ready before it has replayed its
// log. Otherwise it returns an error wrapping ErrNotReady (or ErrClosed)
// that says what is missing. The catch-up check latches: under a steady
// write load the applied index always trails the commit index by a few
// entries, and that must not make a node flap out of readiness.
func (s *Store) Ready() error {
	select {
	case <-s.done:
		return ErrClosed
	default:
	}
	if s.LeaderID() == "" {
		return fmt.Errorf("%w: no leader is known to this node", ErrNotReady)
	}
	if s.LeaderHTTP() == "" {
		return fmt.Errorf("%w: the leader's HTTP address is not known yet, so writes cannot be forwarded", ErrNotReady)
	}
	if s.ready.Load() {
		return nil
	}
	// A follower learns the commit index from the leader's first
	// AppendEntries that carries one (heartbeats do not); until then it is
	// 0, and a restarted node must not count as caught up.
	applied, commit := s.raft.AppliedIndex(), s.raft.CommitIndex()
	if commit == 0 || applied < commit {
		return fmt.Errorf("%w: catching up: applied log index %d of %d committed", ErrNotReady, applied, commit)
	}
	s.ready.Store(true)
	return nil
}
