package node

import (
	"fmt"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aibos/kernel/internal/audit"
	"github.com/aibos/kernel/internal/gateway"
	"github.com/aibos/kernel/internal/gateway/limits"
	"github.com/aibos/kernel/internal/pdp"
	"github.com/aibos/kernel/internal/store"
)

// openAudit opens the node's audit log in DataDir/audit and exports its
// counters.
func openAudit(cfg Config, reg prometheus.Registerer) (*audit.Log, error) {
	l, err := audit.Open(audit.Config{
		Dir:           filepath.Join(cfg.DataDir, "audit"),
		Node:          cfg.NodeID,
		Redact:        cfg.AuditRedact,
		Retention:     cfg.AuditRetention,
		MaxBytes:      cfg.AuditMaxBytes,
		FsyncInterval: cfg.AuditFsyncInterval,
		Now:           cfg.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("node: audit log: %w", err)
	}
	counter := func(name, help string, v func(audit.Stats) float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return v(l.Stats()) }))
	}
	counter("aibos_audit_records_total", "Records written to this node's audit log.",
		func(st audit.Stats) float64 { return float64(st.Written) })
	counter("aibos_audit_fsyncs_total", "Group commits (fsyncs) of the audit log.",
		func(st audit.Stats) float64 { return float64(st.Fsyncs) })
	counter("aibos_audit_backpressure_total", "Appends that waited because the audit log's queue was full.",
		func(st audit.Stats) float64 { return float64(st.Blocked) })
	counter("aibos_audit_backpressure_seconds_total", "Time appends spent waiting for room in the audit log's queue.",
		func(st audit.Stats) float64 { return float64(st.BlockedNanos) / 1e9 })
	counter("aibos_audit_pruned_segments_total", "Audit segments of decisions only deleted by the size bound.",
		func(st audit.Stats) float64 { return float64(st.Pruned) })
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "aibos_audit_over_bound", Help: "1 when the audit log is over its size bound with no segment of decisions only left to delete."},
		func() float64 {
			if l.Stats().OverBound {
				return 1
			}
			return 0
		}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "aibos_audit_queue_length", Help: "Records queued for the audit log's writer."},
		func() float64 { return float64(l.Stats().QueueLen) }))
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
	if m := n.mcp.Load(); m != nil {
		switch c.Kind {
		case store.ChangeCatalog, store.ChangeRestore:
			m.CatalogChanged()
		}
		if c.Kind == store.ChangeKill || c.Kind == store.ChangeRestore {
			m.KillsChanged()
		}
	}
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

// newGateway builds the agent gateway from its dependencies: the store,
// the decision point (it decides every invocation; the gateway records
// the decision with the invocation), the audit log, the counters and the
// MCP manager. Without an audit log or counters the node runs without a
// gateway (nil).
func (n *Node) newGateway(st *store.Store, point *pdp.Point, reg prometheus.Registerer) (*gateway.Gateway, error) {
	if n.Audit == nil || n.Counter == nil {
		return nil, nil
	}
	gc := n.cfg.Gateway
	gc.Store, gc.Decide, gc.Audit, gc.Counter = st, point.DecideNoAudit, n.Audit, n.Counter
	gc.Node, gc.Now, gc.Logger, gc.Registerer = n.cfg.NodeID, n.cfg.Now, n.log, reg
	if n.MCP != nil {
		gc.MCP = n.MCP
	}
	return gateway.New(gc)
}
