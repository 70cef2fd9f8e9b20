package region

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// RegisterMetrics registers the region's replication gauges: computed
// when scraped from what GET /v1/replication answers.
func (m *Manager) RegisterMetrics(reg prometheus.Registerer) error {
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: prometheus.Labels{"region": m.cfg.Self}}, f)
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	for _, c := range []prometheus.Collector{
		gauge("aibos_region_global_version", "The global version this region has applied.", func() float64 { return float64(m.Status().GlobalVersion) }),
		gauge("aibos_region_epoch", "The newest epoch this region has begun applying.", func() float64 { return float64(m.Status().Epoch) }),
		gauge("aibos_region_primary", "1 if this region is the primary.", func() float64 { return b(m.Status().Role == "primary") }),
		gauge("aibos_region_lag_versions", "Global versions the primary has that this region has not applied (secondary, on its leader).", func() float64 { return float64(m.Status().LagVersions) }),
		gauge("aibos_region_connected", "1 while this region's leader follows the primary's stream (1 on the primary).", func() float64 { return b(m.Status().Connected) }),
		gauge("aibos_region_last_contact_seconds", "Seconds since the primary was last heard from (secondary, on its leader; 0 on the primary).", func() float64 {
			if lc := m.Status().LastContact; !lc.IsZero() {
				return time.Since(lc).Seconds()
			}
			return 0
		}),
		gauge("aibos_region_lease_remaining_seconds", "Seconds the primary may still write global state without hearing from a majority (primary's leader; 0: no lease).", func() float64 {
			if lu := m.Status().LeaseUntil; !lu.IsZero() {
				return max(0, min(time.Until(lu).Seconds(), 1e9))
			}
			return 0
		}),
		gauge("aibos_region_quarantined_entries", "Entries this region wrote as primary after a newer epoch forked from it, kept for review.", func() float64 { return float64(m.Status().Quarantined) }),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
