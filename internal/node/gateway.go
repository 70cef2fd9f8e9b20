package node

import (
	"fmt"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aibos/kernel/internal/audit"
	"github.com/aibos/kernel/internal/gateway/limits"
	"github.com/aibos/kernel/internal/store"
)

// openAudit opens the node's audit log in DataDir/audit and exports its
// counters.
func openAudit(cfg Config, reg prometheus.Registerer) (*audit.Log, error) {
	l, err := audit.Open(audit.Config{
		Dir:       filepath.Join(cfg.DataDir, "audit"),
		Node:      cfg.NodeID,
		Redact:    cfg.AuditRedact,
		Retention: cfg.AuditRetention,
		Now:       cfg.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("node: audit log: %w", err)
	}
	for name, help := range map[string]string{
		"aibos_audit_records_total":          "Records written to this node's audit log.",
		"aibos_audit_fsyncs_total":           "Group commits (fsyncs) of the audit log.",
		"aibos_audit_backpressure_total":     "Appends that waited because the audit log's queue was full.",
		"aibos_audit_backpressure_seconds":   "Time appends spent waiting for room in the audit log's queue.",
		"aibos_audit_queue_length_at_scrape": "Records queued for the audit log's writer.",
	} {
		name := name
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 {
			st := l.Stats()
			switch name {
			case "aibos_audit_records_total":
				return float64(st.Written)
			case "aibos_audit_fsyncs_total":
				return float64(st.Fsyncs)
			case "aibos_audit_backpressure_total":
				return float64(st.Blocked)
			case "aibos_audit_backpressure_seconds":
				return float64(st.BlockedNanos) / 1e9
			}
			return float64(st.QueueLen)
		}))
	}
	return l, nil
}

// openCounter opens the gateway's counter store: Redis when an address is
// configured (counters shared by every node of the cluster), else a local
// store in DataDir, exact for this node and kept across restarts.
func openCounter(cfg Config) (limits.Counter, error) {
	if cfg.RedisAddr != "" {
		limits.SetRedisLogger(cfg.Logger)
		c, err := limits.NewRedis(limits.RedisOptions{Addr: cfg.RedisAddr, Password: cfg.RedisPassword})
		if err != nil {
			return nil, fmt.Errorf("node: redis at %s: %w", cfg.RedisAddr, err)
		}
		return c, nil
	}
	c, err := limits.NewLocal(filepath.Join(cfg.DataDir, "limits.json"))
	if err != nil {
		return nil, fmt.Errorf("node: local counters: %w", err)
	}
	return c, nil
}

// gatewayHook passes the store's changes that the gateway follows.
func (n *Node) gatewayHook(c store.Change) {
	gw := n.gw.Load()
	if gw == nil {
		return // not built yet: it reads the state when it is
	}
	switch c.Kind {
	case store.ChangeCatalog:
		gw.CatalogChanged()
	case store.ChangeKill:
		gw.KillsChanged()
	case store.ChangeRestore:
		gw.CatalogChanged()
		gw.KillsChanged()
	}
}

// closeGateway closes the audit log and the counters, after the HTTP server
// has drained: nothing is recorded afterwards.
func (n *Node) closeGateway() {
	if n.Audit != nil {
		if err := n.Audit.Close(); err != nil {
			n.log.Error("audit log close", "err", err)
		}
	}
	if n.Counter != nil {
		if err := n.Counter.Close(); err != nil {
			n.log.Error("counter store close", "err", err)
		}
	}
}
