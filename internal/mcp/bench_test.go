package mcp_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// BenchmarkEchoOverhead calls server-everything's echo with the Go SDK's
// client straight (its own stdio session) and through the kernel (/mcp,
// streamable HTTP, the whole gateway pipeline with the audit log on, to a
// stdio session of the same server), and reports p50 and p99 of each and
// of the difference. Run:
//
//	go test -run '^$' -bench EchoOverhead -benchtime 2000x ./internal/mcp
func BenchmarkEchoOverhead(b *testing.B) {
	args := map[string]any{"message": "hello"}
	overhead(b, func(ctx context.Context, s *mcp.ClientSession, kernel bool) error {
		name := "echo"
		if kernel {
			name = "everything.echo"
		}
		r, err := s.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
		if err == nil && r.IsError {
			err = fmt.Errorf("%s: %+v", name, r)
		}
		return err
	})
}

// BenchmarkReadResourceOverhead is BenchmarkEchoOverhead for resources/read
// of one of server-everything's documents (routed, decided as
// mcp.resources.read, audited). Run:
//
//	go test -run '^$' -bench ReadResourceOverhead -benchtime 2000x ./internal/mcp
func BenchmarkReadResourceOverhead(b *testing.B) {
	const uri = "demo://resource/static/document/features.md"
	overhead(b, func(ctx context.Context, s *mcp.ClientSession, kernel bool) error {
		u := uri
		if kernel {
			u = "everything+" + uri
		}
		_, err := s.ReadResource(ctx, &mcp.ReadResourceParams{URI: u})
		return err
	})
}

// overhead runs op straight against server-everything and through the
// kernel, and reports the percentiles.
func overhead(b *testing.B, op func(ctx context.Context, s *mcp.ClientSession, kernel bool) error) {
	e := setup(b)
	ctx := context.Background()
	mods := filepath.Join(e.dir, "node_modules", "@modelcontextprotocol")
	direct, err := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil).Connect(ctx,
		&mcp.CommandTransport{Command: exec.Command(e.node, filepath.Join(mods, "server-everything", "dist", "index.js"), "stdio")}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer direct.Close()
	kernel := e.goClient("bot", nil)
	measure := func(s *mcp.ClientSession, viaKernel bool) []time.Duration {
		for range 50 { // warm up
			if err := op(ctx, s, viaKernel); err != nil {
				b.Fatal(err)
			}
		}
		out := make([]time.Duration, 0, b.N)
		for range b.N {
			t0 := time.Now()
			err := op(ctx, s, viaKernel)
			out = append(out, time.Since(t0))
			if err != nil {
				b.Fatal(err)
			}
		}
		slices.Sort(out)
		return out
	}
	b.ResetTimer()
	d := measure(direct, false)
	k := measure(kernel, true)
	b.StopTimer()
	pct := func(s []time.Duration, p float64) float64 {
		return float64(s[min(len(s)-1, int(float64(len(s))*p))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(d, 0.5), "direct-p50-ms")
	b.ReportMetric(pct(d, 0.99), "direct-p99-ms")
	b.ReportMetric(pct(k, 0.5), "kernel-p50-ms")
	b.ReportMetric(pct(k, 0.99), "kernel-p99-ms")
	b.ReportMetric(pct(k, 0.5)-pct(d, 0.5), "overhead-p50-ms")
	b.ReportMetric(pct(k, 0.99)-pct(d, 0.99), "overhead-p99-ms")
}
