package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"

	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// ErrDamagedLog is returned by New when the raft log file cannot be read
// as a bbolt database: truncated, overwritten or otherwise corrupted.
var ErrDamagedLog = errors.New("the raft log is damaged")

// checkRaftDB opens an existing raft log read-only and checks that the
// file holds every page its meta page says it has, before raft-boltdb
// opens it for real (openBolt). bbolt trusts the file: on a damaged one
// it panics (invalid freelist page) or faults reading its memory map past
// the end of a truncated file (SIGBUS, later, wherever raft reads), so
// the check runs with faults turned into panics and recovers them, and a
// damaged file is reported as such.
func checkRaftDB(path string) (err error) {
	info, serr := os.Stat(path)
	if errors.Is(serr, os.ErrNotExist) {
		return nil // a new node
	}
	if serr != nil {
		return fmt.Errorf("store: raft log %s: %w", path, serr)
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = damaged(path, fmt.Sprint(p))
		}
	}()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: boltOpenTimeout})
	if errors.Is(err, bbolt.ErrTimeout) || errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("store: open raft log %s: %w", path, err)
	}
	if err != nil {
		return damaged(path, err.Error())
	}
	defer db.Close()
	return db.View(func(tx *bbolt.Tx) error {
		if want := tx.Size(); info.Size() < want {
			return damaged(path, fmt.Sprintf("the file has %d bytes but its pages need %d (truncated)", info.Size(), want))
		}
		return nil
	})
}

// damaged says what is wrong with the raft log and how to recover.
func damaged(path, why string) error {
	data := filepath.Dir(filepath.Dir(path)) // DATA/raft/raft.db
	return fmt.Errorf("store: %w: %s cannot be read (%s). This node cannot start from it: restore the node's data directory %s from a backup; "+
		"or, if the other members are healthy, remove the node from the cluster (POST /v1/cluster/remove), delete %s and start the node again with --join to a member (it gets the state from the leader). "+
		"A single-node cluster without a backup has lost its state", ErrDamagedLog, path, why, data, data)
}

// openBolt opens the raft log with raft-boltdb, turning a panic or a
// memory fault in bbolt (a damaged file that passed checkRaftDB, such as
// an overwritten freelist page) into ErrDamagedLog.
func openBolt(opts raftboltdb.Options) (s *raftboltdb.BoltStore, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			s, err = nil, damaged(opts.Path, fmt.Sprint(p))
		}
	}()
	return raftboltdb.New(opts)
}
