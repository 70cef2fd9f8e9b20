package region_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/node/nodetest"
	"github.com/aibos/kernel/internal/regiontest"
)

func ctxLong(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), nodetest.WaitLong)
	t.Cleanup(cancel)
	return ctx
}

// putTenants adds tenants at the primary and waits until every region
// knows them.
func (f *federation) putTenants(primary string, homes map[string]string) {
	f.t.Helper()
	p := f.regions[primary]
	for id, home := range homes {
		var body []byte
		if st := doJSON(f.t, f.live(primary).URL(), p.root, http.MethodPut, "/v1/tenants/"+id, api.Tenant{Home: home}, &body); st != http.StatusOK {
			f.t.Fatalf("tenant %s: %d %s", id, st, body)
		}
	}
	f.waitConverged()
}

// percentile of ds (sorted in place), p in [0,1].
func percentile(ds []time.Duration, p float64) time.Duration {
	slices.Sort(ds)
	if len(ds) == 0 {
		return 0
	}
	return ds[min(len(ds)-1, int(float64(len(ds))*p))]
}

// TestReadYourWritesAcrossRegions: a publish at the primary answers its
// global version; a read in another region with min_version waits for it.
func TestReadYourWritesAcrossRegions(t *testing.T) {
	f := startFederation(t, threeRegions, nil)
	for i := 1; i <= 5; i++ {
		st, body := f.publishStatus("us-east", i)
		if st != http.StatusOK {
			t.Fatalf("publish: %d %s", st, body)
		}
		var pr api.PublishResponse
		if err := jsonUnmarshal(body, &pr); err != nil || pr.GlobalVersion == 0 {
			t.Fatalf("publish answer %s: no global version (%v)", body, err)
		}
		for _, id := range []string{"eu-central", "eu-west"} {
			var cur api.BundleVersion
			if st := getJSON(t, f.live(id), f.regions[id].root, fmt.Sprintf("/v1/policies?min_version=%d", pr.GlobalVersion), &cur); st != http.StatusOK {
				t.Fatalf("read at %s: %d", id, st)
			}
			if cur.Version != pr.Version {
				t.Fatalf("%s answered version %d after min_version=%d, want %d", id, cur.Version, pr.GlobalVersion, pr.Version)
			}
		}
	}
	// Any write answers the region's global version after it: a token
	// made at the primary is readable elsewhere with it.
	req, _ := http.NewRequest(http.MethodPost, f.live("us-east").URL()+"/v1/tokens", strings.NewReader(`{"principal":"ryw","roles":["auditor"]}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+f.regions["us-east"].root)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	gv := resp.Header.Get(api.HeaderGlobalVersion)
	if resp.StatusCode != http.StatusCreated || gv == "" || gv == "0" {
		t.Fatalf("token create: %d, %s %q", resp.StatusCode, api.HeaderGlobalVersion, gv)
	}
	var toks struct {
		Tokens []api.Token `json:"tokens"`
	}
	if st := getJSON(t, f.live("eu-central"), f.regions["eu-central"].root, "/v1/tokens?min_version="+gv, &toks); st != http.StatusOK {
		t.Fatalf("tokens at eu-central: %d", st)
	}
	found := false
	for _, tk := range toks.Tokens {
		found = found || tk.Principal == "ryw"
	}
	if !found {
		t.Fatalf("the token made at the primary is not at eu-central after min_version=%s", gv)
	}

	var body []byte
	if st := getJSON(t, f.live("eu-west"), f.regions["eu-west"].root, "/v1/policies?min_version=abc", &body); st != http.StatusBadRequest {
		t.Fatalf("min_version=abc: %d %s", st, body)
	}
	// The lag is on /v1/replication and in Prometheus, on the leader.
	_, leader := f.leader("eu-west")
	if st := getJSON(t, leader, f.regions["eu-west"].root, "/metrics", &body); st != http.StatusOK {
		t.Fatalf("metrics: %d", st)
	}
	for _, want := range []string{`aibos_region_global_version{region="eu-west"}`, `aibos_region_lag_versions{region="eu-west"}`, `aibos_region_connected{region="eu-west"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	rep := f.replication("eu-west")
	if !rep.Connected || rep.Role != api.RoleSecondary || rep.Primary != "us-east" || rep.LastContact.IsZero() {
		t.Errorf("replication status %+v", rep)
	}
}

// publishOnce publishes bundle(i) once: a publish whose outcome is
// unknown (the primary's leader changed while it committed) is looked up
// in the versions before it is sent again.
func publishOnce(t *testing.T, c *client.Client, i int) (uint64, error) {
	msg := fmt.Sprintf("burst %d", i)
	for {
		res, err := c.Publish(ctxLong(t), bundle(i), client.PublishOptions{Message: msg})
		if err == nil {
			return res.Version, nil
		}
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Code != api.CodeOutcomeUnknown {
			return 0, err
		}
		vs, verr := c.Versions(ctxLong(t))
		if verr != nil {
			return 0, verr
		}
		for _, v := range vs {
			if v.Message == msg {
				return v.Version, nil
			}
		}
	}
}

// TestFederation: 200 publishes at the primary reach every region in
// order, exactly once, also across a secondary's leader killed and its
// link cut mid-burst; an eu tenant's write sent to us-east is redirected,
// never stored there, and the SDK follows it; no tenant's marker is found
// in a node's files outside its domain.
func TestFederation(t *testing.T) {
	f := startFederation(t, threeRegions, nil)
	f.putTenants("us-east", map[string]string{"acme-eu": "eu-west", "acme-us": "us-east", "beta-eu": "eu-central"})

	// Watch one follower of each region: when it has a version.
	type seen struct {
		region string
		at     time.Time
	}
	var mu sync.Mutex
	arrivals := map[uint64][]seen{}
	counts := map[string]map[uint64]int{}
	wctx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	for _, id := range f.order {
		li, _ := f.leader(id)
		n := f.regions[id].nodes[(li+1)%nodesPer]
		c, err := client.New([]string{n.URL()}, client.Options{Token: f.regions[id].root, RetryFor: nodetest.WaitLong})
		if err != nil {
			t.Fatal(err)
		}
		ev, err := c.Watch(wctx, 0, client.WatchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		counts[id] = map[uint64]int{}
		go func(id string) {
			for e := range ev {
				if e.Type != "bundle" {
					continue
				}
				mu.Lock()
				arrivals[e.Version] = append(arrivals[e.Version], seen{id, time.Now()})
				counts[id][e.Version]++
				mu.Unlock()
			}
		}(id)
	}

	pub := f.client("us-east", "")
	sent := map[uint64]time.Time{}
	const total, faultAt, healAt = 200, 100, 150
	var killed int
	for i := 1; i <= total; i++ {
		if i == faultAt {
			// eu-west loses its leader and its link to the primary.
			killed, _ = f.leader("eu-west")
			f.cutLink("eu-west", "us-east", true)
			f.kill("eu-west", killed)
		}
		if i == healAt {
			f.cutLink("eu-west", "us-east", false)
		}
		start := time.Now()
		v, err := publishOnce(t, pub, i)
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		sent[v] = start
	}
	f.restart("eu-west", killed)
	f.waitConverged()

	// The same versions and hashes everywhere.
	want := versions(t, f.live("us-east"), f.regions["us-east"].root)
	if len(want) != total {
		t.Fatalf("the primary has %d versions, want %d", len(want), total)
	}
	for _, id := range f.order[1:] {
		for _, n := range f.regions[id].nodes {
			got := versions(t, n, f.regions[id].root)
			if len(got) != len(want) {
				t.Fatalf("%s %s: %d versions, want %d", id, n.Config().NodeID, len(got), len(want))
			}
			for i := range want {
				if got[i].Version != want[i].Version || got[i].Hash != want[i].Hash {
					t.Fatalf("%s: version %d is %d/%s, want %d/%s", id, i+1, got[i].Version, got[i].Hash, want[i].Version, want[i].Hash)
				}
			}
		}
	}
	// Propagation: before the fault, every region; the unaffected
	// eu-central saw every version exactly once.
	f.waitFor("eu-central's watcher to see every version", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(counts["eu-central"]) == total, fmt.Sprint(len(counts["eu-central"]))
	})
	mu.Lock()
	var lat []time.Duration
	for v := uint64(1); v < faultAt; v++ {
		if len(arrivals[v]) != len(f.order) {
			t.Errorf("version %d seen by %d regions before the fault", v, len(arrivals[v]))
		}
		var last time.Duration
		for _, s := range arrivals[v] {
			last = max(last, s.at.Sub(sent[v]))
		}
		lat = append(lat, last)
	}
	for v, n := range counts["eu-central"] {
		if n != 1 {
			t.Errorf("eu-central saw version %d %d times", v, n)
		}
	}
	mu.Unlock()
	p50, p99 := percentile(lat, 0.5), percentile(lat, 0.99)
	t.Logf("publish → applied in every region (%d publishes, 40 ms each way between domains): p50 %v, p99 %v (target p99 ≤ 500 ms)", len(lat), p50, p99)
	if p99 > 5*time.Second {
		t.Errorf("p99 %v: replication is not streaming", p99)
	}
	stopWatch()

	// Routing: an eu tenant's write at us-east is redirected to eu-west
	// and not stored; the SDK follows the redirect.
	us := f.regions["us-east"]
	marker := func(tenant string, i int) string { return fmt.Sprintf("MARKER-%s-%04d", strings.ToUpper(tenant), i) }
	ent := func(tenant string, i int) api.Entity {
		return api.Entity{Type: "doc", ID: fmt.Sprintf("%s-%d", tenant, i), Properties: map[string]any{"tenant": tenant, "secret": marker(tenant, i)}}
	}
	var body []byte
	st := doJSON(t, us.nodes[0].URL(), us.root, http.MethodPut, "/v1/entities", api.EntitiesRequest{Entities: []api.Entity{ent("acme-eu", 0)}}, &body)
	if st != http.StatusTemporaryRedirect || !strings.Contains(string(body), "eu-west") {
		t.Fatalf("eu write at us-east: %d %s", st, body)
	}
	if st := getJSON(t, us.nodes[0], us.root, "/v1/entities/doc/acme-eu-0", &body); st != http.StatusNotFound {
		t.Fatalf("the redirected write is readable at us-east: %d %s", st, body)
	}
	// The SDK, pointed at us-east with a token made at the primary (so
	// valid everywhere), follows to eu-west.
	tok := nodetest.NewToken(t, us.nodes[0], "writer", "admin")
	f.waitConverged()
	sdk, err := client.New([]string{us.nodes[0].URL()}, client.Options{Token: tok, RetryFor: nodetest.WaitLong})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		for _, tenant := range []string{"acme-eu", "acme-us", "beta-eu"} {
			if _, err := sdk.PutEntities(ctxLong(t), []api.Entity{ent(tenant, i)}); err != nil {
				t.Fatalf("%s write through the SDK: %v", tenant, err)
			}
		}
	}
	if _, err := f.client("eu-west", "").Entity(ctxLong(t), "doc", "acme-eu-5", 0); err != nil {
		t.Fatalf("acme-eu's write is not at eu-west: %v", err)
	}
	// A decision for an eu tenant at us-east is redirected too.
	req, _ := http.NewRequest(http.MethodGet, us.nodes[0].URL()+"/v1/entities/doc/acme-eu-5", nil)
	req.Header.Set("Authorization", "Bearer "+us.root)
	req.Header.Set(api.HeaderTenant, "acme-eu")
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get(api.HeaderHomeRegion) != "eu-west" {
		t.Fatalf("a read for acme-eu at us-east: %d %q", resp.StatusCode, resp.Header.Get(api.HeaderHomeRegion))
	}
	// A tenant without a home is refused.
	st = doJSON(t, us.nodes[0].URL(), us.root, http.MethodPut, "/v1/entities", api.EntitiesRequest{Entities: []api.Entity{ent("nobody", 0)}}, &body)
	if st != http.StatusForbidden || !strings.Contains(string(body), api.CodeResidency) {
		t.Fatalf("a homeless tenant's write: %d %s", st, body)
	}

	// Tenant data streams only to the standby, with its own token: us-east's
	// region token asking for eu-west's as if it were eu-central gets none.
	req, _ = http.NewRequest(http.MethodGet, f.live("eu-west").URL()+"/v1/regions/standby/stream?region=eu-central", nil)
	req.Header.Set("Authorization", "Bearer "+f.tokens["us-east"])
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("eu-west's tenant data for us-east's token: %d, want 403", resp.StatusCode)
	}

	// Residency: snapshots too.
	for _, id := range f.order {
		for _, n := range f.regions[id].nodes {
			if err := n.Store.Snapshot(); err != nil {
				t.Fatal(err)
			}
		}
	}
	f.checkResidency(map[string][]string{
		"us": {marker("acme-eu", 1), marker("beta-eu", 1), "MARKER-ACME-EU", "MARKER-BETA-EU"},
		"eu": {"MARKER-ACME-US"},
	})
}

// checkResidency scans every node's data directory and logs for the
// markers of tenants of other domains: notIn[domain] must not occur in any
// file of a region of that domain. It fails on a scan that finds nothing
// at all of what should be there, so that it cannot pass by scanning
// nothing.
func (f *federation) checkResidency(notIn map[string][]string) {
	f.t.Helper()
	var all []string
	for _, ms := range notIn {
		all = append(all, ms...)
	}
	found := 0
	for _, id := range f.order {
		r := f.regions[id]
		roots := []string{r.logs}
		for _, c := range r.cfgs {
			roots = append(roots, c.DataDir)
		}
		fs, err := regiontest.ScanResidency(roots, all)
		if err != nil {
			f.t.Fatalf("scan %s: %v", id, err)
		}
		for _, fd := range fs {
			if slices.Contains(notIn[r.domain], fd.Marker) {
				f.t.Errorf("tenant data outside its domain: %s in region %s (domain %s): %s", fd.Marker, id, r.domain, rel(roots, fd.Path))
			} else {
				found++
			}
		}
	}
	if found == 0 {
		f.t.Fatal("the scan found no marker at all, not even at home: it scanned the wrong files")
	}
	f.t.Logf("residency scan: %d occurrences of markers at home, none outside their domain", found)
}

func rel(roots []string, p string) string {
	for _, r := range roots {
		if x, err := filepath.Rel(r, p); err == nil && !strings.HasPrefix(x, "..") {
			return x
		}
	}
	return p
}
