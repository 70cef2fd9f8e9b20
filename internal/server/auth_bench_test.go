package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
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
// on both alike; auth-% is what authentication adds to a single check.
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
	one := func(h http.HandlerFunc, auth string) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/v1/check", bytes.NewReader(body))
		req.Header.Set("Authorization", auth) // on both, so both build the same request
		h(rec, req)
		if rec.Code != 200 {
			b.Fatal(rec.Code, rec.Body)
		}
	}
	var off, on time.Duration
	for i := 0; b.Loop(); i++ {
		// Alternate which goes first, so neither gets the warm cache.
		t0 := time.Now()
		if i%2 == 0 {
			one(unguarded, pep)
			t1 := time.Now()
			one(n.Server.ServeHTTP, pep)
			off, on = off+t1.Sub(t0), on+time.Since(t1)
		} else {
			one(n.Server.ServeHTTP, pep)
			t1 := time.Now()
			one(unguarded, pep)
			on, off = on+t1.Sub(t0), off+time.Since(t1)
		}
	}
	b.ReportMetric(float64(off.Nanoseconds())/float64(b.N), "ns/check-noauth")
	b.ReportMetric(float64(on.Nanoseconds())/float64(b.N), "ns/check-auth")
	b.ReportMetric(100*(float64(on)-float64(off))/float64(off), "auth-%")
}
