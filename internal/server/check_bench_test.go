package server_test

import (
	"encoding/json"
	"testing"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/node"
)

// auditModes runs a benchmark with every decision in the audit log (the
// default) and without: the difference is what auditing costs.
func auditModes(b *testing.B, bench func(b *testing.B, mod func(*node.Config))) {
	b.Run("audit=on", func(b *testing.B) { bench(b, func(*node.Config) {}) })
	b.Run("audit=off", func(b *testing.B) { bench(b, func(c *node.Config) { c.NoDecisionAudit = true }) })
}

// BenchmarkHandlerCheckParallel is BenchmarkHandlerCheck with concurrent
// requests on every core, with and without the audit log.
//
//	go test -run '^$' -bench 'Handler(Check|Batch)Parallel' -benchtime 3s ./internal/server/
func BenchmarkHandlerCheckParallel(b *testing.B) { auditModes(b, benchCheckParallel) }

func benchCheckParallel(b *testing.B, mod func(*node.Config)) {
	_, serve := benchNode(b, mod)
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
// requests on every core: the figure of a loaded node, with and without the
// audit log.
func BenchmarkHandlerBatchParallel(b *testing.B) { auditModes(b, benchBatchParallel) }

func benchBatchParallel(b *testing.B, mod func(*node.Config)) {
	_, serve := benchNode(b, mod)
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
