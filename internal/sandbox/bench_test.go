package sandbox_test

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/gateway"
	"github.com/aibos/kernel/internal/sandbox"
)

// Benchmarks next to DESIGN.md §5 (sandboxed agent: instantiate a cached
// module p99 ≤ 30 ms, wake a parked one ≤ 50 ms). Run:
//
//	go test -run '^$' -bench . -benchtime 20x ./internal/sandbox

func BenchmarkCompile(b *testing.B) {
	wasm := guest(b, "agent")
	ctx := context.Background()
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			r := wazero.NewRuntime(ctx)
			cm, _, err := sandbox.Validate(ctx, r, wasm)
			if err != nil {
				b.Fatal(err)
			}
			cm.Close(ctx)
			r.Close(ctx)
		}
	})
	b.Run("from-cache", func(b *testing.B) {
		cache, err := wazero.NewCompilationCacheWithDir(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		warm := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(cache))
		if _, _, err := sandbox.Validate(ctx, warm, wasm); err != nil {
			b.Fatal(err)
		}
		warm.Close(ctx)
		b.ResetTimer()
		for b.Loop() {
			// A new runtime each time: only the file cache is shared, as on
			// a restarted node.
			r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(cache))
			cm, _, err := sandbox.Validate(ctx, r, wasm)
			if err != nil {
				b.Fatal(err)
			}
			cm.Close(ctx)
			r.Close(ctx)
		}
	})
}

// percentiles reports p50 and p99 of ds.
func percentiles(b *testing.B, ds []time.Duration) {
	slices.Sort(ds)
	at := func(q float64) float64 { return float64(ds[int(q*float64(len(ds)-1))].Microseconds()) / 1000 }
	b.ReportMetric(at(0.5), "p50-ms")
	b.ReportMetric(at(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkStartAndWake: instantiate the cached module and run its first
// tick (start), and wake a parked agent for a message tick (instantiate,
// _initialize, the tick), end to end on a real node.
func BenchmarkStartAndWake(b *testing.B) {
	e := startB(b)
	e.register("a1", "idle", nil)
	e.deploy("a1", guest(b, "agent"))
	e.startAgent("a1")
	waitForB(b, func() bool { return e.n.Sandbox.Ticks("a1") >= 1 })
	b.Run("wake-parked", func(b *testing.B) {
		var ds []time.Duration
		for b.Loop() {
			e.n.Sandbox.Park("a1")
			before := e.n.Sandbox.Ticks("a1")
			t0 := time.Now()
			if err := e.n.Sandbox.Send("a1", []byte(`{}`)); err != nil {
				b.Fatal(err)
			}
			waitForB(b, func() bool { return e.n.Sandbox.Ticks("a1") > before })
			ds = append(ds, time.Since(t0))
		}
		percentiles(b, ds)
	})
	b.Run("tick-live", func(b *testing.B) {
		var ds []time.Duration
		for b.Loop() {
			before := e.n.Sandbox.Ticks("a1")
			t0 := time.Now()
			if err := e.n.Sandbox.Send("a1", []byte(`{}`)); err != nil {
				b.Fatal(err)
			}
			waitForB(b, func() bool { return e.n.Sandbox.Ticks("a1") > before })
			ds = append(ds, time.Since(t0))
		}
		percentiles(b, ds)
	})
}

// BenchmarkInstantiate: instantiate the compiled module and run its
// _initialize (Go's runtime init and main), nothing else.
func BenchmarkInstantiate(b *testing.B) {
	wasm := guest(b, "agent")
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	if err := sandbox.InstantiateHostForBench(ctx, r); err != nil {
		b.Fatal(err)
	}
	cm, _, err := sandbox.Validate(ctx, r, wasm)
	if err != nil {
		b.Fatal(err)
	}
	var ds []time.Duration
	for b.Loop() {
		t0 := time.Now()
		m, err := r.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithName("").WithStartFunctions("_initialize"))
		if err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(t0))
		m.Close(ctx)
	}
	percentiles(b, ds)
}

// BenchmarkIdleMemory: heap per agent with a live instance, and per
// parked agent.
func BenchmarkIdleMemory(b *testing.B) {
	const agents = 20
	e := startB(b)
	wasm := guest(b, "agent")
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	for i := range agents {
		id := fmt.Sprintf("a%d", i)
		e.register(id, "idle", nil)
		e.deploy(id, wasm)
	}
	base := heap()
	for i := range agents {
		e.startAgent(fmt.Sprintf("a%d", i))
	}
	for i := range agents {
		id := fmt.Sprintf("a%d", i)
		waitForB(b, func() bool { return e.n.Sandbox.Ticks(id) >= 1 })
	}
	live := heap()
	for i := range agents {
		e.n.Sandbox.Park(fmt.Sprintf("a%d", i))
	}
	parked := heap()
	for b.Loop() {
	}
	b.ReportMetric(float64(int64(live)-int64(base))/agents/1024, "KiB/live-agent")
	b.ReportMetric(float64(int64(parked)-int64(base))/agents/1024, "KiB/parked-agent")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkHostCallOverhead: an invoke through the host ABI (a guest tick
// making 100) against the same gateway.Invoke called directly.
func BenchmarkHostCallOverhead(b *testing.B) {
	const perTick = 100
	e := startB(b)
	e.register("a1", "bench", map[string]any{"timeout_ms": 60000, "max_host_calls": 10000})
	gw := e.n.Server.Gateway()
	e.deploy("a1", guest(b, "agent"))
	e.startAgent("a1")
	waitForB(b, func() bool { return e.n.Sandbox.Ticks("a1") >= 1 })
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			rep := gw.Invoke(context.Background(), gateway.Call{Agent: "a1", Action: "kernel.audit.query", Body: []byte(`{"input":{"limit":1}}`)})
			if rep.Resp == nil || rep.Resp.Decision != api.Allow {
				b.Fatalf("%+v", rep)
			}
		}
	})
	b.Run("host-call", func(b *testing.B) {
		n := 0
		for b.Loop() {
			n++
			before := e.n.Sandbox.Ticks("a1")
			if err := e.n.Sandbox.Send("a1", []byte(`{}`)); err != nil {
				b.Fatal(err)
			}
			waitForB(b, func() bool { return e.n.Sandbox.Ticks("a1") > before })
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*perTick), "ns/invoke")
	})
}

// BenchmarkHostCallABI: the ABI's own cost, a kv_get (guest to host,
// a replica read, the value copied back) measured over 1,000 per tick.
func BenchmarkHostCallABI(b *testing.B) {
	e := startB(b)
	e.register("a1", "abi", map[string]any{"max_host_calls": 10000})
	e.deploy("a1", guest(b, "agent"))
	e.startAgent("a1")
	waitForB(b, func() bool { return e.n.Sandbox.Ticks("a1") >= 1 })
	n := 0
	for b.Loop() {
		n++
		before := e.n.Sandbox.Ticks("a1")
		if err := e.n.Sandbox.Send("a1", []byte(`{}`)); err != nil {
			b.Fatal(err)
		}
		waitForB(b, func() bool { return e.n.Sandbox.Ticks("a1") > before })
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*1000), "ns/host-call")
}

// BenchmarkRunawayStop: how long after its deadline a spinning tick is
// stopped (the target: ≤ 20 ms).
func BenchmarkRunawayStop(b *testing.B) {
	const timeout = 100 * time.Millisecond
	e := startWith(b, 1<<20)
	e.register("a1", "loop", map[string]any{"timeout_ms": 100})
	e.deploy("a1", guest(b, "agent"))
	e.startAgent("a1")
	var ds []time.Duration
	for b.Loop() {
		waitForB(b, func() bool { return e.n.Sandbox.Ticks("a1") >= 1 && !e.n.Sandbox.Running("a1") })
		if err := e.n.Sandbox.Send("a1", []byte(`{}`)); err != nil {
			waitForB(b, func() bool { return e.n.Sandbox.Send("a1", []byte(`{}`)) == nil })
		}
		waitForB(b, func() bool { return e.n.Sandbox.Running("a1") })
		waitForB(b, func() bool { return !e.n.Sandbox.Running("a1") })
		ds = append(ds, e.n.Sandbox.LastCall("a1")-timeout)
		// The crash restarts it with a start tick; wait for that one.
		before := e.n.Sandbox.Ticks("a1")
		waitForB(b, func() bool { return e.n.Sandbox.Ticks("a1") > before })
	}
	percentiles(b, ds)
}
