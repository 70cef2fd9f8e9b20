package region_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/node/nodetest"
	"github.com/aibos/kernel/internal/region"
)

// versionLog records, per region, the hash each version had when the
// region's watcher first saw it, and every time a version came with
// another hash (which no follower may ever do).
type versionLog struct {
	mu       sync.Mutex
	seen     map[string]map[uint64]string
	conflict []string
}

func (f *federation) watchVersions(ctx context.Context, ids ...string) *versionLog {
	l := &versionLog{seen: map[string]map[uint64]string{}}
	for _, id := range ids {
		l.seen[id] = map[uint64]string{}
		for _, n := range f.regions[id].nodes {
			c, err := client.New([]string{n.URL()}, client.Options{Token: f.regions[id].root, RetryFor: nodetest.WaitLong})
			if err != nil {
				f.t.Fatal(err)
			}
			ev, err := c.Watch(ctx, 0, client.WatchOptions{})
			if err != nil {
				f.t.Fatal(err)
			}
			go func(id, node string) {
				for e := range ev {
					if e.Type != "bundle" {
						continue
					}
					l.mu.Lock()
					if h, ok := l.seen[id][e.Version]; ok && h != e.Hash {
						l.conflict = append(l.conflict, fmt.Sprintf("%s (%s): version %d was %s, then %s", id, node, e.Version, h, e.Hash))
					} else {
						l.seen[id][e.Version] = e.Hash
					}
					l.mu.Unlock()
				}
			}(id, n.Config().NodeID)
		}
	}
	return l
}

func (f *federation) replication(id string) api.Replication {
	f.t.Helper()
	_, n := f.leader(id)
	var r api.Replication
	if st := getJSON(f.t, n, f.regions[id].root, "/v1/replication", &r); st != http.StatusOK {
		f.t.Fatalf("GET /v1/replication at %s: %d", id, st)
	}
	return r
}

func (f *federation) promote(id string) region.PromoteResult {
	f.t.Helper()
	_, n := f.leader(id)
	var res region.PromoteResult
	var body []byte
	start := time.Now()
	st := doJSON(f.t, n.URL(), f.regions[id].root, http.MethodPost, "/v1/regions/"+id+"/promote", struct{}{}, &body)
	if st != http.StatusOK {
		f.t.Fatalf("promote %s: %d %s", id, st, body)
	}
	if err := jsonUnmarshal(body, &res); err != nil {
		f.t.Fatal(err)
	}
	f.t.Logf("promoted %s to epoch %d in %v with the votes of %v", id, res.Epoch, time.Since(start).Round(time.Millisecond), res.Votes)
	return res
}

// publishStatus publishes bundle(i) at region id and returns the status.
func (f *federation) publishStatus(id string, i int) (int, []byte) {
	_, n := f.leader(id)
	req, _ := http.NewRequest(http.MethodPut, n.URL()+"/v1/policies", bundleBody(i))
	req.Header.Set("Content-Type", "application/yaml")
	req.Header.Set("Authorization", "Bearer "+f.regions[id].root)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	var b [4096]byte
	k, _ := resp.Body.Read(b[:])
	return resp.StatusCode, b[:k]
}

// TestPromotionFencing: the primary, cut off, writes an entry no one gets
// and is killed; eu-west is promoted by a majority; us-east restarts,
// refuses global writes, quarantines its entry and follows eu-west. Then
// eu-west, partitioned, stops writing within its lease; eu-central is
// promoted; eu-west heals and follows. No follower ever sees one version
// with two contents, and every region ends with the same history.
func TestPromotionFencing(t *testing.T) {
	f := startFederation(t, threeRegions, nil)
	wctx, stop := context.WithCancel(context.Background())
	defer stop()
	for i := 1; i <= 3; i++ {
		if _, err := publishOnce(t, f.client("us-east", ""), i); err != nil {
			t.Fatal(err)
		}
	}
	f.putTenants("us-east", map[string]string{"acme-eu": "eu-west", "acme-us": "us-east"})
	writeMarkers(t, f, "us-east", "acme-us", 5)
	writeMarkers(t, f, "eu-west", "acme-eu", 5)
	log := f.watchVersions(wctx, "eu-central")

	// us-east, cut off, still holds its lease for a moment: an entry
	// written then reaches no region.
	f.cut("us-east", true)
	// It is applied there, but not confirmed (503): no majority has it.
	if st, body := f.publishStatus("us-east", 100); st != http.StatusServiceUnavailable {
		t.Fatalf("a write at the cut-off primary: %d %s, want 503 (applied, not confirmed)", st, body)
	}
	for i := range f.regions["us-east"].nodes {
		f.kill("us-east", i)
	}
	f.cut("us-east", false)

	res := f.promote("eu-west")
	if res.Epoch != 2 || res.Primary != "eu-west" {
		t.Fatalf("promotion: %+v", res)
	}
	if _, err := publishOnce(t, f.client("eu-west", ""), 4); err != nil {
		t.Fatalf("publish at the new primary: %v", err)
	}
	f.waitConverged()

	// us-east restarts: it refuses global writes (no lease, then a newer
	// epoch), learns epoch 2, and follows eu-west.
	f.restartAll("us-east")
	if st, body := f.publishStatus("us-east", 101); st != http.StatusConflict {
		t.Fatalf("a global write at the restarted old primary: %d %s, want 409", st, body)
	}
	f.waitConverged()
	if st, body := f.publishStatus("us-east", 102); st != http.StatusConflict {
		t.Fatalf("a global write at the old primary after it learnt epoch 2: %d %s, want 409", st, body)
	}
	rep := f.replication("us-east")
	if rep.Role != api.RoleSecondary || rep.Epoch != 2 || rep.Primary != "eu-west" {
		t.Fatalf("us-east after the restart: %+v", rep)
	}
	// What it wrote cut off is there for review, never applied.
	_, usl := f.leader("us-east")
	var q api.Replication
	if st := getJSON(t, usl, f.regions["us-east"].root, "/v1/replication?quarantine=true", &q); st != http.StatusOK || len(q.QuarantinedEntries) != 1 || q.QuarantinedEntries[0].Type != "bundle.publish" || q.QuarantinedEntries[0].Epoch != 1 {
		t.Fatalf("us-east's quarantine: %d %+v", st, q.QuarantinedEntries)
	}
	t.Logf("us-east follows eu-west; %d of its entries quarantined", rep.Quarantined)

	// eu-west, partitioned (not killed), stops writing within its lease.
	f.cut("eu-west", true)
	cutAt := time.Now()
	acked := map[uint64]string{} // version → hash of every write answered 200
	unconfirmed := 0
	for i := 0; ; i++ {
		st, body := f.publishStatus("eu-west", 200+i)
		if st == http.StatusConflict {
			t.Logf("the partitioned primary refused global writes %v after the cut (lease 2 s); %d were answered 200, %d unconfirmed (503): %s",
				time.Since(cutAt).Round(time.Millisecond), len(acked), unconfirmed, body)
			break
		}
		switch st {
		case http.StatusOK:
			var pr api.PublishResponse
			if err := jsonUnmarshal(body, &pr); err != nil {
				t.Fatal(err)
			}
			acked[pr.Version] = pr.Hash
		case http.StatusServiceUnavailable:
			unconfirmed++ // applied there, not confirmed by a majority
		default:
			t.Fatalf("publish at the partitioned primary: %d %s", st, body)
		}
		if time.Since(cutAt) > 15*time.Second {
			t.Fatal("the partitioned primary kept writing for 15 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A write waits for a majority until the lease lapses; the first one
	// after that is refused.
	if time.Since(cutAt) > 2*time.Second+time.Second {
		t.Errorf("refused only %v after the cut; the lease is 2 s", time.Since(cutAt))
	}
	f.promote("eu-central")
	if _, err := publishOnce(t, f.client("eu-central", ""), 5); err != nil {
		t.Fatalf("publish at eu-central: %v", err)
	}
	f.cut("eu-west", false)
	f.waitConverged()
	if q := f.replication("eu-west").Quarantined; q < unconfirmed {
		t.Errorf("eu-west quarantined %d entries, but wrote %d unconfirmed after the cut", q, unconfirmed)
	}

	// Every region has the same history, and no follower saw a version
	// change.
	want := versions(t, f.live("eu-central"), f.regions["eu-central"].root)
	for _, id := range f.order {
		for _, n := range f.regions[id].nodes {
			got := versions(t, n, f.regions[id].root)
			if fmt.Sprint(hashes(got)) != fmt.Sprint(hashes(want)) {
				t.Errorf("%s: history %v, want %v", n.Config().NodeID, hashes(got), hashes(want))
			}
		}
	}
	// No acknowledged write was lost.
	final := map[uint64]string{}
	for _, v := range want {
		final[v.Version] = v.Hash
	}
	for v, h := range acked {
		if final[v] != h {
			t.Errorf("version %d was acknowledged (hash %.8s) and is %.8s now", v, h, final[v])
		}
	}
	log.mu.Lock()
	for _, c := range log.conflict {
		t.Error(c)
	}
	log.mu.Unlock()

	// Tenant data stayed home through the promotions.
	writeMarkers(t, f, "eu-west", "acme-eu", 5)
	for _, id := range f.order {
		for _, n := range f.regions[id].nodes {
			if err := n.Store.Snapshot(); err != nil {
				t.Fatal(err)
			}
		}
	}
	f.checkResidency(map[string][]string{"us": {"MARKER-ACME-EU"}, "eu": {"MARKER-ACME-US"}})
}

// writeMarkers writes n entities of tenant, each with a marker string, at
// region id (its home).
func writeMarkers(t *testing.T, f *federation, id, tenant string, n int) {
	t.Helper()
	c := f.client(id, "")
	for i := 0; i < n; i++ {
		e := api.Entity{Type: "doc", ID: fmt.Sprintf("%s-m%d-%d", tenant, i, time.Now().UnixNano()), Properties: map[string]any{"tenant": tenant, "secret": fmt.Sprintf("MARKER-%s-%d", strings.ToUpper(tenant), i)}}
		if _, err := c.PutEntities(ctxLong(t), []api.Entity{e}); err != nil {
			t.Fatalf("%s write at %s: %v", tenant, id, err)
		}
	}
}

func hashes(vs []api.VersionInfo) []string {
	var out []string
	for _, v := range vs {
		out = append(out, fmt.Sprintf("%d:%.8s", v.Version, v.Hash))
	}
	return out
}
