package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/aibos/kernel/api"
)

// The region registry, the tenant directory and promotion: the calls of
// `aibos region` and `aibos tenant`. They name no tenant, so no region
// redirects them: each answers for the region the client's URLs point at.

// GlobalWrite is the answer of a global write: the answering region's
// revision and the global version the write became.
type GlobalWrite struct {
	Revision      uint64 `json:"revision"`
	GlobalVersion uint64 `json:"global_version"`
}

// Promotion says how a promotion went (POST /v1/regions/{id}/promote).
type Promotion struct {
	Epoch         uint64 `json:"epoch"`
	Primary       string `json:"primary"`
	GlobalVersion uint64 `json:"global_version"`
	// Votes are the regions that promised the epoch, Refused those that
	// did not, each with why.
	Votes   []string `json:"votes"`
	Refused []string `json:"refused,omitempty"`
}

// TenantDirectory is the answer of GET /v1/tenants.
type TenantDirectory struct {
	Tenants       []api.Tenant `json:"tenants"`
	GlobalVersion uint64       `json:"global_version"`
}

// Regions is the region registry as the answering region has applied it.
func (c *Client) Regions(ctx context.Context) (api.Regions, error) {
	var out api.Regions
	err := c.doJSON(WithTenant(ctx, ""), http.MethodGet, "/v1/regions", nil, &out)
	return out, err
}

// PutRegion adds a region to the registry or changes one (at the primary).
func (c *Client) PutRegion(ctx context.Context, r api.Region) (GlobalWrite, error) {
	var out GlobalWrite
	err := c.doJSON(WithTenant(ctx, ""), http.MethodPost, "/v1/regions", r, &out)
	return out, err
}

// PutTenant adds a tenant to the directory with its home region (at the
// primary).
func (c *Client) PutTenant(ctx context.Context, id, home string) (GlobalWrite, error) {
	var out GlobalWrite
	err := c.doJSON(WithTenant(ctx, ""), http.MethodPut, "/v1/tenants/"+url.PathEscape(id), api.Tenant{Home: home}, &out)
	return out, err
}

// Tenants is the tenant directory as the answering region has applied it.
func (c *Client) Tenants(ctx context.Context) (TenantDirectory, error) {
	var out TenantDirectory
	err := c.doJSON(WithTenant(ctx, ""), http.MethodGet, "/v1/tenants", nil, &out)
	return out, err
}

// Replication is how far the answering region follows the primary.
func (c *Client) Replication(ctx context.Context) (api.Replication, error) {
	var out api.Replication
	err := c.doJSON(WithTenant(ctx, ""), http.MethodGet, "/v1/replication", nil, &out)
	return out, err
}

// PromoteRegion makes region id the primary of a new epoch. The call must
// reach region id itself (the client's URLs are its endpoints): a region
// promotes itself, with the promises of a majority of regions.
func (c *Client) PromoteRegion(ctx context.Context, id string) (Promotion, error) {
	var out Promotion
	err := c.doJSON(WithTenant(ctx, ""), http.MethodPost, "/v1/regions/"+url.PathEscape(id)+"/promote", struct{}{}, &out)
	return out, err
}

// FailoverRegion declares region id lost (at the primary): its standby
// serves its tenants from then on.
func (c *Client) FailoverRegion(ctx context.Context, id string) (GlobalWrite, error) {
	var out GlobalWrite
	err := c.doJSON(WithTenant(ctx, ""), http.MethodPost, "/v1/regions/"+url.PathEscape(id)+"/failover", struct{}{}, &out)
	return out, err
}
