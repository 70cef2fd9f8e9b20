package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/aibos/kernel/api"
)

// Codes of the errors the client itself gives when a region redirects a
// call (Error.Status is the redirect's).
const (
	// CodeRedirectRefused: a region sent the call to a Location that is
	// not an endpoint of any region in the registry; the call, and the
	// credentials, were not sent there.
	CodeRedirectRefused = "redirect_refused"
	// CodeTooManyRedirects: the call was still redirected after
	// MaxRegionHops redirects had been followed.
	CodeTooManyRedirects = "too_many_redirects"
)

// MaxRegionHops is how many region redirects one call follows. A tenant's
// home region answers for it, so one hop is the rule; more allow for a
// registry that changes while the call is on its way (a failover).
const MaxRegionHops = 3

type tenantKey struct{}

// WithTenant makes the calls made with ctx name tenant in the Aibos-Tenant
// header, in place of Options.Tenant.
func WithTenant(ctx context.Context, tenant string) context.Context {
	return context.WithValue(ctx, tenantKey{}, strings.TrimSpace(tenant))
}

func (c *Client) tenantOf(ctx context.Context) string {
	if t, ok := ctx.Value(tenantKey{}).(string); ok {
		return t
	}
	return c.tenant
}

// noRedirects keeps net/http from following redirects: the client decides
// itself which ones it follows (see follow).
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// follow returns where to send the call again when resp, the answer of
// the node at u, is a region redirect (307 or 308 with Aibos-Home-Region),
// or "" when resp is the call's answer. A redirect is followed only to an
// endpoint of a region in the registry, since the call is sent there with
// its body and credentials; hops is how many were already followed.
func (c *Client) follow(ctx context.Context, u string, resp *http.Response, data []byte, hops int) (string, error) {
	if resp.StatusCode != http.StatusTemporaryRedirect && resp.StatusCode != http.StatusPermanentRedirect {
		return "", nil
	}
	home := resp.Header.Get(api.HeaderHomeRegion)
	loc := resp.Header.Get("Location")
	if home == "" || loc == "" {
		// Not a region redirect: the caller gets it as an error answer.
		return "", nil
	}
	from, err := url.Parse(u)
	if err != nil {
		return "", err
	}
	to, err := from.Parse(loc)
	if err != nil {
		return "", &Error{Status: resp.StatusCode, Code: CodeRedirectRefused, Body: data,
			Message: fmt.Sprintf("client: %s redirected the call to home region %q at a Location that is not a URL (%q): %v", u, home, loc, err)}
	}
	if hops >= MaxRegionHops {
		return "", &Error{Status: resp.StatusCode, Code: CodeTooManyRedirects, Body: data,
			Message: fmt.Sprintf("client: the call was still redirected after %d region hops (last: %s to %s, home region %q); the regions disagree on the tenant's home: check the tenant directory (GET /v1/regions) of each region", MaxRegionHops, u, to, home)}
	}
	ok, err := c.regions.allows(ctx, c, origin(to))
	if err != nil {
		return "", fmt.Errorf("client: %s redirected the call to %s (home region %q), but the region registry to check it against could not be read: %w", u, to, home, err)
	}
	if !ok {
		return "", &Error{Status: resp.StatusCode, Code: CodeRedirectRefused, Body: data,
			Message: fmt.Sprintf("client: %s redirected the call to %s (home region %q), which is not an endpoint of any region in the registry (GET /v1/regions); the call and its credentials were not sent there: check the registry's endpoints or give the client that region's URLs", u, to, home)}
	}
	return to.String(), nil
}

// origin is scheme://host:port of u, lowercased and with the scheme's
// default port made explicit, so that equal origins compare equal.
func origin(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if port == "" {
		switch scheme {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// registry caches the origins of the endpoints of the region registry.
// It is read lazily, at the first redirect, and again when a redirect
// names an origin it does not hold (a region added since).
type registry struct {
	mu sync.Mutex
	// origins maps an endpoint's origin to its region's id; nil until
	// the registry was read. Guarded by mu.
	origins map[string]string
	// gen counts the reads of the registry, so that of calls that all
	// miss at once only one reads it again. Guarded by mu.
	gen uint64
	// fetching serializes reads of the registry; taken before mu.
	fetching sync.Mutex
}

// allows reports whether o is the origin of an endpoint of a region in the
// registry, reading the registry when it was not read yet or does not
// hold o.
func (r *registry) allows(ctx context.Context, c *Client, o string) (bool, error) {
	r.mu.Lock()
	_, ok := r.origins[o]
	gen := r.gen
	r.mu.Unlock()
	if ok {
		return true, nil
	}
	r.fetching.Lock()
	defer r.fetching.Unlock()
	r.mu.Lock()
	_, ok = r.origins[o]
	again := r.gen != gen
	r.mu.Unlock()
	if ok || again {
		// Another call read the registry since this one looked: reading
		// it again would not tell more.
		return ok, nil
	}
	origins, err := c.fetchRegions(ctx)
	if err != nil {
		return false, err
	}
	r.mu.Lock()
	r.origins = origins
	r.gen++
	_, ok = r.origins[o]
	r.mu.Unlock()
	return ok, nil
}

// fetchRegions reads the region registry from the client's node URLs, the
// one in use first, and returns its endpoints' origins. Only the nodes the
// client was given are asked: they are the ones it trusts.
func (c *Client) fetchRegions(ctx context.Context) (map[string]string, error) {
	// The registry is the same for every tenant: no tenant is named, so
	// that no region redirects the read.
	ctx = WithTenant(ctx, "")
	var errs []error
	start := int(c.next.Load() % uint32(len(c.urls)))
	for k := range c.urls {
		u := c.urls[(start+k)%len(c.urls)] + "/v1/regions"
		resp, data, err := c.send(ctx, u, http.MethodGet, "", nil, nil)
		if err == nil {
			var regs api.Regions
			if err = answer(u, resp, data, &regs); err == nil {
				return regionOrigins(regs), nil
			}
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

func regionOrigins(regs api.Regions) map[string]string {
	m := map[string]string{}
	for _, reg := range regs.Regions {
		for _, ep := range reg.Endpoints {
			if !strings.Contains(ep, "://") {
				ep = "http://" + ep
			}
			u, err := url.Parse(ep)
			if err != nil || u.Host == "" {
				// An endpoint that is not a URL cannot be redirected to.
				continue
			}
			m[origin(u)] = reg.ID
		}
	}
	return m
}
