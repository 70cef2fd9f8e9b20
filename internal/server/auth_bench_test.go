package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/engine/enginetest"
	"github.com/aibos/kernel/internal/node"
	"github.com/aibos/kernel/internal/node/nodetest"
)

// BenchmarkCheckAuth puts single checks with and without authentication
// side by side (DESIGN.md §5: auth costs at most 5 % of single-check
// throughput): auth=off serves /v1/check through a mux of the same routes
// without their guards, as before the kernel authenticated its API;
// auth=pep sends a pep token through the guard (origin and media checks,
// failure limiter, parse, SHA-256, token lookup, system decision).
//
//	go test -run '^$' -bench 'CheckAuth' -benchtime 2s -count 5 ./internal/server/
func BenchmarkCheckAuth(b *testing.B) {
	n, c := startNode(b, func(cfg *node.Config) { cfg.NoDecisionAudit = true })
	if _, err := c.Publish(context.Background(), enginetest.GenerateBundle(1000, 20), client.PublishOptions{}); err != nil {
		b.Fatal(err)
	}
	pep := "Bearer " + nodetest.NewToken(b, n, "a-pep", "pep")
	body, _ := json.Marshal(benchChecks(1)[0])
	unguarded := n.Server.UnguardedServer()
	for _, mode := range []struct {
		name  string
		serve http.HandlerFunc
		auth  string
	}{
		{"auth=off", unguarded, ""},
		{"auth=pep", n.Server.ServeHTTP, pep},
	} {
		one := func() int {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("POST", "/v1/check", bytes.NewReader(body))
			if mode.auth != "" {
				req.Header.Set("Authorization", mode.auth)
			}
			mode.serve(rec, req)
			return rec.Code
		}
		b.Run(mode.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if code := one(); code != 200 {
					b.Fatal(code)
				}
			}
		})
		b.Run(mode.name+"/parallel", func(b *testing.B) {
			b.SetParallelism(1)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if code := one(); code != 200 {
						b.Error(code)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
		})
	}
}

// BenchmarkCheckAuthInterleaved alternates a check without and one with
// authentication in the same loop, so the load of a shared machine falls
// on both alike. auth-% is what authentication adds to a single check:
// of the means (every pause of the collector counted where it fell), and
// of the medians (robust to a pause landing on one side: the guard
// allocates nothing on this route, so both sides make the same garbage).
//
//	go test -run '^$' -bench 'CheckAuthInterleaved' -benchtime 20000x -count 5 ./internal/server/
func BenchmarkCheckAuthInterleaved(b *testing.B) {
	n, c := startNode(b, func(cfg *node.Config) { cfg.NoDecisionAudit = true })
	if _, err := c.Publish(context.Background(), enginetest.GenerateBundle(1000, 20), client.PublishOptions{}); err != nil {
		b.Fatal(err)
	}
	pep := "Bearer " + nodetest.NewToken(b, n, "a-pep", "pep")
	body, _ := json.Marshal(benchChecks(1)[0])
	unguarded := n.Server.UnguardedServer()
	one := func(h http.HandlerFunc, auth string) time.Duration {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/v1/check", bytes.NewReader(body))
		req.Header.Set("Authorization", auth) // on both, so both build the same request
		t0 := time.Now()
		h(rec, req)
		d := time.Since(t0)
		if rec.Code != 200 {
			b.Fatal(rec.Code, rec.Body)
		}
		return d
	}
	var offs, ons []time.Duration
	for i := 0; b.Loop(); i++ {
		// Alternate which goes first, so neither gets the warm cache.
		if i%2 == 0 {
			offs = append(offs, one(unguarded, pep))
			ons = append(ons, one(n.Server.ServeHTTP, pep))
		} else {
			ons = append(ons, one(n.Server.ServeHTTP, pep))
			offs = append(offs, one(unguarded, pep))
		}
	}
	off, on := total(offs), total(ons)
	b.ReportMetric(float64(off.Nanoseconds())/float64(b.N), "ns/check-noauth")
	b.ReportMetric(float64(on.Nanoseconds())/float64(b.N), "ns/check-auth")
	b.ReportMetric(100*(float64(on)-float64(off))/float64(off), "auth-%")
	moff, mon := median(offs), median(ons)
	b.ReportMetric(100*(float64(mon)-float64(moff))/float64(moff), "auth-%-median")
}

func total(ds []time.Duration) (t time.Duration) {
	for _, d := range ds {
		t += d
	}
	return t
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkGuard is the guard of /v1/check alone, around a handler that
// does nothing, for one request built once: its origin and media checks,
// the failure limiter, the credential and the remembered permit.
//
//	go test -run '^$' -bench 'Guard$' -benchmem ./internal/server/
func BenchmarkGuard(b *testing.B) {
	n, _ := startNode(b)
	h := n.Server.GuardOf("POST /v1/check", func(http.ResponseWriter, *http.Request) {})
	req := httptest.NewRequest("POST", "/v1/check", nil)
	req.Header.Set("Authorization", "Bearer "+nodetest.NewToken(b, n, "a-pep", "pep"))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h(rec, req)
	}
	if rec.Code != 200 {
		b.Fatal(rec.Code, rec.Body)
	}
}

// BenchmarkCheckAuthHTTP is single-check throughput over loopback HTTP
// (DESIGN.md §5 measures the target so, as OPA's --authentication=token
// is), with and without authentication: two servers on loopback, one the
// node's API and one the same routes without their guards, each client
// goroutine alternating a check on each over its keep-alive connections.
// With a fixed number of checks in flight, throughput goes as the inverse
// of the mean latency, so auth-% is what authentication takes of it.
//
//	go test -run '^$' -bench 'CheckAuthHTTP' -benchtime 20000x -count 5 ./internal/server/
func BenchmarkCheckAuthHTTP(b *testing.B) {
	n, c := startNode(b, func(cfg *node.Config) { cfg.NoDecisionAudit = true })
	if _, err := c.Publish(context.Background(), enginetest.GenerateBundle(1000, 20), client.PublishOptions{}); err != nil {
		b.Fatal(err)
	}
	pep := "Bearer " + nodetest.NewToken(b, n, "a-pep", "pep")
	body, _ := json.Marshal(benchChecks(1)[0])
	on := httptest.NewServer(n.Server)
	off := httptest.NewServer(n.Server.UnguardedServer())
	b.Cleanup(on.Close)
	b.Cleanup(off.Close)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	one := func(url string) time.Duration {
		req, _ := http.NewRequest("POST", url+"/v1/check", bytes.NewReader(body))
		req.Header.Set("Authorization", pep) // on both, so both carry the same bytes
		req.Header.Set("Content-Type", "application/json")
		t0 := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			b.Error(err)
			return 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		d := time.Since(t0)
		if resp.StatusCode != 200 {
			b.Error(resp.StatusCode)
		}
		return d
	}
	var tOff, tOn atomic.Int64
	b.SetParallelism(2) // 4 checks in flight on 2 cores
	b.RunParallel(func(pb *testing.PB) {
		for i := 0; pb.Next(); i++ {
			if i%2 == 0 {
				tOff.Add(int64(one(off.URL)))
				tOn.Add(int64(one(on.URL)))
			} else {
				tOn.Add(int64(one(on.URL)))
				tOff.Add(int64(one(off.URL)))
			}
		}
	})
	b.ReportMetric(float64(tOff.Load())/float64(b.N), "ns/check-noauth")
	b.ReportMetric(float64(tOn.Load())/float64(b.N), "ns/check-auth")
	b.ReportMetric(100*(float64(tOn.Load())-float64(tOff.Load()))/float64(tOff.Load()), "auth-%")
}
