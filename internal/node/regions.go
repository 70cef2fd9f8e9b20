package node

import (
	"github.com/aibos/kernel/internal/region"
	"github.com/aibos/kernel/internal/store"
)

// startRegions starts the multi-region runtime. Calls to other regions go
// over the node TLS of the deployment (the regions' nodes have
// certificates of one CA), with the region token as their credential.
func (n *Node) startRegions(st *store.Store, sec Security) (*region.Manager, error) {
	rc := n.cfg.Regions
	eps := rc.Endpoints
	if len(eps) == 0 {
		eps = []string{n.URL()}
	}
	// The first primary needs no token until it calls other regions
	// (after another region was promoted): give every node one made at
	// the primary (each region's root token is its own).
	token := rc.Token
	return region.New(region.Config{
		Store: st, Self: n.cfg.Region, Domain: rc.Domain, Endpoints: eps, Standby: rc.Standby,
		Join: rc.Join, Token: token, TLS: sec.peerTLS(), Via: rc.Via,
		Lease: rc.Lease, Heartbeat: rc.Heartbeat, FailoverAfter: rc.FailoverAfter,
		Logger: n.log, Now: n.cfg.Now,
	})
}
