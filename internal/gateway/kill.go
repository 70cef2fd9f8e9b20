package gateway

import (
	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/store"
)

// KillsChanged reloads the active kill switches from the store and cancels
// every running invocation in their scope. The node calls it from the
// store's apply hook, so a kill switch takes effect on each node as soon
// as the node applies it; it does no I/O.
func (g *Gateway) KillsChanged() {
	g.killMu.Lock()
	ks := g.cfg.Store.ActiveKills()
	g.kills.Store(&ks)
	g.killMu.Unlock()
	if len(ks) == 0 {
		return
	}
	g.flightMu.Lock()
	var hit []*flight
	var by []api.KillSwitch
	for _, f := range g.flights {
		for i := range ks {
			if store.KillCovers(&ks[i], f.agent, f.tenant, f.action) {
				hit, by = append(hit, f), append(by, ks[i])
				break
			}
		}
	}
	g.flightMu.Unlock()
	for i, f := range hit {
		f.cancel(errKilled{by[i]})
		g.metrics.killed.Inc()
		g.log.Warn("invocation cancelled by kill switch", "invocation", f.id, "agent", f.agent, "action", f.action, "kill", by[i].ID)
	}
}

// killFor is the first active kill switch whose scope covers the agent and
// action; nil if none.
func (g *Gateway) killFor(a *api.Agent, action string) *api.KillSwitch {
	p := g.kills.Load()
	if p == nil {
		return nil
	}
	for i := range *p {
		if k := &(*p)[i]; store.KillCovers(k, a.ID, a.Tenant, action) {
			return k
		}
	}
	return nil
}
