// Package store owns the replicated state of one kernel region: bundle
// versions, entities and cluster metadata, kept in a deterministic state
// machine behind hashicorp/raft, with snapshots, revisions, membership and
// a wait for an applied revision. It speaks no HTTP: the server forwards
// writes to the leader and calls this package on every node.
//
// Writes go through the leader's log and return the revision that committed
// them; reads answer from the local replica. See DESIGN.md in this directory
// for the choices behind timings, encoding and durability.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/bbolt"

	"github.com/aibos/kernel/internal/broadcast"
)

// Sentinel errors. Callers branch on them with errors.Is.
var (
	// ErrNotLeader: this node is not the leader; the write was not
	// proposed and is safe to send to the leader (LeaderHTTP).
	ErrNotLeader = errors.New("store: not the leader")
	// ErrLeadershipLost: leadership was lost after the write entered the
	// log. It may or may not commit; a retry may apply it twice.
	ErrLeadershipLost = errors.New("store: leadership lost while committing; outcome unknown")
	// ErrNoSuchVersion: a rollback named a version that does not exist.
	ErrNoSuchVersion = errors.New("store: no such bundle version")
	// ErrNotFound: a delete named an entity or node that does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("store: closed")
	// ErrNotReady: see Ready.
	ErrNotReady = errors.New("store: not ready")
)

// Timings tunes raft. A zero field takes the default in parentheses; see
// DESIGN.md for why these values.
type Timings struct {
	HeartbeatTimeout   time.Duration // (200ms) follower starts an election after this long without the leader
	ElectionTimeout    time.Duration // (200ms) candidate retries after this long without a majority; ≥ HeartbeatTimeout
	LeaderLeaseTimeout time.Duration // (200ms) leader steps down after this long without a majority; ≤ HeartbeatTimeout
	CommitTimeout      time.Duration // (10ms) when writes stop, followers learn the commit index within 2× this
	SnapshotInterval   time.Duration // (30s) how often to check SnapshotThreshold
	SnapshotThreshold  uint64        // (8192) log entries since the last snapshot that trigger a new one
	TrailingLogs       uint64        // (10240) log entries kept after a snapshot, for slow followers
}

func (t Timings) withDefaults() Timings {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&t.HeartbeatTimeout, 200*time.Millisecond)
	def(&t.ElectionTimeout, 200*time.Millisecond)
	def(&t.LeaderLeaseTimeout, 200*time.Millisecond)
	def(&t.CommitTimeout, 10*time.Millisecond)
	def(&t.SnapshotInterval, 30*time.Second)
	if t.SnapshotThreshold == 0 {
		t.SnapshotThreshold = 8192
	}
	if t.TrailingLogs == 0 {
		t.TrailingLogs = 10240
	}
	return t
}

// Config configures a Store. NodeID, RaftAddr and DataDir are required.
type Config struct {
	NodeID string
	// RaftAddr is the address raft listens on. Port 0 picks a free port:
	// see Store.RaftAddr.
	RaftAddr string
	// RaftAdvertise, if set, is the address peers are told to dial instead
	// of RaftAddr (a proxy or NAT in front of the node; the system tests
	// put a fault-injecting proxy there to partition nodes). It must be an
	// IP:port; with it, RaftAddr may be 0.0.0.0.
	RaftAdvertise string
	// HTTPAddr is this node's advertised HTTP address, kept in the cluster
	// metadata so any node can find the leader's.
	HTTPAddr string
	// DataDir holds the raft log (raft/raft.db) and snapshots (raft/snapshots).
	DataDir string
	// Bootstrap makes a new single-node cluster if DataDir has no raft
	// state. It is ignored when state exists.
	Bootstrap bool
	// NonVoter is informational: the leader's Join decides suffrage.
	NonVoter bool
	Logger   *slog.Logger // nil: discard
	Timings  Timings
	// OnApply, if set, is called on raft's apply goroutine after each change
	// is applied (and after a snapshot restore, which may happen inside New)
	// and before the change's revision becomes visible to AppliedRevision and
	// WaitForRevision. It must not panic, should be quick (it delays every
	// later apply), must not call write methods or WaitForRevision, and may
	// call read methods.
	OnApply func(Change)
	// Registerer, if set, receives the store's metrics (unregistered on Close).
	Registerer prometheus.Registerer
	// RaftTLS, if set, puts Raft traffic under mutual TLS (see stream.go);
	// nil: plain TCP.
	RaftTLS *RaftTLS
}

// Store is one node's replica of the region state. Its methods are safe for
// concurrent use.
type Store struct {
	cfg      Config
	log      *slog.Logger
	fsm      *fsm
	raft     *raft.Raft
	trans    *raft.NetworkTransport
	stream   *tlsStream // nil without RaftTLS
	bolt     *raftboltdb.BoltStore
	logs     raft.LogStore
	raftAddr string
	metrics  *metrics

	observer   *raft.Observer
	leaderWait broadcast.Notifier
	peers      peerHealth // the leader's view of its followers' heartbeats

	ctx    context.Context // canceled by Close/Kill; stops background work
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// openIndex is the last index of the local log (or snapshot) when the
	// store opened: what this node held before it stopped. CaughtUp waits
	// until the state machine has applied it; see DESIGN.md, "Restart".
	openIndex uint64
	caughtUp  atomic.Bool // latched by CaughtUp
	// bootstrapped: this start made a new cluster (set once in New).
	bootstrapped bool

	// globalGate is checked before a global write is proposed (nil: none).
	globalGate atomic.Pointer[func() error]
	// globalCommit is waited for after a global write applied (nil: none).
	globalCommit atomic.Pointer[func(context.Context, uint64) error]

	closeOnce sync.Once
	closeErr  error
	done      chan struct{} // closed when shut down
}

const (
	logCacheSize     = 512
	snapshotsRetain  = 2
	transportPool    = 3
	transportTimeout = 10 * time.Second
	boltOpenTimeout  = 5 * time.Second
	// defaultWriteTimeout bounds a write whose ctx has no deadline.
	defaultWriteTimeout = 30 * time.Second
)

// New opens (or creates) the node's raft state in cfg.DataDir, starts raft,
// and bootstraps a single-node cluster if asked and there is no state. It
// returns once raft runs; the node may not have a leader yet (WaitForLeader).
func New(cfg Config) (*Store, error) {
	if cfg.NodeID == "" || cfg.RaftAddr == "" || cfg.DataDir == "" {
		return nil, errors.New("store: NodeID, RaftAddr and DataDir are required")
	}
	if cfg.Bootstrap && cfg.NonVoter {
		return nil, errors.New("store: a non-voter cannot bootstrap a cluster")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Timings = cfg.Timings.withDefaults()
	t := cfg.Timings

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.HeartbeatTimeout = t.HeartbeatTimeout
	rc.ElectionTimeout = t.ElectionTimeout
	rc.LeaderLeaseTimeout = t.LeaderLeaseTimeout
	rc.CommitTimeout = t.CommitTimeout
	rc.SnapshotInterval = t.SnapshotInterval
	rc.SnapshotThreshold = t.SnapshotThreshold
	rc.TrailingLogs = t.TrailingLogs
	rc.BatchApplyCh = true
	rc.NoLegacyTelemetry = true
	rc.Logger = newHCLogger(cfg.Logger.With("component", "raft"))
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("store: raft config: %w", err)
	}

	dir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("store: data dir: %w", err)
	}
	s := &Store{cfg: cfg, log: cfg.Logger, fsm: newFSM(cfg.OnApply), done: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	ok := false
	defer func() {
		if !ok {
			s.cancel()
			if s.raft != nil {
				_ = s.raft.Shutdown().Error()
			}
			if s.trans != nil {
				_ = s.trans.Close()
			}
			if s.bolt != nil {
				_ = s.bolt.Close()
			}
		}
	}()

	if err := checkRaftDB(filepath.Join(dir, "raft.db")); err != nil {
		return nil, err
	}
	var err error
	s.bolt, err = openBolt(raftboltdb.Options{
		Path:        filepath.Join(dir, "raft.db"),
		BoltOptions: &bbolt.Options{Timeout: boltOpenTimeout},
	})
	if err != nil {
		return nil, fmt.Errorf("store: open raft log %s: %w", dir, err)
	}
	logs, err := raft.NewLogCache(logCacheSize, s.bolt)
	if err != nil {
		return nil, fmt.Errorf("store: log cache: %w", err)
	}
	fileSnaps, err := raft.NewFileSnapshotStoreWithLogger(dir, snapshotsRetain, rc.Logger)
	if err != nil {
		return nil, fmt.Errorf("store: snapshot store: %w", err)
	}
	snaps := indexedSnapshots{fileSnaps}
	s.logs = logs

	if cfg.RaftTLS != nil {
		s.trans, s.stream, err = newTLSTransport(cfg.RaftAddr, cfg.RaftAdvertise, *cfg.RaftTLS, rc.Logger)
	} else {
		s.trans, err = newTransport(cfg.RaftAddr, cfg.RaftAdvertise, rc.Logger)
	}
	if err != nil {
		return nil, err
	}
	s.raftAddr = string(s.trans.LocalAddr())

	existing, err := raft.HasExistingState(logs, s.bolt, snaps)
	if err != nil {
		return nil, fmt.Errorf("store: inspect raft state: %w", err)
	}
	s.raft, err = raft.NewRaft(rc, s.fsm, logs, s.bolt, snaps, s.trans)
	if err != nil {
		return nil, fmt.Errorf("store: start raft: %w", err)
	}
	// NewRaft has restored the latest snapshot; the log after it is applied
	// only once a leader says it is committed.
	s.openIndex = s.raft.LastIndex()
	if cfg.Bootstrap && !existing {
		s.bootstrapped = true
		f := s.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
			ID: rc.LocalID, Address: raft.ServerAddress(s.raftAddr), Suffrage: raft.Voter,
		}}})
		if err := f.Error(); err != nil {
			return nil, fmt.Errorf("store: bootstrap: %w", err)
		}
	}

	if cfg.Registerer != nil {
		s.metrics, err = newMetrics(s, cfg.Registerer)
		if err != nil {
			return nil, err
		}
	}

	obs := make(chan raft.Observation, 64)
	s.observer = raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		// Called on raft's goroutines: heartbeats are only noted.
		switch d := o.Data.(type) {
		case raft.LeaderObservation:
			s.peers.leaderChanged(string(d.LeaderID), s.cfg.NodeID, s.raft.LastContact())
			return true
		case raft.FailedHeartbeatObservation:
			s.peers.failed(string(d.PeerID), d.LastContact, time.Now())
		case raft.ResumedHeartbeatObservation:
			s.peers.resumed(string(d.PeerID))
		}
		return false
	})
	s.raft.RegisterObserver(s.observer)
	s.wg.Add(2)
	go s.watchLeader(obs)
	go s.leaderDuties()

	ok = true
	s.log.Info("store started", "raft", s.raftAddr, "existing_state", existing,
		"bootstrapped", cfg.Bootstrap && !existing, "log_index", s.openIndex, "restored_index", s.fsm.index.Load())
	return s, nil
}

// Bootstrapped reports whether this start bootstrapped a new cluster
// (Bootstrap set and no raft state in DataDir).
func (s *Store) Bootstrapped() bool { return s.bootstrapped }

// newTransport listens on addr and advertises advertise or, if that is
// empty, the address it got (so that port 0 works).
func newTransport(addr, advertise string, logger hclog.Logger) (*raft.NetworkTransport, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("store: raft address %q: %w", addr, err)
	}
	var adv net.Addr
	if advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			return nil, fmt.Errorf("store: raft advertise address %q: %w", advertise, err)
		}
		adv = a
	}
	t, err := raft.NewTCPTransportWithLogger(addr, adv, transportPool, transportTimeout, logger)
	if err != nil {
		return nil, fmt.Errorf("store: raft transport on %s: %w", addr, err)
	}
	return t, nil
}

// RaftAddr returns the address raft listens on and advertises (the real
// port when Config.RaftAddr asked for port 0).
func (s *Store) RaftAddr() string { return s.raftAddr }

// Close leaves gracefully: if this node leads and there is another voter,
// it hands leadership over first, so the cluster does not wait for an
// election timeout. Then it stops raft and closes files. Idempotent.
func (s *Store) Close() error { return s.shutdown(true) }

// Kill stops abruptly, as close to a crash as a process can get while it
// keeps running: the transport closes first (nothing more is sent), no
// leadership transfer, then raft stops and files close. For tests.
func (s *Store) Kill() error { return s.shutdown(false) }

func (s *Store) shutdown(graceful bool) error {
	s.closeOnce.Do(func() {
		s.cancel()
		var errs []error
		if graceful {
			s.transferLeadership()
		} else {
			errs = append(errs, s.trans.Close())
		}
		errs = append(errs, s.raft.Shutdown().Error())
		s.raft.DeregisterObserver(s.observer)
		s.wg.Wait()
		if graceful {
			errs = append(errs, s.trans.Close())
		}
		errs = append(errs, s.bolt.Close())
		if s.metrics != nil {
			s.metrics.unregister()
		}
		close(s.done)
		s.closeErr = errors.Join(errs...)
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("store: close: %w", s.closeErr)
		}
	})
	return s.closeErr
}

// transferLeadership hands leadership to another voter if this node leads
// and one exists. Failure is logged, not returned: the shutdown proceeds
// and the others elect a leader after the election timeout.
func (s *Store) transferLeadership() {
	if s.raft.State() != raft.Leader {
		return
	}
	cf := s.raft.GetConfiguration()
	if cf.Error() != nil {
		return
	}
	others := false
	for _, srv := range cf.Configuration().Servers {
		if srv.Suffrage == raft.Voter && srv.ID != raft.ServerID(s.cfg.NodeID) {
			others = true
		}
	}
	if !others {
		return
	}
	if err := s.raft.LeadershipTransfer().Error(); err != nil {
		s.log.Warn("leadership transfer on close failed", "err", err)
	}
}
