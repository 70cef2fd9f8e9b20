package audit

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"
)

// BenchmarkAppend measures Append from parallel callers, the decision
// path's cost. ns/op is the caller's cost, including any wait for room in
// the queue; rec/s is what the writer sustained, counted to the end of
// Close (everything written and synced); blocked is the share of appends
// that waited.
func BenchmarkAppend(b *testing.B) {
	l, err := Open(Config{Dir: b.TempDir(), Node: "n1"})
	if err != nil {
		b.Fatal(err)
	}
	// Built beforehand: the records' construction is the caller's, not
	// the log's. The writer only reads them, so they are appended again.
	recs := make([]*Record, 1024)
	for i := range recs {
		recs[i] = decision(i)
	}
	b.ReportAllocs()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.Append(recs[i%len(recs)])
			i++
		}
	})
	b.StopTimer()
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	st := l.Stats()
	b.ReportMetric(float64(st.Written)/time.Since(start).Seconds(), "rec/s")
	b.ReportMetric(float64(st.Blocked)/float64(b.N), "blocked/op")
}

// BenchmarkAppendCaller is Append's cost on the caller alone, from
// GOMAXPROCS parallel callers: in rounds of up to 2^20 appends the writer
// is held (a lock in its batch hook), so callers contend only with each
// other for the queue, never wait for room and share no CPU with the
// writer; between rounds, untimed, the writer drains the queue.
func BenchmarkAppendCaller(b *testing.B) {
	const round = 1 << 20
	var hold sync.Mutex
	l, err := Open(Config{Dir: b.TempDir(), QueueSize: round + 1, beforeBatch: func() { hold.Lock(); hold.Unlock() }})
	if err != nil {
		b.Fatal(err)
	}
	r := decision(1)
	procs := runtime.GOMAXPROCS(0)
	b.ReportAllocs()
	b.StopTimer()
	for done := 0; done < b.N; {
		n := min(round, b.N-done)
		hold.Lock()
		var wg sync.WaitGroup
		b.StartTimer()
		for p := range procs {
			wg.Go(func() {
				for i := p; i < n; i += procs {
					l.Append(r)
				}
			})
		}
		wg.Wait()
		b.StopTimer()
		hold.Unlock()
		l.flush()
		done += n
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	if st := l.Stats(); st.Blocked > 0 {
		b.Fatalf("%d appends waited", st.Blocked)
	}
}

// BenchmarkAppendSync measures AppendSync from 64 callers per CPU, as
// concurrent invocations would: each returns after its record is synced;
// group commit shares the fsyncs.
func BenchmarkAppendSync(b *testing.B) {
	l, err := Open(Config{Dir: b.TempDir(), Node: "n1"})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	b.ReportAllocs()
	b.SetParallelism(64)
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		i := 0
		for pb.Next() {
			r := decision(i)
			r.Kind = KindInvocation
			if _, err := l.AppendSync(ctx, r); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	b.StopTimer()
	st := l.Stats()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "rec/s")
	b.ReportMetric(float64(b.N)/float64(max(st.Fsyncs, 1)), "rec/fsync")
}

// BenchmarkEncode is the writer's work per record on one core, without
// I/O: JSON body, SHA-256 chain, CRC-32C.
func BenchmarkEncode(b *testing.B) {
	r := decision(1)
	buf := make([]byte, 0, 1<<20)
	var chain [32]byte
	b.ReportAllocs()
	size := 0
	for i := 0; b.Loop(); i++ {
		if len(buf) > 1<<20-1024 {
			buf = buf[:0]
		}
		start := len(buf)
		buf = append(buf, zeros[:]...)
		buf = appendBody(buf, r, "n1", nil, nil, nil, false)
		buf, chain, _ = sealFrame(buf, start, chain, uint64(i), 1)
		size = len(buf) - start
	}
	b.ReportMetric(float64(size), "B/rec")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rec/s")
}

// BenchmarkBatchRecords is the audit log's cost of a batch request's 100
// decisions, written and synced, as one group frame (AppendGroup, what
// the decision point does) or as 100 frames (AppendAll): the caller and the
// writer together, per decision, until Close has written them all.
func BenchmarkBatchRecords(b *testing.B) {
	cs := checks(100)
	for _, mode := range []string{"group", "frames"} {
		b.Run(mode, func(b *testing.B) {
			l, err := Open(Config{Dir: b.TempDir(), Node: "n1"})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			start := time.Now()
			for b.Loop() {
				if mode == "group" {
					l.AppendGroup(start, cs)
					continue
				}
				rs := make([]*Record, len(cs))
				for i := range cs {
					rs[i] = &Record{Time: start, Kind: KindDecision, Decision: cs[i].Decision, Version: cs[i].Version, Check: &cs[i]}
				}
				l.AppendAll(rs)
			}
			if err := l.Close(); err != nil {
				b.Fatal(err)
			}
			el := time.Since(start)
			b.ReportMetric(float64(el.Nanoseconds())/float64(100*b.N), "ns/decision")
		})
	}
}
