package gateway

import (
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aibos/kernel/api"
)

// maxSeries bounds the distinct (agent, action) pairs that get their own
// metric series and stats; later pairs are counted under "other". A fleet
// of 10,000 agents would otherwise make /metrics unusable.
const maxSeries = 10_000

type metrics struct {
	invocations    *prometheus.CounterVec   // agent, action, outcome
	latency        *prometheus.HistogramVec // action
	budgetUsed     *prometheus.CounterVec   // agent, action
	approvals      *prometheus.CounterVec   // event
	rejected       *prometheus.CounterVec   // code: refused before an invocation exists
	budgetWarnings prometheus.Counter
	replays        prometheus.Counter
	killed         prometheus.Counter
	inFlight       prometheus.Gauge

	mu    sync.Mutex
	pairs map[[2]string]bool
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		invocations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aibos_gateway_invocations_total",
			Help: "Invocations by agent, action and outcome (completed, denied, pending_approval, failed, cancelled, or the refusal's code)."}, []string{"agent", "action", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "aibos_gateway_invocation_seconds",
			Help:    "Time from receiving an invocation to answering it, backend included.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"action"}),
		budgetUsed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aibos_gateway_budget_used_total",
			Help: "Cost charged to budgets by completed invocations."}, []string{"agent", "action"}),
		approvals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aibos_gateway_approvals_total",
			Help: "Approvals requested, redeemed and voided at redemption on this node."}, []string{"event"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aibos_gateway_rejected_total",
			Help: "Calls refused before they became invocations (bad credential, unknown action, undeclared capability, invalid input)."}, []string{"code"}),
		budgetWarnings: prometheus.NewCounter(prometheus.CounterOpts{Name: "aibos_gateway_budget_warnings_total", Help: "Budget soft thresholds crossed."}),
		replays:        prometheus.NewCounter(prometheus.CounterOpts{Name: "aibos_gateway_idempotent_replays_total", Help: "Calls answered from an idempotency key without running again."}),
		killed:         prometheus.NewCounter(prometheus.CounterOpts{Name: "aibos_gateway_cancelled_by_kill_total", Help: "Running invocations cancelled by a kill switch."}),
		inFlight:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "aibos_gateway_in_flight", Help: "Invocations running on backends."}),
		pairs:          make(map[[2]string]bool),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.invocations, m.latency, m.budgetUsed, m.approvals, m.rejected, m.budgetWarnings, m.replays, m.killed, m.inFlight} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// pair is the (agent, action) label pair, or ("other", "other") once
// maxSeries pairs exist.
func (m *metrics) pair(agent, action string) []string {
	k := [2]string{agent, action}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.pairs[k] {
		if len(m.pairs) >= maxSeries {
			return []string{"other", "other"}
		}
		m.pairs[k] = true
	}
	return []string{agent, action}
}

// observe counts a finished invocation in the metrics and the stats.
func (g *Gateway) observe(in *invocation, code string) {
	outcome := in.resp.Status
	if code != "" && outcome == api.InvocationDenied {
		outcome = code
	}
	d := time.Since(in.start)
	p := g.metrics.pair(in.agent.ID, in.entry.def.Name)
	g.metrics.invocations.WithLabelValues(p[0], p[1], outcome).Inc()
	g.metrics.latency.WithLabelValues(in.entry.def.Name).Observe(d.Seconds())
	g.stats.observe(in.agent.ID, in.entry.def.Name, in.resp.Status, in.resp.Decision, d)
}

// statsTable holds per agent and action counters for GET
// /v1/agents/{id}/stats, with the last latencies for percentiles.
type statsTable struct {
	mu    sync.Mutex
	n     int
	items map[string]map[string]*actionStats
}

// latencyWindow is how many recent latencies the percentiles are over.
const latencyWindow = 1024

type actionStats struct {
	s    api.ActionStats
	lat  [latencyWindow]time.Duration
	next int
	full bool
}

func newStatsTable() *statsTable {
	return &statsTable{items: make(map[string]map[string]*actionStats)}
}

func (t *statsTable) get(agent, action string) *actionStats {
	byAction := t.items[agent]
	if byAction == nil {
		if t.n >= maxSeries {
			return nil
		}
		byAction = make(map[string]*actionStats)
		t.items[agent] = byAction
	}
	s := byAction[action]
	if s == nil {
		if t.n >= maxSeries {
			return nil
		}
		s = &actionStats{}
		byAction[action] = s
		t.n++
	}
	return s
}

func (t *statsTable) observe(agent, action, status string, dec api.Effect, d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.get(agent, action)
	if s == nil {
		return
	}
	s.s.Invocations++
	switch {
	case status == api.InvocationPendingApproval:
		s.s.Approvals++
	case status == api.InvocationDenied:
		s.s.Denied++
	case status == api.InvocationCancelled:
		s.s.Cancelled++
		s.s.Allowed++
	case status == api.InvocationFailed:
		s.s.Errors++
		s.s.Allowed++
	case dec == api.Allow || dec == api.RequireApproval:
		s.s.Allowed++
	}
	s.lat[s.next] = d
	s.next++
	if s.next == latencyWindow {
		s.next, s.full = 0, true
	}
}

func (t *statsTable) budget(agent, action string, cost float64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.get(agent, action); s != nil {
		s.s.BudgetUsed += cost
	}
}

// Stats is this node's counters for one agent.
func (g *Gateway) Stats(agent string) api.AgentStats {
	t := g.stats
	t.mu.Lock()
	defer t.mu.Unlock()
	out := api.AgentStats{Agent: agent, Node: g.cfg.Node, Actions: map[string]api.ActionStats{}}
	for action, s := range t.items[agent] {
		st := s.s
		n := s.next
		if s.full {
			n = latencyWindow
		}
		if n > 0 {
			lat := slices.Clone(s.lat[:n])
			slices.Sort(lat)
			st.LatencyP50 = float64(lat[n*50/100]) / float64(time.Millisecond)
			st.LatencyP99 = float64(lat[min(n-1, n*99/100)]) / float64(time.Millisecond)
		}
		out.Actions[action] = st
	}
	return out
}
