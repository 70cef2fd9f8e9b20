package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"testing"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/engine/enginetest"
	"github.com/aibos/kernel/internal/node"
	"github.com/aibos/kernel/internal/node/nodetest"
)

// benchNode is a real node holding a generated 1,000-policy bundle.
func benchNode(b *testing.B, mods ...func(*node.Config)) (*httptest.ResponseRecorder, func(path string, body []byte) *httptest.ResponseRecorder) {
	n, c := startNode(b, mods...)
	if _, err := c.Publish(context.Background(), enginetest.GenerateBundle(1000, 20), client.PublishOptions{}); err != nil {
		b.Fatal(err)
	}
	tok := "Bearer " + nodetest.Token(n)
	serve := func(path string, body []byte) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", path, bytes.NewReader(body))
		req.Header.Set("Authorization", tok)
		n.Server.ServeHTTP(rec, req)
		return rec
	}
	return nil, serve
}

func benchChecks(n int) []api.CheckRequest {
	reqs := make([]api.CheckRequest, n)
	for i := range reqs {
		ns, k := i%20, (i/20)%50
		if k%10 == 3 {
			k++
		}
		reqs[i] = *enginetest.Request(enginetest.Action(ns, k))
	}
	return reqs
}

// BenchmarkHandlerCheck measures one /v1/check through the handler (decode,
// enrich, decide, encode), without the network.
func BenchmarkHandlerCheck(b *testing.B) {
	_, serve := benchNode(b)
	body, _ := json.Marshal(benchChecks(1)[0])
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if rec := serve("/v1/check", body); rec.Code != 200 {
			b.Fatal(rec.Body)
		}
	}
}

// BenchmarkHandlerBatch measures /v1/check/batch with 500 checks per
// request; decisions/s is the figure to compare with the batch target.
func BenchmarkHandlerBatch(b *testing.B) {
	_, serve := benchNode(b)
	body, _ := json.Marshal(api.BatchCheckRequest{Checks: benchChecks(500)})
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if rec := serve("/v1/check/batch", body); rec.Code != 200 {
			b.Fatal(rec.Body)
		}
	}
	b.ReportMetric(float64(500*b.N)/b.Elapsed().Seconds(), "decisions/s")
}
