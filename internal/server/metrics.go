package server

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's own; the decision metrics are the decision
// point's (internal/pdp).
type metrics struct {
	forwardErrors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		forwardErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "aibos_forward_errors_total", Help: "Writes this node could not forward to the leader.",
		}),
	}
	if reg != nil {
		if err := reg.Register(m.forwardErrors); err != nil {
			return nil, err
		}
	}
	return m, nil
}
