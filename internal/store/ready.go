package store

import (
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
)

// TransferLeadership hands leadership to another voter if this node leads
// and one exists; otherwise it does nothing. The node calls it first when
// shutting down, so writes are accepted elsewhere while it drains.
func (s *Store) TransferLeadership() { s.transferLeadership() }

// Ready reports nil once this node is open, knows a leader and its HTTP
// address, and has caught up (CaughtUp). Otherwise it returns an error
// wrapping ErrNotReady (or ErrClosed) that says what is missing.
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
	return s.CaughtUp()
}

// CaughtUp reports nil once the state machine has applied, since New,
// every entry that was in the local log when the store opened (what this
// node had applied and acknowledged before it stopped is among them) and
// every entry a leader has told it is committed — whichever is further.
// Until then the state may be older than the one this node served before
// a restart, and the server answers nothing from it. The check latches:
// under a steady write load the applied index always trails the commit
// index by a few entries, and a node must not flap out of service, nor
// stop deciding when the leader is lost. DESIGN.md ("Restart") says why
// this target and why it cannot deadlock.
func (s *Store) CaughtUp() error {
	if s.caughtUp.Load() {
		return nil
	}
	select {
	case <-s.done:
		return ErrClosed
	default:
	}
	// The commit index is not persisted: 0 until this node, as leader,
	// commits its first entry, or a leader's AppendEntries carries one
	// (heartbeats do not).
	commit := s.raft.CommitIndex()
	if commit == 0 {
		return fmt.Errorf("%w: replaying: waiting for a leader to tell this node which of its %d log entries are committed", ErrNotReady, s.openIndex)
	}
	// A follower's log may end in entries that never committed; a new
	// leader deletes them. Then the log is shorter than at open, and what
	// is left (and what the leader writes over it) is the target.
	target := max(commit, min(s.openIndex, s.raft.LastIndex()))
	if queued := s.raft.AppliedIndex(); queued < target {
		return fmt.Errorf("%w: replaying: log index %d of %d handed to the state machine", ErrNotReady, queued, target)
	}
	if i, err := s.unappliedCommand(target); err != nil || i != 0 {
		if err == nil {
			err = fmt.Errorf("the command at log index %d is queued", i)
		}
		return fmt.Errorf("%w: replaying: the state machine is at log index %d of %d: %v", ErrNotReady, s.fsm.index.Load(), target, err)
	}
	if s.caughtUp.CompareAndSwap(false, true) {
		s.log.Info("store caught up", "log_index", target, "revision", s.AppliedRevision(), "log_index_at_open", s.openIndex)
	}
	return nil
}

// unappliedCommand returns the index of a command at or below target that
// the state machine has not applied yet, or 0 if it has applied them all.
// Raft counts an entry as applied once it has queued it for the state
// machine (up to 128 batches), and only commands reach the state machine
// (no-ops, barriers and configuration entries do not), so its index may
// stay below target for good: the entries between it and target are what
// tells. The scan stops at the first command, so it reads the few
// non-command entries at the end of the log.
func (s *Store) unappliedCommand(target uint64) (uint64, error) {
	var l raft.Log
	for i := target; i > s.fsm.index.Load(); i-- {
		if err := s.logs.GetLog(i, &l); err != nil {
			// Entries above the state machine's index are never compacted
			// (a snapshot is taken from it, or restored into it, first).
			if errors.Is(err, raft.ErrLogNotFound) {
				return 0, fmt.Errorf("log index %d is neither applied nor in the log (the raft log in the data directory looks damaged)", i)
			}
			return 0, fmt.Errorf("read log index %d: %w", i, err)
		}
		if l.Type == raft.LogCommand {
			return i, nil
		}
	}
	return 0, nil
}
