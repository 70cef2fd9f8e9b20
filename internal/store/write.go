package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/aibos/kernel/api"
)

// Publish adds a bundle version with the given files, stored verbatim (as
// decoded from the log entry, so the caller keeps its slice). now is the
// version's time, fixed here so every replica stores the same. Version,
// parent and revision are assigned when the entry is applied. Leader only.
func (s *Store) Publish(ctx context.Context, files []api.File, message, author string, now time.Time) (api.VersionInfo, error) {
	if err := validateFiles(files); err != nil {
		return api.VersionInfo{}, fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	res, err := s.propose(ctx, cmdBundlePublish, publishCmd{
		Files: files, Hash: HashFiles(files), Message: message, Author: author, Time: now,
	})
	if err != nil {
		return api.VersionInfo{}, err
	}
	v := *res.Version
	v.GlobalVersion = res.GlobalVersion
	return v, nil
}

// Rollback adds a version whose files are those of version to
// (ErrNoSuchVersion if there is none). Leader only.
func (s *Store) Rollback(ctx context.Context, to uint64, message, author string, now time.Time) (api.VersionInfo, error) {
	res, err := s.propose(ctx, cmdBundleRollback, rollbackCmd{To: to, Message: message, Author: author, Time: now})
	if err != nil {
		return api.VersionInfo{}, err
	}
	v := *res.Version
	v.GlobalVersion = res.GlobalVersion
	return v, nil
}

// PutEntities upserts entities in one atomic command and returns its
// revision. Stored properties are what JSON decoding gives (numbers are
// float64), on the leader as on every follower. Leader only.
func (s *Store) PutEntities(ctx context.Context, entities []api.Entity) (uint64, error) {
	if err := validateEntities(entities); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	res, err := s.propose(ctx, cmdEntitiesPut, entitiesPutCmd{Entities: entities})
	return res.Revision, err
}

// DeleteEntity deletes one entity (ErrNotFound if there is none) and
// returns the revision. Leader only.
func (s *Store) DeleteEntity(ctx context.Context, typ, id string) (uint64, error) {
	res, err := s.propose(ctx, cmdEntityDelete, entityDeleteCmd{Type: typ, ID: id})
	return res.Revision, err
}

// Snapshot takes a snapshot now and compacts the log (keeping
// Timings.TrailingLogs entries). Nothing new to snapshot is not an error.
func (s *Store) Snapshot() error {
	err := s.raft.Snapshot().Error()
	switch {
	case err == nil, errors.Is(err, raft.ErrNothingNewToSnapshot):
		return nil
	default:
		return fmt.Errorf("store: snapshot: %w", mapRaftErr(err))
	}
}

// propose appends a command to the log and waits until it is applied on
// this node, returning the state machine's result.
func (s *Store) propose(ctx context.Context, typ string, payload any) (applyResult, error) {
	select {
	case <-s.done:
		return applyResult{}, ErrClosed
	default:
	}
	if s.raft.State() != raft.Leader {
		return applyResult{}, ErrNotLeader
	}
	data, err := encodeCommand(typ, payload)
	if err != nil {
		return applyResult{}, fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	if err := s.gateGlobal(typ, data); err != nil {
		return applyResult{}, err
	}
	start := time.Now()
	f := s.raft.Apply(data, enqueueTimeout(ctx))
	if err := waitFuture(ctx, f); err != nil {
		return applyResult{}, mapRaftErr(err)
	}
	s.metrics.observeCommit(typ, time.Since(start))
	switch r := f.Response().(type) {
	case applyResult:
		if w := s.globalCommit.Load(); w != nil && r.GlobalVersion > 0 && globalTypes[typ] && typ != cmdEpochBegin {
			if err := (*w)(ctx, r.GlobalVersion); err != nil {
				return r, err
			}
		}
		return r, nil
	case error:
		return applyResult{}, r
	default:
		return applyResult{}, fmt.Errorf("store: unexpected apply response %T", r)
	}
}

// enqueueTimeout bounds how long raft.Apply may wait to hand the entry to
// the leader loop.
func enqueueTimeout(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d > 0 {
			return d
		}
		return time.Millisecond
	}
	return defaultWriteTimeout
}

// waitFuture waits for f or ctx. If ctx ends first the future keeps
// running; the helper goroutine ends when raft resolves it (at the latest
// on shutdown, which fails every pending future).
func waitFuture(ctx context.Context, f raft.Future) error {
	if ctx.Done() == nil {
		return f.Error()
	}
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("store: waiting for raft (outcome unknown): %w", ctx.Err())
	}
}

// mapRaftErr turns raft's errors into this package's sentinels.
func mapRaftErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w (%v)", ErrNotLeader, err)
	case errors.Is(err, raft.ErrLeadershipLost):
		return ErrLeadershipLost
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrClosed
	default:
		return err
	}
}
