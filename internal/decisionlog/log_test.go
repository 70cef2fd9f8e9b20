package decisionlog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/engine"
	"github.com/aibos/kernel/internal/engine/enginetest"
)

func open(t testing.TB, cfg Config) *Log {
	t.Helper()
	l, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func decision(i int) *api.Decision {
	return &api.Decision{Decision: api.Allow, Version: uint64(i%3 + 1), Revision: uint64(i + 10),
		Reasons: []api.Reason{{Policy: "p", Rule: fmt.Sprint("r", i), Effect: api.Allow}}}
}

func scanAll(t testing.TB, l *Log, since time.Time) []Record {
	t.Helper()
	var out []Record
	if err := l.Scan(since, func(r Record) error { out = append(out, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRecordsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	l := open(t, Config{Dir: dir, SegmentBytes: 4 << 10})
	for i := range 100 {
		l.Record(enginetest.Request(enginetest.Action(i%20, i)), decision(i))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = open(t, Config{Dir: dir, SegmentBytes: 4 << 10})
	l.Record(enginetest.Request("last.one"), decision(100))
	recs := scanAll(t, l, time.Time{})
	if len(recs) != 101 {
		t.Fatalf("got %d records, want 101", len(recs))
	}
	segs, _ := l.segments()
	if len(segs) < 3 {
		t.Errorf("got %d segments of 4 KiB for 101 records; want several", len(segs))
	}
	for i, r := range recs[:100] {
		if want := enginetest.Action(i%20, i); r.Request.Action.Name != want || r.Rule != fmt.Sprint("p/r", i) ||
			r.Revision != uint64(i+10) || r.Decision != api.Allow || r.Request.Subject.ID != "agent-42" {
			t.Fatalf("record %d = %+v, want action %s", i, r, want)
		}
	}
	if recs[100].Request.Action.Name != "last.one" {
		t.Errorf("last record is %q", recs[100].Request.Action.Name)
	}
	if st := l.Stats(); st.Written != 1 || st.Dropped != 0 {
		t.Errorf("stats after reopen = %+v", st)
	}
}

func TestTornTailIsTruncated(t *testing.T) {
	dir := t.TempDir()
	l := open(t, Config{Dir: dir})
	for i := range 10 {
		l.Record(enginetest.Request("a.b"), decision(i))
	}
	l.Close()
	segs, _ := l.segments()
	if len(segs) != 1 {
		t.Fatalf("%d segments", len(segs))
	}
	path := segs[0].path
	info, _ := os.Stat(path)
	// Tear the last record: cut it short and add garbage.
	os.Truncate(path, info.Size()-7)
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.Write([]byte{1, 2, 3})
	f.Close()

	l = open(t, Config{Dir: dir})
	if got := len(scanAll(t, l, time.Time{})); got != 9 {
		t.Fatalf("after a torn tail: %d records, want 9", got)
	}
	after, _ := os.Stat(path)
	if after.Size() >= info.Size()-7 {
		t.Errorf("segment not truncated: %d bytes", after.Size())
	}
	l.Record(enginetest.Request("a.b"), decision(10))
	if got := len(scanAll(t, l, time.Time{})); got != 10 {
		t.Fatalf("after appending: %d records, want 10", got)
	}
}

func TestSamplingRate(t *testing.T) {
	for _, rate := range []float64{1, 0.5, 0.1, 0.01, 0.003} {
		t.Run(fmt.Sprint(rate), func(t *testing.T) {
			l := open(t, Config{Dir: t.TempDir(), SampleRate: rate})
			req := enginetest.Request("a.b")
			const n = 10_000
			for i := range n {
				l.Record(req, decision(i))
			}
			got := len(scanAll(t, l, time.Time{}))
			// Counter-based sampling keeps exactly floor(n*rate).
			if want := int(float64(n) * rate); got < want-1 || got > want+1 {
				t.Errorf("rate %v: %d of %d recorded, want %d", rate, got, n, want)
			}
		})
	}
}

func TestScanSinceAndStop(t *testing.T) {
	var clock fakeClock
	clock.set(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	l := open(t, Config{Dir: t.TempDir(), Now: clock.now, SegmentBytes: 1 << 10})
	for i := range 50 {
		clock.add(time.Minute)
		l.Record(enginetest.Request("a.b"), decision(i))
	}
	recs := scanAll(t, l, clock.now().Add(-10*time.Minute))
	if len(recs) != 11 {
		t.Errorf("since 10 minutes: %d records, want 11", len(recs))
	}
	stop := errors.New("stop")
	n := 0
	if err := l.Scan(time.Time{}, func(Record) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Errorf("scan stopped with %v after %d", err, n)
	}
}

func TestRetentionDeletesWholeSegments(t *testing.T) {
	var clock fakeClock
	clock.set(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	dir := t.TempDir()
	l := open(t, Config{Dir: dir, Now: clock.now, SegmentBytes: 1, Retention: time.Hour})
	for i := range 5 {
		clock.add(30 * time.Minute)
		l.Record(enginetest.Request("a.b"), decision(i))
		l.Flush()
	}
	l.Close()
	// Segments began at +30m ... +150m; now is +150m, the cutoff +90m: the
	// segments of +30m and +60m are wholly older.
	l = open(t, Config{Dir: dir, Now: clock.now, Retention: time.Hour})
	files, _ := filepath.Glob(filepath.Join(dir, "*"+segmentSuffix))
	if len(files) != 3 {
		t.Errorf("%d segments left, want 3: %v", len(files), files)
	}
	if got := len(scanAll(t, l, time.Time{})); got != 3 {
		t.Errorf("%d records left, want 3", got)
	}
}

func TestFullQueueCountsDrops(t *testing.T) {
	for _, rate := range []float64{1, 0.5} {
		l := open(t, Config{Dir: t.TempDir(), SampleRate: rate, QueueLen: 1, FullWait: time.Millisecond})
		// Stop the writer's consumption by holding its queue: fill it
		// after closing, so nothing drains.
		l.Close()
		for i := range 20 {
			l.Record(enginetest.Request("a.b"), decision(i))
		}
		st := l.Stats()
		if st.Recorded+st.Dropped != uint64(20*rate) || st.Dropped == 0 {
			t.Errorf("rate %v: %+v", rate, st)
		}
	}
}

// fakeClock is a clock the test moves; the writer goroutine reads it.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *fakeClock) add(d time.Duration) { c.ns.Add(int64(d)) }

// Record encodes at once: changing the request or the decision after it
// returns changes nothing logged.
func TestRecordCopies(t *testing.T) {
	l := open(t, Config{Dir: t.TempDir()})
	req := enginetest.Request("a.b")
	d := decision(7)
	l.Record(req, d)
	req.Action.Name = "changed"
	req.Subject.ID = "someone-else"
	req.Subject.Properties["tier"] = "free"
	req.Context["amount"] = 1e9
	d.Reasons[0].Rule = "changed"
	d.Revision = 99
	recs := scanAll(t, l, time.Time{})
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	r := recs[0]
	if r.Request.Action.Name != "a.b" || r.Request.Subject.ID != "agent-42" ||
		r.Request.Subject.Properties["tier"] != "pro" || r.Request.Context["amount"] != 250.0 ||
		r.Rule != "p/r7" || r.Revision != 17 {
		t.Errorf("logged %+v, changed after Record", r)
	}
}

// Flush returns once every record queued before it is written, in order,
// across many chunks of the queue.
func TestFlushSeesAllInOrder(t *testing.T) {
	dir := t.TempDir()
	l := open(t, Config{Dir: dir, FsyncInterval: time.Hour})
	const n = 2000 // several chunks of the queue, fewer than a batch
	for i := range n {
		l.Record(enginetest.Request(enginetest.Action(i%20, i)), decision(i))
	}
	l.Flush()
	if st := l.Stats(); st.Recorded != n || st.Written != n || st.Dropped != 0 || st.Failed != 0 {
		t.Fatalf("stats after Flush = %+v", st)
	}
	// Read the segment without Scan, which flushes itself.
	files, _ := filepath.Glob(filepath.Join(dir, "*"+segmentSuffix))
	var recs []Record
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		readSegment(data, time.Time{}, func(r Record) error { recs = append(recs, r); return nil })
	}
	if len(recs) != n {
		t.Fatalf("%d records written, want %d", len(recs), n)
	}
	for i, r := range recs {
		if r.Request.Action.Name != enginetest.Action(i%20, i) || r.Revision != uint64(i+10) {
			t.Fatalf("record %d is %s revision %d", i, r.Request.Action.Name, r.Revision)
		}
	}
}

// A request too large to log is counted failed at Record, not queued.
func TestOversizedRecordFails(t *testing.T) {
	l := open(t, Config{Dir: t.TempDir()})
	big := enginetest.Request("a.b")
	big.Context["blob"] = strings.Repeat("x", maxRecordSize)
	l.Record(big, decision(0))
	l.Record(enginetest.Request("a.c"), decision(1))
	recs := scanAll(t, l, time.Time{})
	if len(recs) != 1 || recs[0].Request.Action.Name != "a.c" {
		t.Fatalf("%d records: %+v", len(recs), recs)
	}
	if st := l.Stats(); st.Recorded != 1 || st.Failed != 1 || st.Written != 1 {
		t.Errorf("stats = %+v", st)
	}
}

// ruleParts renders the rule as engine.DeterminingRule does.
func TestRulePartsIsDeterminingRule(t *testing.T) {
	for _, rs := range [][]api.Reason{nil, {}, {{Policy: "p", Rule: "r"}, {Policy: "q", Rule: "s"}},
		{{Layer: "platform", Message: "frozen"}}, {{Message: "no policy allows"}}, {{Policy: "p"}}} {
		a, sep, b := ruleParts(rs)
		if got, want := a+sep+b, engine.DeterminingRule(rs); got != want {
			t.Errorf("%+v: %q, want %q", rs, got, want)
		}
	}
}

// Records from many goroutines, some larger than a chunk of the queue,
// are all written, each goroutine's in its order; each one's Flush sees
// its own records written.
func TestConcurrentRecordAndFlush(t *testing.T) {
	l := open(t, Config{Dir: t.TempDir(), SegmentBytes: 256 << 10, FullWait: time.Minute})
	const workers, n = 4, 500
	done := make(chan error)
	for w := range workers {
		go func() {
			for i := range n {
				req := enginetest.Request(fmt.Sprintf("w%d.a%d", w, i))
				if i%100 == 7 {
					req.Context["blob"] = strings.Repeat("y", chunkSize+i)
				}
				l.Record(req, decision(i))
				if i%50 == 0 {
					l.Flush()
					if st := l.Stats(); st.Written < uint64(i+1) {
						done <- fmt.Errorf("worker %d: after Flush of %d records, %d written", w, i+1, st.Written)
						return
					}
				}
			}
			done <- nil
		}()
	}
	for range workers {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	next := make([]int, workers)
	for _, r := range scanAll(t, l, time.Time{}) {
		var w, i int
		if _, err := fmt.Sscanf(r.Request.Action.Name, "w%d.a%d", &w, &i); err != nil || i != next[w] {
			t.Fatalf("record %q after %d of worker %d (%v)", r.Request.Action.Name, next[w], w, err)
		}
		next[w]++
	}
	for w, k := range next {
		if k != n {
			t.Errorf("worker %d: %d records, want %d", w, k, n)
		}
	}
}

// TestRecordJSON: a request recorded as the bytes it was decoded from
// reads back as the same record as the request encoded again, its
// min_revision and explain dropped as Record drops them.
func TestRecordJSON(t *testing.T) {
	l := open(t, Config{Dir: t.TempDir(), SampleRate: 1})
	raw := []byte(` { "subject": {"type":"agent","id":"a-1","properties":{"tenant":"t1","n":[1,2.5,"x"]}},
	  "action":{"name":"payments.refund"}, "resource":{"type":"invoice","id":"i-9"},
	  "context":{"amount":10,"env":"prod"}, "min_revision": 7, "explain": true } `)
	req, err := api.DecodeCheckRequest(raw)
	if err != nil {
		t.Fatal(err)
	}
	l.Record(req, decision(1))
	l.RecordJSON(req, raw, decision(1))
	l.Flush()
	recs := scanAll(t, l, time.Time{})
	if len(recs) != 2 {
		t.Fatalf("%d records", len(recs))
	}
	recs[1].Time = recs[0].Time
	if !reflect.DeepEqual(recs[0], recs[1]) || recs[1].Request.MinRevision != 0 || recs[1].Request.Explain {
		t.Fatalf("encoded %+v\nraw     %+v", recs[0], recs[1])
	}
	if recs[1].Request.Subject.Properties["tenant"] != "t1" {
		t.Fatalf("raw record %+v", recs[1])
	}
}
