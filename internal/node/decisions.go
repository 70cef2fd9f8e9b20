package node

import (
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aibos/kernel/internal/decisionlog"
)

// openDecisionLog opens the node's decision log in DataDir/decisions and
// exports its counters.
func openDecisionLog(cfg Config, reg prometheus.Registerer) (*decisionlog.Log, error) {
	l, err := decisionlog.Open(decisionlog.Config{
		Dir:        filepath.Join(cfg.DataDir, "decisions"),
		SampleRate: min(cfg.DecisionLogSample, 1),
		Now:        cfg.Now,
	})
	if err != nil {
		return nil, err
	}
	for name, help := range map[string]string{
		"aibos_decision_log_written_total": "Decisions written to this node's decision log.",
		"aibos_decision_log_dropped_total": "Sampled decisions not logged because the log's queue was full.",
	} {
		dropped := name == "aibos_decision_log_dropped_total"
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 {
			st := l.Stats()
			if dropped {
				return float64(st.Dropped)
			}
			return float64(st.Written)
		}))
	}
	return l, nil
}

// closeDecisions writes out and closes the decision log, after the HTTP
// server has drained: no decision is recorded afterwards.
func (n *Node) closeDecisions() {
	if n.Decisions == nil {
		return
	}
	if err := n.Decisions.Close(); err != nil {
		n.log.Error("decision log close", "err", err)
	}
}
