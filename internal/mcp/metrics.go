package mcp

import (
	"context"
	"errors"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus"
)

// maxToolSeries bounds the (orchestra, tool) pairs with their own series;
// later ones count under tool "other".
const maxToolSeries = 10000

// Metrics are the MCP gateway's Prometheus series. A nil *Metrics records
// nothing.
type Metrics struct {
	calls       *prometheus.CounterVec
	seconds     *prometheus.HistogramVec
	up          *prometheus.GaugeVec
	quarantined *prometheus.GaugeVec
	requests    *prometheus.CounterVec
	upstreamReq *prometheus.HistogramVec
	seen        map[[2]string]struct{}
	mu          chan struct{}
}

// NewMetrics registers the series with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aibos_mcp_tool_calls_total",
			Help: "Upstream tools/call by orchestra, tool and outcome (ok, tool_error, failed, cancelled)."}, []string{"orchestra", "tool", "outcome"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "aibos_mcp_tool_call_seconds",
			Help: "Upstream tools/call latency by orchestra and tool.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"orchestra", "tool"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "aibos_mcp_upstream_up",
			Help: "1 while this node has a session with the orchestra's MCP server."}, []string{"orchestra"}),
		quarantined: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "aibos_mcp_quarantined_tools",
			Help: "Tools of the orchestra whose definition changed since it was pinned."}, []string{"orchestra"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aibos_mcp_requests_total",
			Help: "Downstream MCP requests by method and decision (allow, deny, require_approval, pass)."}, []string{"method", "decision"}),
		upstreamReq: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "aibos_mcp_upstream_request_seconds",
			Help: "Upstream resources/read, prompts/get and completion/complete by orchestra, method and outcome (ok, failed).", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"orchestra", "method", "outcome"}),
		seen: make(map[[2]string]struct{}),
		mu:   make(chan struct{}, 1),
	}
	for _, c := range []prometheus.Collector{m.calls, m.seconds, m.up, m.quarantined, m.requests, m.upstreamReq} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) label(orchestra, tool string) string {
	m.mu <- struct{}{}
	defer func() { <-m.mu }()
	k := [2]string{orchestra, tool}
	if _, ok := m.seen[k]; ok {
		return tool
	}
	if len(m.seen) >= maxToolSeries {
		return "other"
	}
	m.seen[k] = struct{}{}
	return tool
}

func (m *Metrics) observeCall(orchestra, tool string, d time.Duration, res *mcp.CallToolResult, err error) {
	if m == nil {
		return
	}
	tool = m.label(orchestra, tool)
	outcome := "ok"
	switch {
	case err != nil && errors.Is(err, context.Canceled):
		outcome = "cancelled"
	case err != nil:
		outcome = "failed"
	case res.IsError:
		outcome = "tool_error"
	}
	m.calls.WithLabelValues(orchestra, tool, outcome).Inc()
	m.seconds.WithLabelValues(orchestra, tool).Observe(d.Seconds())
}

func (m *Metrics) setUp(orchestra string, up bool) {
	if m == nil {
		return
	}
	v := 0.0
	if up {
		v = 1
	}
	m.up.WithLabelValues(orchestra).Set(v)
}

func (m *Metrics) setQuarantined(orchestra string, n int) {
	if m == nil {
		return
	}
	m.quarantined.WithLabelValues(orchestra).Set(float64(n))
}

func (m *Metrics) request(method, decision string) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(method, decision).Inc()
}

func (m *Metrics) observeRequest(orchestra, method string, d time.Duration, err error) {
	if m == nil {
		return
	}
	outcome := "ok"
	if err != nil {
		outcome = "failed"
	}
	m.upstreamReq.WithLabelValues(orchestra, method, outcome).Observe(d.Seconds())
}
