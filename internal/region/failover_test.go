package region_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/node/nodetest"
)

// TestTenantFailover: eu-west's tenant data streams to its standby
// eu-central; under steady writes eu-west is lost (all its nodes killed);
// eu-central serves its tenants within 60 s, missing at most the last
// second of acknowledged writes; a tenant whose home is lost with no
// standby answers 503 and is served nowhere else; no marker leaves its
// domain.
func TestTenantFailover(t *testing.T) {
	f := startFederation(t, threeRegions, nil)
	f.putTenants("us-east", map[string]string{"acme-eu": "eu-west", "beta-eu": "eu-central", "acme-us": "us-east"})
	us := f.regions["us-east"]
	tok := nodetest.NewToken(t, us.nodes[0], "writer", "admin")
	f.waitConverged()
	// The writers ask eu-west's nodes, then us-east, which redirects
	// acme-eu's writes to the region serving it: once eu-west is gone,
	// eu-central.
	var wurls []string
	for _, n := range f.regions["eu-west"].nodes {
		wurls = append(wurls, n.URL())
	}
	wurls = append(wurls, us.nodes[0].URL())
	w, err := client.New(wurls, client.Options{Token: tok, RetryFor: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := w.PutEntities(ctxLong(t), []api.Entity{{Type: "doc", ID: fmt.Sprintf("us-%d", i), Properties: map[string]any{"tenant": "acme-us", "secret": fmt.Sprintf("MARKER-ACME-US-%d", i)}}}); err != nil {
			t.Fatal(err)
		}
	}

	type write struct {
		id        string
		start, at time.Time // sent, acknowledged
	}
	var mu sync.Mutex
	var acked []write
	var failures int
	stop := make(chan struct{})
	var writers sync.WaitGroup
	for wi := 0; wi < 4; wi++ {
		writers.Add(1)
		go func(wi int) {
			defer writers.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("w%d-%05d", wi, i)
				sent := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				_, err := w.PutEntities(ctx, []api.Entity{{Type: "doc", ID: id, Properties: map[string]any{"tenant": "acme-eu", "secret": "MARKER-ACME-EU-" + id}}})
				cancel()
				mu.Lock()
				if err == nil {
					acked = append(acked, write{id, sent, time.Now()})
				} else {
					failures++
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}(wi)
	}
	time.Sleep(3 * time.Second)
	mu.Lock()
	before := len(acked)
	mu.Unlock()
	if before < 5 {
		t.Fatalf("only %d writes in 3 s before the failure", before)
	}

	// eu-west is lost: once its last node is killed, no write sent can be
	// acknowledged by it.
	for i := range f.regions["eu-west"].nodes {
		f.kill("eu-west", i)
	}
	lostAt := time.Now()
	var servedAt time.Time
	f.waitFor("a write of acme-eu acknowledged after eu-west was lost", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		for _, a := range acked {
			if a.start.After(lostAt) {
				servedAt = a.at
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d failures so far", failures)
	})
	time.Sleep(time.Second)
	close(stop)
	writers.Wait()
	rto := servedAt.Sub(lostAt)

	// Every write acknowledged before the loss is at eu-central, but for
	// at most the last second's.
	ec := f.client("eu-central", "")
	var missing []write
	mu.Lock()
	writes := append([]write(nil), acked...)
	mu.Unlock()
	lastBefore := 0
	for _, a := range writes {
		if a.at.Before(lostAt) {
			lastBefore++
		}
	}
	for _, a := range writes {
		if _, err := ec.Entity(ctxLong(t), "doc", a.id, 0); err != nil {
			var ce *client.Error
			if !errors.As(err, &ce) || ce.Status != http.StatusNotFound {
				t.Fatalf("read %s at eu-central: %v", a.id, err)
			}
			missing = append(missing, a)
		}
	}
	rpo := time.Duration(0)
	for _, m := range missing {
		if m.at.After(lostAt) {
			t.Errorf("write %s acknowledged after the loss (by eu-central) is missing there", m.id)
			continue
		}
		rpo = max(rpo, lostAt.Sub(m.at))
	}
	t.Logf("tenant failover under steady writes (4 writers): %d writes acknowledged, %d before the loss; served from eu-central %v after eu-west was lost (failover after 5 s of silence; target RTO ≤ 60 s); %d acknowledged writes missing, the oldest %v before the loss (target RPO ≤ 1 s)",
		len(writes), lastBefore, rto.Round(time.Millisecond), len(missing), rpo.Round(time.Millisecond))
	if rto > 60*time.Second {
		t.Errorf("RTO %v", rto)
	}
	if rpo > time.Second {
		t.Errorf("RPO %v", rpo)
	}
	reg := f.registry(f.live("us-east"), us.root)
	for _, r := range reg.Regions {
		if r.ID == "eu-west" && !r.FailedOver {
			t.Errorf("eu-west is not marked failed over: %+v", r)
		}
	}

	// A tenant whose home is lost with no standby (an operator declares
	// eu-central lost): 503 everywhere, never served from another domain.
	var body []byte
	if st := doJSON(t, us.nodes[0].URL(), us.root, http.MethodPost, "/v1/regions/eu-central/failover", struct{}{}, &body); st != http.StatusOK {
		t.Fatalf("failover eu-central: %d %s", st, body)
	}
	f.waitConverged()
	for _, tenant := range []string{"beta-eu", "acme-eu"} {
		st := doJSON(t, us.nodes[0].URL(), tok, http.MethodPut, "/v1/entities", api.EntitiesRequest{Entities: []api.Entity{{Type: "doc", ID: "x", Properties: map[string]any{"tenant": tenant, "secret": "MARKER-BETA-EU-x"}}}}, &body)
		if st != http.StatusServiceUnavailable {
			t.Fatalf("%s with its domain lost: %d %s, want 503", tenant, st, body)
		}
	}

	for _, id := range []string{"us-east", "eu-central"} {
		for _, n := range f.regions[id].nodes {
			if err := n.Store.Snapshot(); err != nil {
				t.Fatal(err)
			}
		}
	}
	f.checkResidency(map[string][]string{
		"us": {"MARKER-ACME-EU", "MARKER-BETA-EU"},
		"eu": {"MARKER-ACME-US"},
	})
}
