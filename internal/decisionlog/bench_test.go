package decisionlog

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/engine/enginetest"
)

// BenchmarkAppendFrame is the work per logged decision of encoding its
// frame: the request encoded, or ("raw") the JSON it was decoded from
// copied.
func BenchmarkAppendFrame(b *testing.B) {
	req := enginetest.Request("ns01.v002")
	raw, err := json.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		raw  []byte
	}{{"encoded", nil}, {"raw", raw}} {
		b.Run(bc.name, func(b *testing.B) {
			buf := make([]byte, 0, 1<<20)
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if buf, err = appendFrameParts(buf[:0], time.Unix(1, 0), req, bc.raw, api.Allow, "p", "/", "r", 1, 2); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRecord is the caller's cost of Record with SampleRate 1 (the
// writer running on its own goroutine): what a decision pays to be logged.
// "raw" is RecordJSON of the same request with the JSON it was decoded
// from, as the server records a check.
func BenchmarkRecord(b *testing.B) {
	req := enginetest.Request("ns01.v002")
	raw, err := json.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("encoded", func(b *testing.B) { benchRecord(b, req, nil) })
	b.Run("raw", func(b *testing.B) { benchRecord(b, req, raw) })
}

func benchRecord(b *testing.B, req *api.CheckRequest, raw []byte) {
	l, err := Open(Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	d := &api.Decision{Decision: api.Allow, Version: 1, Revision: 2,
		Reasons: []api.Reason{{Policy: "p", Rule: "r", Effect: api.Allow}}}
	b.ReportAllocs()
	for b.Loop() {
		l.RecordJSON(req, raw, d)
	}
	b.StopTimer()
	l.Flush()
	st := l.Stats()
	b.ReportMetric(float64(st.Dropped)/float64(st.Recorded+st.Dropped), "dropped/op")
}

// BenchmarkRecordWritten is Record with SampleRate 1 over distinct
// requests (as the server decodes each into its own value), until every
// record is written: the caller's and the writer's cost together.
func BenchmarkRecordWritten(b *testing.B) {
	l, err := Open(Config{Dir: b.TempDir(), SegmentBytes: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	reqs := make([]*api.CheckRequest, 1<<14)
	for i := range reqs {
		reqs[i] = enginetest.Request(enginetest.Action(i%20, i))
	}
	d := &api.Decision{Decision: api.Allow, Version: 1, Revision: 2,
		Reasons: []api.Reason{{Policy: "p", Rule: "r", Effect: api.Allow}}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		l.Record(reqs[i%len(reqs)], d)
	}
	l.Flush()
	b.StopTimer()
	st := l.Stats()
	b.ReportMetric(float64(st.Dropped)/float64(st.Recorded+st.Dropped), "dropped/op")
}
