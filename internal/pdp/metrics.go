package pdp

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aibos/kernel/api"
)

// metrics are the decision point's: decisions by result, their latency,
// and the bundle version decisions are made with.
type metrics struct {
	decisions *prometheus.CounterVec
	latency   prometheus.Histogram
	// The per-decision counters, resolved once so the hot path does no
	// label lookup.
	allow, deny, approval prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, h *Holder) (*metrics, error) {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aibos_decisions_total", Help: "Decisions made by this node, by result.",
		}, []string{"decision"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "aibos_decision_duration_seconds", Help: "Time to make one decision (engine and enrichment, without HTTP).",
			Buckets: []float64{1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2},
		}),
	}
	m.allow = m.decisions.WithLabelValues(string(api.Allow))
	m.deny = m.decisions.WithLabelValues(string(api.Deny))
	m.approval = m.decisions.WithLabelValues(string(api.RequireApproval))
	if reg != nil {
		version := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "aibos_bundle_version", Help: "The bundle version this node decides with.",
		}, func() float64 { return float64(h.Version()) })
		for _, c := range []prometheus.Collector{m.decisions, m.latency, version} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *metrics) observe(d api.Effect, took time.Duration) {
	switch d {
	case api.Allow:
		m.allow.Inc()
	case api.RequireApproval:
		m.approval.Inc()
	default:
		m.deny.Inc()
	}
	m.latency.Observe(took.Seconds())
}
