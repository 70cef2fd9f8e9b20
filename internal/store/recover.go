package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// Peer is one member of a recovered cluster, as written in a peers file:
// `[{"id": "n1", "raft": "127.0.0.1:8301"}, ...]` (`"nonvoter": true` for
// a read replica).
type Peer struct {
	ID       string `json:"id"`
	Raft     string `json:"raft"`
	NonVoter bool   `json:"nonvoter,omitempty"`
}

// ReadPeers reads and checks a peers file.
func ReadPeers(file string) ([]Peer, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("store: peers file: %w", err)
	}
	var peers []Peer
	if err := json.Unmarshal(b, &peers); err != nil {
		return nil, fmt.Errorf("store: peers file %s: %w (want [{\"id\": \"n1\", \"raft\": \"127.0.0.1:8301\"}, ...])", file, err)
	}
	voters := 0
	seen := map[string]bool{}
	for i, p := range peers {
		if p.ID == "" || p.Raft == "" {
			return nil, fmt.Errorf("store: peers file %s: entry %d needs an id and a raft address", file, i+1)
		}
		if seen[p.ID] {
			return nil, fmt.Errorf("store: peers file %s: node %s listed twice", file, p.ID)
		}
		seen[p.ID] = true
		if !p.NonVoter {
			voters++
		}
	}
	if voters == 0 {
		return nil, fmt.Errorf("store: peers file %s lists no voter", file)
	}
	return peers, nil
}

// Recover rewrites the Raft configuration of the stopped node whose state
// is in dataDir to exactly peers, keeping its data (raft.RecoverCluster:
// the log and the latest snapshot are replayed into a new snapshot that
// carries the new configuration). It is how a cluster that lost its quorum
// for good comes back: stop every surviving node, run Recover with the same
// peers file on each, start them again. Entries the lost nodes had
// committed but these never received are lost; run it on the survivors
// with the most recent log.
func Recover(nodeID, dataDir string, peers []Peer) error {
	if len(peers) == 0 {
		return errors.New("store: recover needs at least one peer")
	}
	dir := filepath.Join(dataDir, "raft")
	if _, err := os.Stat(filepath.Join(dir, "raft.db")); err != nil {
		return fmt.Errorf("store: recover: no raft state in %s: %w", dir, err)
	}
	bolt, err := raftboltdb.New(raftboltdb.Options{
		Path:        filepath.Join(dir, "raft.db"),
		BoltOptions: &bbolt.Options{Timeout: boltOpenTimeout},
	})
	if err != nil {
		return fmt.Errorf("store: recover: open %s (is the node still running? stop it first): %w", dir, err)
	}
	defer bolt.Close()
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(nodeID)
	rc.Logger = newHCLogger(slog.New(slog.DiscardHandler))
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, snapshotsRetain, rc.Logger)
	if err != nil {
		return fmt.Errorf("store: recover: snapshot store: %w", err)
	}
	var conf raft.Configuration
	for _, p := range peers {
		s := raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Raft), Suffrage: raft.Voter}
		if p.NonVoter {
			s.Suffrage = raft.Nonvoter
		}
		conf.Servers = append(conf.Servers, s)
	}
	_, trans := raft.NewInmemTransport("")
	if err := raft.RecoverCluster(rc, newFSM(nil), bolt, bolt, snaps, trans, conf); err != nil {
		return fmt.Errorf("store: recover %s: %w", dataDir, err)
	}
	return nil
}
