package gateway_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/node/nodetest"
)

// BenchmarkInvoke measures the kernel's overhead on an allowed action: the
// same request sent straight to a local backend ("direct") and through the
// gateway ("gateway": authentication, catalog, schema, decision, rate limit
// and idempotency key in the local counter store, backend call, audit
// record fsynced before the answer). Latency percentiles are reported as
// metrics; the overhead is gateway minus direct.
//
//	go test -run '^$' -bench Invoke -benchtime 5000x ./internal/gateway/
func BenchmarkInvoke(b *testing.B) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok":true,"rows":[1,2,3]}`))
	}))
	defer be.Close()
	n := nodetest.Start(b, nodetest.Config(b, "n1"))
	c := nodetest.Client(b, n)
	ctx := context.Background()
	policy := `
kind: Policy
name: p
layer: platform
rules:
  - name: reads
    effect: allow
    actions: ["crm.read"]
    when: subject.properties.tenant == "acme" && context.input.limit <= 100.0
    obligations: {audit: digest, rate_limit: {limit: 100000000, per: 1h, key: subject.id}}
`
	if _, err := c.Publish(ctx, []api.File{{Name: "p.yaml", Data: []byte(policy)}}, client.PublishOptions{}); err != nil {
		b.Fatal(err)
	}
	if _, err := c.PutOrchestra(ctx, api.Orchestra{Name: "crm", Backend: api.Backend{Type: api.BackendHTTP, URL: be.URL},
		Actions: []api.ActionDef{{Name: "crm.read", Risk: api.RiskRead,
			InputSchema: []byte(`{"type":"object","properties":{"table":{"type":"string"},"limit":{"type":"integer","maximum":1000}},"required":["table"]}`)}}}); err != nil {
		b.Fatal(err)
	}
	reg, err := c.RegisterAgent(ctx, api.AgentManifest{ID: "bench", Version: "1", Tenant: "acme", Capabilities: []string{"crm.*"}})
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"input":{"table":"orders","limit":10}}`)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	call := func(url string, auth bool) {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if auth {
			req.Header.Set("Authorization", "Bearer "+reg.Token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("%s: %s", url, resp.Status)
		}
	}
	run := func(b *testing.B, url string, auth bool) {
		for range 200 { // warm connections and caches
			call(url, auth)
		}
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for range b.N {
			t0 := time.Now()
			call(url, auth)
			lat = append(lat, time.Since(t0))
		}
		b.StopTimer()
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
	b.Run("direct", func(b *testing.B) { run(b, be.URL, false) })
	b.Run("gateway", func(b *testing.B) { run(b, n.URL()+"/v1/actions/crm.read/invoke", true) })
	b.Run("gateway-parallel", func(b *testing.B) {
		url := n.URL() + "/v1/actions/crm.read/invoke"
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				call(url, true)
			}
		})
	})
}
