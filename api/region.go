package api

import (
	"encoding/json"
	"time"
)

// Multi-region wire types. Each region is its own cluster; the region
// registry, the tenant directory and the epoch are global state, authored
// in the primary region and replicated to every other one.

// Region roles.
const (
	RolePrimary   = "primary"
	RoleSecondary = "secondary"
)

// Headers of multi-region routing.
const (
	// HeaderHomeRegion names, on a 307 answer, the region the request's
	// tenant lives in; the Location header is that region's endpoint.
	HeaderHomeRegion = "Aibos-Home-Region"
	// HeaderTenant names the tenant a request is for, when its body
	// does not say (reads, decisions, deletes).
	HeaderTenant = "Aibos-Tenant"
	// HeaderGlobalVersion is, on an answer, the global version the
	// answering region has applied.
	HeaderGlobalVersion = "Aibos-Global-Version"
)

// Region is one entry of the region registry.
type Region struct {
	ID string `json:"id"`
	// Domain is the residency domain (us, eu, apac, ...). Tenant data of
	// a tenant whose home region is in domain D never leaves D.
	Domain string `json:"domain"`
	// Endpoints are base URLs of the region's HTTP API (its nodes, or a
	// load balancer), in the order they are tried.
	Endpoints []string `json:"endpoints"`
	// Standby is the region, in the same domain, that the region's
	// tenant data is streamed to and that serves its tenants when it is
	// lost ("": none).
	Standby string `json:"standby,omitempty"`
	// Role is primary or secondary (derived from the epoch's primary).
	Role string `json:"role,omitempty"`
	// FailedOver is set when the region was declared lost and its
	// standby serves its tenants.
	FailedOver bool `json:"failed_over,omitempty"`
}

// Tenant is one entry of the tenant directory.
type Tenant struct {
	ID string `json:"id"`
	// Home is the id of the tenant's home region.
	Home string `json:"home"`
	// Domain is the home region's residency domain (derived).
	Domain string `json:"domain,omitempty"`
}

// Regions is the answer of GET /v1/regions.
type Regions struct {
	// Self is the region that answered.
	Self    string   `json:"self"`
	Primary string   `json:"primary"`
	Epoch   uint64   `json:"epoch"`
	Regions []Region `json:"regions"`
	Tenants []Tenant `json:"tenants,omitempty"`
	// GlobalVersion is the global version the answering region applied.
	GlobalVersion uint64 `json:"global_version"`
}

// GlobalEntry is one entry of the global stream: the primary's global
// writes, numbered by GlobalVersion (consecutive from 1) and stamped with
// the epoch of the primary that wrote them. Type is one of an allow-list
// of record types; tenant data cannot be encoded into an entry.
type GlobalEntry struct {
	GlobalVersion uint64          `json:"gv"`
	Epoch         uint64          `json:"epoch"`
	Type          string          `json:"type"`
	Payload       json.RawMessage `json:"payload"`
}

// Replication is the answer of GET /v1/replication: how far this region
// follows the primary (and, for a standby, its home regions' tenant data).
type Replication struct {
	Region  string `json:"region"`
	Domain  string `json:"domain"`
	Role    string `json:"role"`
	Primary string `json:"primary"`
	Epoch   uint64 `json:"epoch"`
	// GlobalVersion is the global version applied here; PrimaryVersion
	// the primary's, as last heard (0 on the primary: see GlobalVersion).
	GlobalVersion  uint64 `json:"global_version"`
	PrimaryVersion uint64 `json:"primary_version,omitempty"`
	LagVersions    uint64 `json:"lag_versions"`
	// LastContact is when the primary was last heard from (secondary),
	// LeaseUntil until when the primary may accept global writes
	// (primary; zero: it holds no lease and refuses them).
	LastContact time.Time `json:"last_contact,omitzero"`
	LeaseUntil  time.Time `json:"lease_until,omitzero"`
	Connected   bool      `json:"connected"`
	// Quarantined counts the entries this region wrote as primary after
	// a newer epoch forked from it: kept for review, never applied.
	Quarantined int `json:"quarantined,omitempty"`
	// QuarantinedEntries are those entries, with ?quarantine=true.
	QuarantinedEntries []GlobalEntry `json:"quarantined_entries,omitempty"`
	// Standby is the tenant-data replication this region receives as
	// the standby of other regions of its domain.
	Standby []StandbyStatus `json:"standby,omitempty"`
	Error   string          `json:"error,omitempty"`
}

// StandbyStatus is the tenant-data stream from one home region to its
// standby.
type StandbyStatus struct {
	Source string `json:"source"`
	// Revision is the source region's revision applied here.
	Revision    uint64    `json:"revision"`
	LastContact time.Time `json:"last_contact,omitzero"`
	Connected   bool      `json:"connected"`
	Serving     bool      `json:"serving"`
}
