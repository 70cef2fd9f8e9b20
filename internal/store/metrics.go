package store

import (
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are read from the store when scraped (gauges) or observed on the
// write path (the commit latency histogram).
type metrics struct {
	reg        prometheus.Registerer
	collectors []prometheus.Collector
	commit     *prometheus.HistogramVec
}

func newMetrics(s *Store, reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{reg: reg}
	for _, st := range []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown} {
		m.collectors = append(m.collectors, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "aibos_store_raft_state",
			Help:        "1 for the raft state this node is in, 0 for the others.",
			ConstLabels: prometheus.Labels{"state": st.String()},
		}, func() float64 {
			if s.raft.State() == st {
				return 1
			}
			return 0
		}))
	}
	m.collectors = append(m.collectors,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "aibos_store_applied_revision",
			Help: "Revision of the replicated state applied on this node.",
		}, func() float64 { return float64(s.AppliedRevision()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "aibos_store_bundle_version",
			Help: "Current bundle version on this node (0: none).",
		}, func() float64 {
			bv, _ := s.Current()
			return float64(bv.Version)
		}),
	)
	m.commit = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "aibos_store_commit_seconds",
		Help:    "Time from proposing a command on the leader to its being applied there, by command type.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14), // 0.5ms .. ~4s
	}, []string{"type"})
	m.collectors = append(m.collectors, m.commit)

	for i, c := range m.collectors {
		if err := reg.Register(c); err != nil {
			for _, done := range m.collectors[:i] {
				reg.Unregister(done)
			}
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("store: metrics already registered (one store per registry): %w", err)
			}
			return nil, fmt.Errorf("store: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) observeCommit(typ string, d time.Duration) {
	if m != nil {
		m.commit.WithLabelValues(typ).Observe(d.Seconds())
	}
}

func (m *metrics) unregister() {
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
}
