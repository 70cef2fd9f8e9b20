package client

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/aibos/kernel/api"
)

// CreateToken asks for a new operator token; the answer holds its secret,
// shown this once. ttl zero: it does not expire.
func (c *Client) CreateToken(ctx context.Context, principal string, roles, tenants []string, ttl time.Duration) (api.TokenCreated, error) {
	var out api.TokenCreated
	err := c.doJSON(ctx, http.MethodPost, "/v1/tokens", api.TokenRequest{Principal: principal, Roles: roles, Tenants: tenants, TTL: api.Duration(ttl)}, &out)
	return out, err
}

// Tokens lists the operator tokens (never their secrets).
func (c *Client) Tokens(ctx context.Context) ([]api.Token, error) {
	var out api.TokenList
	err := c.doJSON(ctx, http.MethodGet, "/v1/tokens", nil, &out)
	return out.Tokens, err
}

// RevokeToken revokes the token with accessor.
func (c *Client) RevokeToken(ctx context.Context, accessor string) (api.Token, error) {
	var out api.Token
	err := c.doJSON(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(accessor), nil, &out)
	return out, err
}

// WhoAmI is the principal the client's token stands for.
func (c *Client) WhoAmI(ctx context.Context) (api.WhoAmI, error) {
	var out api.WhoAmI
	err := c.doJSON(ctx, http.MethodGet, "/v1/whoami", nil, &out)
	return out, err
}

// PublishSystem replaces the system bundle that authorizes the kernel's
// own API (admin only). It is compiled and its tests run first; a broken
// one is refused like any bundle.
func (c *Client) PublishSystem(ctx context.Context, files []api.File, message string) (api.PublishResponse, error) {
	body, ctype, q, err := bundleBody(files)
	if err != nil {
		return api.PublishResponse{}, err
	}
	if message != "" {
		q.Set("message", message)
	}
	var resp api.PublishResponse
	err = c.do(ctx, http.MethodPut, "/v1/system-policy?"+q.Encode(), ctype, body, &resp)
	return resp, err
}

// SystemPolicy is the system bundle in force (version 0: the embedded
// default).
func (c *Client) SystemPolicy(ctx context.Context) (api.BundleVersion, error) {
	var out api.BundleVersion
	err := c.doJSON(ctx, http.MethodGet, "/v1/system-policy", nil, &out)
	return out, err
}
