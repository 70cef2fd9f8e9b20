package server_test

import (
	"encoding/json"
	"testing"

	"github.com/aibos/kernel/api"
)

// BenchmarkHandlerCheckParallel is BenchmarkHandlerCheck with concurrent
// requests on every core.
func BenchmarkHandlerCheckParallel(b *testing.B) {
	_, serve := benchNode(b)
	body, _ := json.Marshal(benchChecks(1)[0])
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if rec := serve("/v1/check", body); rec.Code != 200 {
				b.Error(rec.Body)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}

// BenchmarkHandlerBatchParallel is BenchmarkHandlerBatch with concurrent
// requests on every core: the figure of a loaded node.
func BenchmarkHandlerBatchParallel(b *testing.B) {
	_, serve := benchNode(b)
	body, _ := json.Marshal(api.BatchCheckRequest{Checks: benchChecks(500)})
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if rec := serve("/v1/check/batch", body); rec.Code != 200 {
				b.Error(rec.Body)
				return
			}
		}
	})
	b.ReportMetric(float64(500*b.N)/b.Elapsed().Seconds(), "decisions/s")
}
