package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aibos/kernel/api"
)

// fakeRegions is a registry of regions, each one httptest server standing
// for a region; every server answers GET /v1/regions with the registry.
type fakeRegions struct {
	mu      sync.Mutex
	regions []api.Region // guarded by mu
	fetches atomic.Int32
}

// fakeRegion is one region's server. Its serve answers every call but the
// registry's; calls records what reached it.
type fakeRegion struct {
	*httptest.Server
	mu    sync.Mutex
	serve http.HandlerFunc // guarded by mu
	calls []seen           // guarded by mu
}

// seen is what a call carried to a region.
type seen struct {
	method, uri, auth, tenant, ctype, body string
}

func (fr *fakeRegion) setServe(h http.HandlerFunc) {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	fr.serve = h
}

func (fr *fakeRegion) seen() []seen {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	return append([]seen(nil), fr.calls...)
}

// start starts a region's server; listed adds it to the registry.
func (f *fakeRegions) start(t *testing.T, id string, listed bool) *fakeRegion {
	t.Helper()
	fr := &fakeRegion{}
	fr.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/regions" {
			f.fetches.Add(1)
			f.mu.Lock()
			regs := api.Regions{Self: id, Regions: append([]api.Region(nil), f.regions...)}
			f.mu.Unlock()
			json.NewEncoder(w).Encode(regs)
			return
		}
		body, _ := io.ReadAll(r.Body)
		fr.mu.Lock()
		fr.calls = append(fr.calls, seen{r.Method, r.URL.RequestURI(), r.Header.Get("Authorization"),
			r.Header.Get(api.HeaderTenant), r.Header.Get("Content-Type"), string(body)})
		h := fr.serve
		fr.mu.Unlock()
		if h == nil {
			json.NewEncoder(w).Encode(api.Decision{Decision: api.Allow})
			return
		}
		h(w, r)
	}))
	t.Cleanup(fr.Close)
	if listed {
		f.add(id, fr)
	}
	return fr
}

func (f *fakeRegions) add(id string, fr *fakeRegion) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.regions = append(f.regions, api.Region{ID: id, Domain: "eu", Endpoints: []string{fr.URL}})
}

// redirectTo answers as a region does for a tenant that lives in home:
// 307 to the same path and query at to.
func redirectTo(to *fakeRegion, home string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", to.URL+r.URL.RequestURI())
		w.Header().Set(api.HeaderHomeRegion, home)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTemporaryRedirect)
		json.NewEncoder(w).Encode(api.ErrorBody{Error: api.ErrorDetail{Code: "wrong_region", Message: "tenant lives in " + home}})
	}
}

func checkReq() api.CheckRequest { return api.CheckRequest{Action: api.Action{Name: "data.read"}} }

func TestFollowsRegionRedirect(t *testing.T) {
	var f fakeRegions
	a := f.start(t, "eu-1", true)
	b := f.start(t, "eu-2", true)
	a.setServe(redirectTo(b, "eu-2"))

	// A caller's own http.Client must keep its redirect policy.
	own := &http.Client{}
	c, err := New([]string{a.URL}, Options{HTTPClient: own, Token: "tok", Tenant: "acme", RetryFor: -1})
	if err != nil {
		t.Fatal(err)
	}
	if own.CheckRedirect != nil {
		t.Fatal("New changed the caller's http.Client")
	}
	d, err := c.Check(context.Background(), checkReq())
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	if d.Decision != api.Allow {
		t.Fatalf("decision %q, want allow", d.Decision)
	}
	want, _ := json.Marshal(checkReq())
	at := b.seen()
	if len(at) != 1 {
		t.Fatalf("home region got %d calls, want 1", len(at))
	}
	got := at[0]
	if got.method != http.MethodPost || got.uri != "/v1/check" || got.auth != "Bearer tok" ||
		got.tenant != "acme" || got.ctype != "application/json" || got.body != string(want) {
		t.Fatalf("home region got %+v, want the call as sent with its body and token", got)
	}
	if n := len(a.seen()); n != 1 {
		t.Fatalf("first region got %d calls, want 1", n)
	}

	// A tenant set for one call is the one sent, and the query survives.
	ctx := WithTenant(context.Background(), "globex")
	if _, err := c.Entity(ctx, "user", "u1", 7); err != nil {
		t.Fatalf("entity read: %v", err)
	}
	at = b.seen()
	if len(at) != 2 || at[1].tenant != "globex" || at[1].uri != "/v1/entities/user/u1?min_revision=7" {
		t.Fatalf("home region got %+v, want the read for tenant globex with its query", at[len(at)-1])
	}
	if n := f.fetches.Load(); n != 1 {
		t.Fatalf("registry read %d times, want once (cached)", n)
	}
}

func TestRefusesRedirectOutsideRegistry(t *testing.T) {
	var f fakeRegions
	a := f.start(t, "eu-1", true)
	// Same host as the region, another port: net/http would send the
	// token there.
	rogue := f.start(t, "rogue", false)
	a.setServe(redirectTo(rogue, "eu-2"))

	c, err := New([]string{a.URL}, Options{Token: "tok", Tenant: "acme", RetryFor: -1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Check(context.Background(), checkReq())
	var apiErr *Error
	if !errors.As(err, &apiErr) || apiErr.Code != CodeRedirectRefused || apiErr.Status != http.StatusTemporaryRedirect {
		t.Fatalf("got %v, want a %s error", err, CodeRedirectRefused)
	}
	t.Log(err)
	if at := rogue.seen(); len(at) != 0 {
		t.Fatalf("the refused Location got %+v", at)
	}
	// The registry was read once, lazily: at the first redirect.
	if n := f.fetches.Load(); n != 1 {
		t.Fatalf("registry read %d times, want 1 (it was not cached yet)", n)
	}
	_, err = c.Check(context.Background(), checkReq())
	if !errors.As(err, &apiErr) || apiErr.Code != CodeRedirectRefused {
		t.Fatalf("second call: got %v, want a %s error", err, CodeRedirectRefused)
	}
	if n := f.fetches.Load(); n != 2 {
		t.Fatalf("registry read %d times, want 2 (refetched for the unknown Location)", n)
	}
	if at := rogue.seen(); len(at) != 0 {
		t.Fatalf("the refused Location got %+v", at)
	}
}

func TestPlainRedirectNotFollowed(t *testing.T) {
	var f fakeRegions
	a := f.start(t, "eu-1", true)
	b := f.start(t, "eu-2", true)
	a.setServe(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, b.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	})
	c, err := New([]string{a.URL}, Options{Token: "tok", RetryFor: -1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Check(context.Background(), checkReq())
	var apiErr *Error
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusTemporaryRedirect {
		t.Fatalf("got %v, want the 307 as an error", err)
	}
	if at := b.seen(); len(at) != 0 {
		t.Fatalf("a redirect without %s was followed: %+v", api.HeaderHomeRegion, at)
	}
}

func TestRegionHopLimit(t *testing.T) {
	var f fakeRegions
	a := f.start(t, "eu-1", true)
	b := f.start(t, "eu-2", true)
	a.setServe(redirectTo(b, "eu-2"))
	b.setServe(redirectTo(a, "eu-1"))

	c, err := New([]string{a.URL}, Options{Token: "tok", RetryFor: -1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Check(context.Background(), checkReq())
	var apiErr *Error
	if !errors.As(err, &apiErr) || apiErr.Code != CodeTooManyRedirects {
		t.Fatalf("got %v, want a %s error", err, CodeTooManyRedirects)
	}
	t.Log(err)
	if n := len(a.seen()) + len(b.seen()); n != 1+MaxRegionHops {
		t.Fatalf("the call was sent %d times, want %d (once and %d hops)", n, 1+MaxRegionHops, MaxRegionHops)
	}
}

func TestFollowsRegionAddedLater(t *testing.T) {
	var f fakeRegions
	a := f.start(t, "eu-1", true)
	b := f.start(t, "eu-2", true)
	a.setServe(redirectTo(b, "eu-2"))
	c, err := New([]string{a.URL}, Options{Token: "tok", RetryFor: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Check(context.Background(), checkReq()); err != nil {
		t.Fatalf("check via eu-2: %v", err)
	}

	// eu-3 joins the registry after the client cached it.
	n := f.start(t, "eu-3", false)
	f.add("eu-3", n)
	a.setServe(redirectTo(n, "eu-3"))
	if _, err := c.Check(context.Background(), checkReq()); err != nil {
		t.Fatalf("check via eu-3: %v", err)
	}
	if at := n.seen(); len(at) != 1 || at[0].auth != "Bearer tok" {
		t.Fatalf("eu-3 got %+v, want the call with its token", at)
	}
	if got := f.fetches.Load(); got != 2 {
		t.Fatalf("registry read %d times, want 2 (once, then for eu-3)", got)
	}
}

// TestRegistryReadOnceByConcurrentCalls checks that calls redirected at
// once read the registry once between them, not once each.
func TestRegistryReadOnceByConcurrentCalls(t *testing.T) {
	var f fakeRegions
	a := f.start(t, "eu-1", true)
	b := f.start(t, "eu-2", true)
	a.setServe(redirectTo(b, "eu-2"))
	c, err := New([]string{a.URL}, Options{Token: "tok", RetryFor: -1})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			_, err := c.Check(context.Background(), checkReq())
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := len(b.seen()); n != 20 {
		t.Fatalf("home region got %d calls, want 20", n)
	}
	if n := f.fetches.Load(); n != 1 {
		t.Fatalf("registry read %d times by 20 concurrent calls, want 1", n)
	}
}
