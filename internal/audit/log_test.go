package audit

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
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

// decision is a typical decision record (~250 bytes of JSON).
func decision(i int) *Record {
	return &Record{
		Kind: KindDecision, Agent: fmt.Sprintf("agent-%d", i%7), AgentVersion: "1.4.2", Tenant: "acme",
		Subject: "agent:agent-42", Action: fmt.Sprintf("crm.read.%d", i%5), Resource: "customer:c-1001",
		Decision: []string{"allow", "deny"}[i%2], Version: 17, Rules: []string{"tenant-acme/allow-crm-read"},
		DurationNS: 812,
	}
}

func queryAll(t testing.TB, l *Log, f Filter) []Record {
	t.Helper()
	recs, err := l.Query(f)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func mustVerify(t testing.TB, dir string) Report {
	t.Helper()
	rep, err := Verify(dir)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	at := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	l := open(t, Config{Dir: dir, Node: "n1", Now: func() time.Time { return at }})
	full := &Record{
		Kind: KindInvocation, Agent: "a1", AgentVersion: "2", Tenant: "acme", Subject: "agent:a1",
		Action: "payments.refund", Resource: "order:o-9", Decision: "allow", Version: 3,
		Rules: []string{"p/r1", "p/r2"}, InvocationID: "inv-1", ApprovalID: "ap-1", Status: "ok",
		Error: "line1\nline2 \"quoted\" \u2028 é", Cost: 0.125, DurationNS: 1500, ArgsDigest: "sha256:ab",
		Args: json.RawMessage(`{"amount": 12.5,
 "currency": "EUR"}`), Result: json.RawMessage(`[1,2,3]`), By: "alice", Reason: "ticket 7",
		Time: at.Add(-time.Second),
	}
	seq, err := l.AppendSync(context.Background(), full)
	if err != nil || seq != 1 {
		t.Fatalf("AppendSync = %d, %v", seq, err)
	}
	l.Append(&Record{Kind: KindKill})
	recs := queryAll(t, l, Filter{})
	if len(recs) != 2 {
		t.Fatalf("%d records", len(recs))
	}
	want := *full
	want.Seq, want.Node = 1, "n1"
	want.Args = json.RawMessage(`{"amount":12.5,"currency":"EUR"}`)
	got := recs[0]
	if !got.Time.Equal(want.Time) {
		t.Errorf("time %v, want %v", got.Time, want.Time)
	}
	got.Time, want.Time = time.Time{}, time.Time{}
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if !bytes.Equal(gj, wj) {
		t.Errorf("record\n got %s\nwant %s", gj, wj)
	}
	if k := recs[1]; k.Seq != 2 || k.Kind != KindKill || !k.Time.Equal(at) || k.Node != "n1" {
		t.Errorf("second record %+v", k)
	}
	if st := l.Stats(); st.Written != 2 || st.Fsyncs == 0 || st.Segments != 1 {
		t.Errorf("stats %+v", st)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if rep := mustVerify(t, dir); !rep.OK() || rep.Records != 2 || rep.FirstSeq != 1 || rep.LastSeq != 2 || len(rep.Head) != 64 {
		t.Errorf("verify %+v", rep)
	}
	if _, err := l.AppendSync(context.Background(), decision(0)); !errors.Is(err, ErrClosed) {
		t.Errorf("AppendSync after Close: %v", err)
	}
}

func TestRestartContinuesSeqAndChain(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, SegmentBytes: 2 << 10}
	l := open(t, cfg)
	for i := range 50 {
		l.Append(decision(i))
	}
	l.Close()
	l = open(t, cfg)
	seq, err := l.AppendSync(context.Background(), decision(50))
	if err != nil || seq != 51 {
		t.Fatalf("after restart: seq %d, %v", seq, err)
	}
	for i := 51; i < 60; i++ {
		l.Append(decision(i))
	}
	recs := queryAll(t, l, Filter{Limit: 1000})
	if len(recs) != 60 {
		t.Fatalf("%d records", len(recs))
	}
	for i, r := range recs {
		if r.Seq != uint64(i+1) || r.Action != decision(i).Action {
			t.Fatalf("record %d = seq %d action %s", i, r.Seq, r.Action)
		}
	}
	l.Close()
	rep := mustVerify(t, dir)
	if !rep.OK() || rep.Records != 60 || rep.Segments < 4 {
		t.Fatalf("verify after restart: %+v", rep)
	}
}

// writeLog writes n decisions in segments of about segBytes and closes.
func writeLog(t testing.TB, dir string, n int, segBytes int64) {
	t.Helper()
	l := open(t, Config{Dir: dir, SegmentBytes: segBytes})
	for i := range n {
		l.Append(decision(i))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func segFiles(t testing.TB, dir string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*"+segSuffix))
	return files
}

// frameOffsets returns the offset and seq of every frame of a segment.
func frameOffsets(t testing.TB, path string) (offs []int, seqs []uint64, data []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	off := segHeaderSize
	scanSegment(data, func(fr frame) bool {
		offs, seqs = append(offs, off), append(seqs, fr.seq)
		off += frameHeader + len(fr.payload)
		return true
	})
	return offs, seqs, data
}

func TestTornTailIsTruncated(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 10, 0)
	path := segFiles(t, dir)[0]
	info, _ := os.Stat(path)
	// The head says 10; a crash while writing seq 11 leaves a torn frame.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	var torn []byte
	torn = append(torn, zeros[:]...)
	torn = appendBody(torn, decision(10), "", nil, nil, nil, false)
	var h [32]byte
	torn, _, _ = sealFrame(torn, 0, h, 11, 1)
	f.Write(torn[:len(torn)-9])
	f.Close()
	rep := mustVerify(t, dir)
	if !rep.OK() || len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "incomplete last record") {
		t.Fatalf("torn tail before Open: %+v", rep)
	}

	l := open(t, Config{Dir: dir})
	if after, _ := os.Stat(path); after.Size() != info.Size() {
		t.Errorf("segment is %d bytes after recovery, want %d", after.Size(), info.Size())
	}
	seq, err := l.AppendSync(context.Background(), decision(10))
	if err != nil || seq != 11 {
		t.Fatalf("after a torn tail: seq %d, %v", seq, err)
	}
	l.Close()
	if rep := mustVerify(t, dir); !rep.OK() || rep.Records != 11 || len(rep.Notes) != 0 {
		t.Fatalf("verify after recovery: %+v", rep)
	}
}

func TestTamperIsDetected(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, dir string) (seg string, seq uint64)
		want   string
	}{
		{"flip a byte", func(t *testing.T, dir string) (string, uint64) {
			path := segFiles(t, dir)[1]
			offs, seqs, data := frameOffsets(t, path)
			data[offs[2]+frameReserve+5] ^= 0x20
			os.WriteFile(path, data, 0o644)
			return filepath.Base(path), seqs[2]
		}, "checksum"},
		{"modify and fix the checksum", func(t *testing.T, dir string) (string, uint64) {
			path := segFiles(t, dir)[1]
			offs, seqs, data := frameOffsets(t, path)
			fr, n, _ := nextFrame(data[offs[1]:])
			i := bytes.Index(fr.body, []byte("deny"))
			if i < 0 {
				i = bytes.Index(fr.body, []byte("allow"))
			}
			fr.body[i] = 'X'
			putCRC(data[offs[1] : offs[1]+n])
			os.WriteFile(path, data, 0o644)
			return filepath.Base(path), seqs[1]
		}, "chain value does not match"},
		{"delete a record", func(t *testing.T, dir string) (string, uint64) {
			path := segFiles(t, dir)[1]
			offs, seqs, data := frameOffsets(t, path)
			data = append(data[:offs[2]:offs[2]], data[offs[3]:]...)
			os.WriteFile(path, data, 0o644)
			return filepath.Base(path), seqs[3]
		}, "missing"},
		{"swap two records", func(t *testing.T, dir string) (string, uint64) {
			path := segFiles(t, dir)[1]
			offs, seqs, data := frameOffsets(t, path)
			a, b, c := data[offs[1]:offs[2]], data[offs[2]:offs[3]], data[offs[3]:]
			out := append(append(append(append([]byte{}, data[:offs[1]]...), b...), a...), c...)
			os.WriteFile(path, out, 0o644)
			return filepath.Base(path), seqs[2]
		}, "seq"},
		{"insert a record", func(t *testing.T, dir string) (string, uint64) {
			path := segFiles(t, dir)[1]
			offs, seqs, data := frameOffsets(t, path)
			dup := data[offs[1]:offs[2]]
			out := append(append(append([]byte{}, data[:offs[2]]...), dup...), data[offs[2]:]...)
			os.WriteFile(path, out, 0o644)
			return filepath.Base(path), seqs[1]
		}, "reordered or duplicated"},
		{"remove a middle segment", func(t *testing.T, dir string) (string, uint64) {
			files := segFiles(t, dir)
			_, seqs, _ := frameOffsets(t, files[1])
			os.Remove(files[1])
			return filepath.Base(files[2]), seqs[0]
		}, "are missing"},
		{"truncate the tail", func(t *testing.T, dir string) (string, uint64) {
			files := segFiles(t, dir)
			last := files[len(files)-1]
			offs, seqs, _ := frameOffsets(t, last)
			os.Truncate(last, int64(offs[len(offs)-1]))
			return headName, seqs[len(seqs)-1]
		}, "tail truncated"},
		{"remove the last segment", func(t *testing.T, dir string) (string, uint64) {
			files := segFiles(t, dir)
			_, seqs, _ := frameOffsets(t, files[len(files)-2])
			os.Remove(files[len(files)-1])
			return headName, seqs[len(seqs)-1] + 1
		}, "tail truncated"},
		{"rewrite the chain from a record on", func(t *testing.T, dir string) (string, uint64) {
			return rewriteFrom(t, dir)
		}, "differs from the head file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeLog(t, dir, 60, 2<<10)
			if n := len(segFiles(t, dir)); n < 5 {
				t.Fatalf("%d segments", n)
			}
			seg, seq := tc.tamper(t, dir)
			rep := mustVerify(t, dir)
			if rep.OK() {
				t.Fatalf("not detected: %+v", rep)
			}
			t.Log(rep.Problems)
			p := rep.Problems[0]
			if p.Segment != seg || p.Seq != seq || !strings.Contains(p.Message, tc.want) {
				t.Fatalf("first problem %v; want segment %s seq %d with %q (all: %v)", p, seg, seq, tc.want, rep.Problems)
			}
			if seg != headName && p.Offset == 0 && !strings.Contains(tc.name, "segment") {
				t.Errorf("no offset: %v", p)
			}
		})
	}
}

// putCRC recomputes the checksum of a frame whose contents were changed.
func putCRC(fr []byte) {
	binary.LittleEndian.PutUint32(fr[4:], crc32.Checksum(fr[8:], crcTable))
}

// rewriteFrom changes a record of the last segment and recomputes the
// chain to the end, as an attacker without the head file would: only the
// head file shows it.
func rewriteFrom(t *testing.T, dir string) (string, uint64) {
	files := segFiles(t, dir)
	path := files[len(files)-1]
	offs, seqs, data := frameOffsets(t, path)
	h, _ := parseSegHeader(data)
	chain := h.prev
	for i, off := range offs {
		fr, n, _ := nextFrame(data[off:])
		if i == 0 {
			fr.body[bytes.IndexByte(fr.body, 'a')] = 'b'
		}
		chain = chainOf(chain, fr.payload)
		copy(data[off+8:off+40], chain[:])
		putCRC(data[off : off+n])
	}
	os.WriteFile(path, data, 0o644)
	return headName, seqs[len(seqs)-1]
}

func TestRetention(t *testing.T) {
	var clock fakeClock
	clock.set(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	dir := t.TempDir()
	cfg := Config{Dir: dir, Now: clock.now, SegmentBytes: 1, Retention: time.Hour}
	l := open(t, cfg)
	for i := range 5 {
		clock.add(30 * time.Minute)
		if _, err := l.AppendSync(context.Background(), decision(i)); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	// Each record has its own segment, begun at +30m ... +150m. Now is
	// +150m, the cutoff +90m: the segments of +30m and +60m are wholly
	// older (the next began at or before the cutoff).
	l = open(t, cfg)
	if n := len(segFiles(t, dir)); n != 3 {
		t.Fatalf("%d segments left, want 3", n)
	}
	recs := queryAll(t, l, Filter{})
	if len(recs) != 3 || recs[0].Seq != 3 {
		t.Fatalf("records left: %d, first %+v", len(recs), recs)
	}
	if st := l.Stats(); st.Segments != 3 {
		t.Errorf("stats %+v", st)
	}
	l.Close()
	rep := mustVerify(t, dir)
	if !rep.OK() || rep.FirstSeq != 3 || len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "retention") {
		t.Fatalf("verify after retention: %+v", rep)
	}
}

func TestRedaction(t *testing.T) {
	dir := t.TempDir()
	l := open(t, Config{Dir: dir, Redact: []string{"ssn", "customer.email", "items.card.number", "absent.x"}})
	r := &Record{
		Kind:   KindInvocation,
		Args:   json.RawMessage(`{"ssn":"123-45-6789","customer":{"email":"a@b.c","name":"Ann"},"items":[{"card":{"number":"4111","exp":"12/30"}},{"card":{"number":"5500"}},{"other":1}],"n":12345678901234567890}`),
		Result: json.RawMessage(`{"customer":{"email":"x@y.z"},"ok":true}`),
	}
	orig := string(r.Args)
	if _, err := l.AppendSync(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	l.Append(&Record{Kind: KindInvocation, Args: json.RawMessage(`{"plain":1}`)})
	recs := queryAll(t, l, Filter{})
	wantArgs := `{"customer":{"email":"[redacted]","name":"Ann"},"items":[{"card":{"exp":"12/30","number":"[redacted]"}},{"card":{"number":"[redacted]"}},{"other":1}],"n":12345678901234567890,"ssn":"[redacted]"}`
	if got := string(recs[0].Args); got != wantArgs {
		t.Errorf("args\n got %s\nwant %s", got, wantArgs)
	}
	if got := string(recs[0].Result); got != `{"customer":{"email":"[redacted]"},"ok":true}` {
		t.Errorf("result %s", got)
	}
	if got := strings.Join(recs[0].Redacted, " "); got != "args.ssn args.customer.email args.items.card.number result.customer.email" {
		t.Errorf("redacted %q", got)
	}
	if string(r.Args) != orig || r.Redacted != nil {
		t.Error("the caller's record was modified")
	}
	if got := string(recs[1].Args); got != `{"plain":1}` || recs[1].Redacted != nil {
		t.Errorf("untouched record: %s %v", got, recs[1].Redacted)
	}
	if _, err := Open(Config{Dir: t.TempDir(), Redact: []string{"a..b"}}); err == nil {
		t.Error("an empty path step was accepted")
	}
}

func TestBackpressureBlocksRatherThanDrops(t *testing.T) {
	release := make(chan struct{})
	var stalled atomic.Bool
	l := open(t, Config{Dir: t.TempDir(), QueueSize: 2, beforeBatch: func() {
		if stalled.CompareAndSwap(false, true) {
			<-release
		}
	}})
	l.Append(decision(0)) // taken by the writer, which stalls
	for l.Stats().QueueLen != 0 {
		time.Sleep(time.Millisecond)
	}
	l.Append(decision(1))
	l.Append(decision(2)) // the queue is full now
	done := make(chan struct{})
	go func() {
		l.Append(decision(3))
		close(done)
	}()
	for l.Stats().Blocked == 0 {
		time.Sleep(time.Millisecond)
	}
	select {
	case <-done:
		t.Fatal("Append returned on a full queue")
	default:
	}
	close(release)
	<-done
	recs := queryAll(t, l, Filter{})
	if len(recs) != 4 {
		t.Fatalf("%d records, want 4 (none dropped)", len(recs))
	}
	if st := l.Stats(); st.Blocked != 1 || st.BlockedNanos == 0 || st.Failed != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestAppendSyncIsDurable(t *testing.T) {
	dir := t.TempDir()
	l := open(t, Config{Dir: dir, FsyncInterval: time.Hour})
	for i := range 20 {
		l.Append(decision(i))
	}
	seq, err := l.AppendSync(context.Background(), &Record{Kind: KindInvocation, InvocationID: "inv-7"})
	if err != nil || seq != 21 {
		t.Fatalf("AppendSync = %d, %v", seq, err)
	}
	// A copy of the directory now is what a kill -9 would leave: no
	// drain, no Close — and the newest segment filled with zeros ahead of
	// its records, which Verify passes over and Open cuts off.
	cp := t.TempDir()
	copyDir(t, dir, cp)
	seg := segFiles(t, cp)[0]
	data, _ := os.ReadFile(seg)
	_, valid, _ := scanSegment(data, nil)
	if valid >= len(data) || !isZero(data[valid:]) {
		t.Fatalf("the live segment is %d bytes, its records %d: not filled ahead with zeros", len(data), valid)
	}
	if rep := mustVerify(t, cp); !rep.OK() || rep.LastSeq != 21 || len(rep.Notes) != 0 {
		t.Fatalf("verify the copy before Open: %+v", rep)
	}
	l2 := open(t, Config{Dir: cp})
	if info, _ := os.Stat(seg); info.Size() != int64(valid) {
		t.Fatalf("after Open the segment is %d bytes, want its records' %d", info.Size(), valid)
	}
	recs := queryAll(t, l2, Filter{InvocationID: "inv-7"})
	if len(recs) != 1 || recs[0].Seq != 21 {
		t.Fatalf("after a kill: %+v", recs)
	}
	l2.Close()
	if rep := mustVerify(t, cp); !rep.OK() || rep.LastSeq != 21 {
		t.Fatalf("verify the copy: %+v", rep)
	}
	if st := l.Stats(); st.Fsyncs == 0 {
		t.Errorf("stats %+v", st)
	}
}

func copyDir(t testing.TB, from, to string) {
	t.Helper()
	ents, _ := os.ReadDir(from)
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(to, e.Name()), data, 0o644)
	}
}

func TestFailClosed(t *testing.T) {
	l := open(t, Config{Dir: t.TempDir()})
	if _, err := l.AppendSync(context.Background(), decision(0)); err != nil {
		t.Fatal(err)
	}
	l.fail(errors.New("disk on fire"))
	_, err := l.AppendSync(context.Background(), decision(1))
	if !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("AppendSync after a failure: %v", err)
	}
	if err := l.Close(); !errors.Is(err, ErrFailed) {
		t.Errorf("Close after a failure: %v", err)
	}
}

func TestTooLargeRecordIsRefused(t *testing.T) {
	l := open(t, Config{Dir: t.TempDir()})
	big := &Record{Kind: "x", Reason: strings.Repeat("a", maxPayload)}
	if _, err := l.AppendSync(context.Background(), big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	if seq, err := l.AppendSync(context.Background(), decision(0)); err != nil || seq != 1 {
		t.Fatalf("after a refused record: %d, %v", seq, err)
	}
}

func TestQueryFiltersAndOrder(t *testing.T) {
	var clock fakeClock
	t0 := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	clock.set(t0)
	l := open(t, Config{Dir: t.TempDir(), Now: clock.now, SegmentBytes: 4 << 10})
	for i := range 100 {
		clock.add(time.Minute)
		r := decision(i)
		r.Time = clock.now()
		if i%10 == 0 {
			r.Kind, r.InvocationID = KindInvocation, fmt.Sprint("inv-", i)
		}
		l.Append(r)
	}
	seqs := func(rs []Record) string {
		var b strings.Builder
		for _, r := range rs {
			fmt.Fprint(&b, r.Seq, " ")
		}
		return strings.TrimSpace(b.String())
	}
	for _, tc := range []struct {
		name string
		f    Filter
		want string
	}{
		{"limit", Filter{Limit: 3}, "1 2 3"},
		{"desc", Filter{Limit: 3, Desc: true}, "100 99 98"},
		{"agent", Filter{Agent: "agent-3", Limit: 4}, "4 11 18 25"},
		{"action and decision", Filter{Action: "crm.read.1", Decision: "deny", Limit: 3}, "2 12 22"},
		{"kind", Filter{Kind: KindInvocation, Desc: true, Limit: 2}, "91 81"},
		{"invocation", Filter{InvocationID: "inv-50"}, "51"},
		{"since until", Filter{Since: t0.Add(90 * time.Minute), Until: t0.Add(93 * time.Minute)}, "90 91 92"},
		{"since desc", Filter{Since: t0.Add(98 * time.Minute), Desc: true}, "100 99 98"},
		{"nothing", Filter{Agent: "nobody"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := seqs(queryAll(t, l, tc.f)); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
	if _, err := l.Query(Filter{Limit: MaxLimit + 1}); !errors.Is(err, ErrBadFilter) {
		t.Errorf("limit over the maximum: %v", err)
	}
	if n := len(queryAll(t, l, Filter{})); n != DefaultLimit {
		t.Errorf("default limit: %d", n)
	}
}

func TestExport(t *testing.T) {
	dir := t.TempDir()
	l := open(t, Config{Dir: dir, SegmentBytes: 4 << 10})
	for i := range 150 {
		l.Append(decision(i))
	}
	l.Append(&Record{})
	var buf bytes.Buffer
	if err := l.Export(&buf, Filter{}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 151 {
		t.Fatalf("%d lines", len(lines))
	}
	for i, ln := range lines {
		var r Record
		if err := json.Unmarshal([]byte(ln), &r); err != nil || r.Seq != uint64(i+1) || r.Time.IsZero() {
			t.Fatalf("line %d %q: %v", i, ln, err)
		}
	}
	buf.Reset()
	if err := l.Export(&buf, Filter{Agent: "agent-2", Desc: true, Limit: 2}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(buf.String(), "\n"); got != 2 || !strings.HasPrefix(buf.String(), `{"seq":150,`) {
		t.Errorf("filtered export %q", buf.String())
	}
}

// fakeClock is a clock the test moves; the writer goroutine reads it.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *fakeClock) add(d time.Duration) { c.ns.Add(int64(d)) }

func TestOpenRefusesTruncatedLog(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 10, 0)
	path := segFiles(t, dir)[0]
	offs, _, _ := frameOffsets(t, path)
	os.Truncate(path, int64(offs[8])) // records 9 and 10, acknowledged, are gone
	_, err := Open(Config{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "seq 10") || !strings.Contains(err.Error(), "verify") {
		t.Fatalf("Open of a truncated log: %v", err)
	}
	if info, _ := os.Stat(path); info.Size() != int64(offs[8]) {
		t.Errorf("Open changed the evidence: %d bytes", info.Size())
	}
}

// A decision recorded by reference reads back like one recorded by value.
func TestCheckRecord(t *testing.T) {
	l, err := Open(Config{Dir: t.TempDir(), Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	req := &api.CheckRequest{
		Subject:  api.Entity{Type: "agent", ID: "a\"1\n"},
		Action:   api.Action{Name: "data.query"},
		Resource: api.Entity{Type: "table", ID: "orders"},
		Context:  map[string]any{"region": "eu", "n": 1e-7, "big": 1e21, "l": []any{true, nil, "x\u2028"}, "m": map[string]any{"b": 1.5, "a": "é"}},
	}
	reasons := []api.Reason{{Policy: "p", Rule: "r/1", Effect: api.Allow}, {Layer: "tenant", Effect: api.Deny}, {Policy: "q", Rule: "s", Effect: api.Allow}}
	l.Append(&Record{Kind: KindDecision, Decision: "allow", Version: 3, Check: &Check{Req: req, Reasons: reasons, Full: true}})
	l.Append(&Record{Kind: KindDecision, Decision: "deny", Check: &Check{Req: &api.CheckRequest{Subject: api.Entity{Type: "user", ID: "u"}, Action: api.Action{Name: "x"}}, Reasons: reasons[1:2]}})
	recs, err := l.Query(Filter{})
	if err != nil || len(recs) != 2 {
		t.Fatalf("%v %v", recs, err)
	}
	r := recs[0]
	want, _ := json.Marshal(req.Context)
	if r.Agent != "a\"1\n" || r.Subject != "agent:a\"1\n" || r.Resource != "table:orders" || r.Action != "data.query" ||
		!slices.Equal(r.Rules, []string{"p/r/1", "q/s"}) || string(r.Args) != string(want) {
		t.Fatalf("record %+v, args %s, want %s", r, r.Args, want)
	}
	if r := recs[1]; r.Agent != "" || r.Subject != "user:u" || r.Resource != ":" || r.Rules != nil || r.Args != nil {
		t.Fatalf("record %+v", r)
	}
}

func TestAppendAllKeepsOrderAndWaitsForRoom(t *testing.T) {
	release := make(chan struct{})
	var stalled atomic.Bool
	l := open(t, Config{Dir: t.TempDir(), QueueSize: 3, beforeBatch: func() {
		if stalled.CompareAndSwap(false, true) {
			<-release
		}
	}})
	l.Append(decision(0)) // taken by the writer, which stalls
	for l.Stats().QueueLen != 0 {
		time.Sleep(time.Millisecond)
	}
	batch := make([]*Record, 7)
	for i := range batch {
		batch[i] = decision(i + 1)
	}
	done := make(chan struct{})
	go func() {
		l.AppendAll(batch) // 3 fit; the rest wait for room
		close(done)
	}()
	for l.Stats().Blocked == 0 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	<-done
	recs := queryAll(t, l, Filter{})
	if len(recs) != 8 {
		t.Fatalf("%d records, want 8 (none dropped)", len(recs))
	}
	for i, r := range recs {
		if r.Seq != uint64(i+1) || r.Action != decision(i).Action || r.Agent != decision(i).Agent {
			t.Errorf("record %d: seq %d action %q agent %q", i, r.Seq, r.Action, r.Agent)
		}
	}
	if st := l.Stats(); st.Blocked != 1 || st.Failed != 0 {
		t.Errorf("stats %+v", st)
	}
}

// Segments are filled with zeros ahead of their records while they are
// written; a sealed segment, and every segment after Close, ends at its
// last record.
func TestSealedSegmentsHoldOnlyRecords(t *testing.T) {
	dir := t.TempDir()
	l := open(t, Config{Dir: dir, SegmentBytes: 64 << 10})
	for i := range 1000 {
		l.Append(decision(i))
	}
	if _, err := l.AppendSync(context.Background(), decision(1000)); err != nil {
		t.Fatal(err)
	}
	segs := segFiles(t, dir)
	if len(segs) < 3 {
		t.Fatalf("%d segments, want several", len(segs))
	}
	check := func(paths []string) {
		t.Helper()
		for _, p := range paths {
			data, _ := os.ReadFile(p)
			if _, valid, _ := scanSegment(data, nil); valid != len(data) {
				t.Errorf("%s: %d bytes, its records end at %d", filepath.Base(p), len(data), valid)
			}
		}
	}
	check(segs[:len(segs)-1])
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	check(segs)
	if rep := mustVerify(t, dir); !rep.OK() || rep.Records != 1001 || len(rep.Notes) != 0 {
		t.Fatalf("verify: %+v", rep)
	}
}

// checks are n decided checks, as a batch request's: agents, actions and
// decisions vary; every third keeps its context (the "full" obligation).
func checks(n int) []Check {
	cs := make([]Check, n)
	for i := range cs {
		cs[i] = Check{
			Req: &api.CheckRequest{Subject: api.Entity{Type: "agent", ID: fmt.Sprintf("agent-%d", i%7)},
				Action: api.Action{Name: fmt.Sprintf("crm.read.%d", i%5)}, Resource: api.Entity{Type: "customer", ID: fmt.Sprint(i)},
				Context: map[string]any{"i": float64(i), "ssn": "123"}},
			Reasons:  []api.Reason{{Policy: "p", Rule: fmt.Sprintf("r%d", i%3), Effect: api.Allow}},
			Full:     i%3 == 0,
			Decision: []string{"allow", "deny"}[i%2],
			Version:  uint64(7 + i%2),
		}
	}
	return cs
}

// A batch's decisions are one group frame — a frame per maxGroup of them —
// and read back as the records they would have been one by one: their
// seqs, the batch's time, subject, action, rules, redacted context; in
// both orders, exported, verified, counted, and continued after a restart.
func TestGroupRoundTrip(t *testing.T) {
	dir := t.TempDir()
	l := open(t, Config{Dir: dir, Node: "n1", Redact: []string{"ssn"}})
	at := time.Unix(1700000000, 123).UTC()
	l.Append(decision(0))
	cs := checks(maxGroup + 10)
	l.AppendGroup(at, cs)
	if _, err := l.AppendSync(context.Background(), &Record{Kind: KindInvocation, InvocationID: "inv-1"}); err != nil {
		t.Fatal(err)
	}
	n := len(cs) + 2
	recs := queryAll(t, l, Filter{Limit: MaxLimit})
	if len(recs) != n {
		t.Fatalf("%d records, want %d", len(recs), n)
	}
	for i, r := range recs[1 : n-1] {
		c := cs[i]
		want := Record{Seq: uint64(i + 2), Time: at, Node: "n1", Kind: KindDecision, Agent: c.Req.Subject.ID,
			Subject: "agent:" + c.Req.Subject.ID, Action: c.Req.Action.Name, Resource: "customer:" + c.Req.Resource.ID,
			Decision: c.Decision, Version: c.Version, Rules: []string{"p/" + c.Reasons[0].Rule}}
		if c.Full {
			want.Args = json.RawMessage(fmt.Sprintf(`{"i":%d,"ssn":"[redacted]"}`, i))
			want.Redacted = []string{"args.ssn"}
		}
		got := r
		got.Args = nil
		wantArgs := want.Args
		want.Args = nil
		if !reflect.DeepEqual(got, want) || !bytes.Equal(r.Args, wantArgs) {
			t.Fatalf("record %d:\n got %+v args %s\nwant %+v args %s", i+2, got, r.Args, want, wantArgs)
		}
	}
	if recs[n-1].InvocationID != "inv-1" || recs[n-1].Seq != uint64(n) {
		t.Fatalf("after the group: %+v", recs[n-1])
	}
	desc := queryAll(t, l, Filter{Limit: MaxLimit, Desc: true})
	for i := range desc {
		if desc[i].Seq != uint64(n-i) {
			t.Fatalf("newest first: record %d has seq %d", i, desc[i].Seq)
		}
	}
	if got := queryAll(t, l, Filter{Decision: "deny", Action: "crm.read.1"}); len(got) == 0 || got[0].Seq != 3 {
		t.Fatalf("filtered: %+v", got)
	}
	var out bytes.Buffer
	if err := l.Export(&out, Filter{}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != n || !strings.HasPrefix(lines[1], `{"seq":2,"time":"2023-11-14T22:13:20.000000123Z","node":"n1","kind":"decision"`) {
		t.Fatalf("export: %d lines, second %s", len(lines), lines[1])
	}
	if rep, err := l.Verify(); err != nil || !rep.OK() || rep.Records != n || rep.LastSeq != uint64(n) {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	if st := l.Stats(); st.Written != uint64(n) || st.Failed != 0 {
		t.Fatalf("stats %+v", st)
	}
	l.Close()
	l2 := open(t, Config{Dir: dir})
	if seq, err := l2.AppendSync(context.Background(), decision(1)); err != nil || seq != uint64(n+1) {
		t.Fatalf("after a restart: seq %d, %v", seq, err)
	}
}

// A changed byte inside a group is found, and names the group's frame.
func TestGroupTamperIsDetected(t *testing.T) {
	dir := t.TempDir()
	l := open(t, Config{Dir: dir})
	l.Append(decision(0))
	l.AppendGroup(time.Now(), checks(20))
	l.Close()
	path := segFiles(t, dir)[0]
	data, _ := os.ReadFile(path)
	i := bytes.LastIndex(data, []byte("crm.read.4"))
	data[i] = 'X'
	os.WriteFile(path, data, 0o644)
	rep := mustVerify(t, dir)
	if rep.OK() || rep.Problems[0].Seq != 2 {
		t.Fatalf("a changed group verifies: %+v", rep)
	}
}

// A group waits for room like any record, never dropped; one larger than
// the whole queue goes in once the queue is empty.
func TestGroupWaitsForRoom(t *testing.T) {
	release := make(chan struct{})
	var stalled atomic.Bool
	l := open(t, Config{Dir: t.TempDir(), QueueSize: 4, beforeBatch: func() {
		if stalled.CompareAndSwap(false, true) {
			<-release
		}
	}})
	l.Append(decision(0)) // taken by the writer, which stalls
	for l.Stats().QueueLen != 0 {
		time.Sleep(time.Millisecond)
	}
	l.AppendGroup(time.Now(), checks(3))
	done := make(chan struct{})
	go func() {
		l.AppendGroup(time.Now(), checks(10)) // over the queue: waits for it to empty
		close(done)
	}()
	for l.Stats().Blocked == 0 {
		time.Sleep(time.Millisecond)
	}
	if st := l.Stats(); st.QueueLen != 3 {
		t.Fatalf("queue holds %d records, want 3", st.QueueLen)
	}
	close(release)
	<-done
	if recs := queryAll(t, l, Filter{Limit: 100}); len(recs) != 14 || recs[13].Seq != 14 {
		t.Fatalf("%d records, want 14", len(recs))
	}
	if st := l.Stats(); st.Blocked != 1 || st.Failed != 0 || st.Written != 14 {
		t.Errorf("stats %+v", st)
	}
}

// TestWriteEarlySyncOnInterval: the writer writes records soon after they
// are queued (maxGather), whatever FsyncInterval, and syncs them once per
// interval: a stream of decisions costs one sync per interval, not one per
// write, and no record waits for its sync longer than the interval.
func TestWriteEarlySyncOnInterval(t *testing.T) {
	const interval = 700 * time.Millisecond
	l := open(t, Config{Dir: t.TempDir(), FsyncInterval: interval})
	syncs := l.Stats().Fsyncs
	start := time.Now()
	l.Append(decision(0))
	for l.Stats().Written < 1 {
		if time.Since(start) > interval/2 {
			t.Fatalf("the record is not written %v after it was queued", time.Since(start))
		}
		time.Sleep(time.Millisecond)
	}
	if l.Stats().Fsyncs != syncs {
		t.Fatalf("synced at once, not on the %v interval", interval)
	}
	for l.Stats().Fsyncs == syncs {
		if time.Since(start) > 5*interval {
			t.Fatalf("not synced %v after it was queued (interval %v)", time.Since(start), interval)
		}
		time.Sleep(time.Millisecond)
	}
	if took := time.Since(start); took < interval*9/10 {
		t.Fatalf("synced after %v, before its interval %v", took, interval)
	}

	// A stream: written as it comes, synced about once an interval.
	syncs = l.Stats().Fsyncs
	start = time.Now()
	written := l.Stats().Written
	for i := 0; time.Since(start) < 3*interval; i++ {
		l.Append(decision(i))
		time.Sleep(2 * time.Millisecond)
	}
	elapsed := time.Since(start)
	if got := l.Stats().Written - written; got == 0 {
		t.Fatal("nothing of the stream written while it ran")
	}
	if got, most := l.Stats().Fsyncs-syncs, uint64(elapsed/interval)+2; got > most {
		t.Fatalf("%d syncs in %v, want at most %d at an interval of %v", got, elapsed, most, interval)
	}
}

// Single checks queued together (AppendCheck) are one timed frame, each
// record with its own time, and read back exactly as the same checks
// appended one group each: an export of the two logs is the same bytes.
// Checks with the "full" obligation go as groups of one between them, in
// order; time filters apply record by record inside a timed frame.
func TestTimedGroupRoundTrip(t *testing.T) {
	at := time.Now().Add(-time.Minute).UTC() // within maxLag of the segment's start, as a decision's time is
	cs := checks(6)                          // 0 and 3 keep their context
	fill := func(l *Log, one func(time.Time, *Check)) {
		d := decision(0)
		d.Time = at.Add(-time.Second)
		l.Append(d)
		for l.Stats().QueueLen != 0 {
			time.Sleep(time.Millisecond) // taken by the writer
		}
		for i := range cs {
			one(at.Add(time.Duration(i)*time.Second), &cs[i])
		}
		inv := &Record{Kind: KindInvocation, InvocationID: "inv-1", Time: at.Add(10 * time.Second)}
		if _, err := l.AppendSync(context.Background(), inv); err != nil {
			t.Fatal(err)
		}
	}
	release := make(chan struct{})
	var stalled atomic.Bool
	dir := t.TempDir()
	l := open(t, Config{Dir: dir, Node: "n1", Redact: []string{"ssn"}, beforeBatch: func() {
		if stalled.CompareAndSwap(false, true) {
			<-release
		}
	}})
	go func() {
		for l.Stats().QueueLen != 7 { // the six checks and the invocation
			time.Sleep(time.Millisecond)
		}
		close(release)
	}()
	// The writer stalls on the first record, so the checks queue together.
	fill(l, l.AppendCheck)
	ref := open(t, Config{Dir: t.TempDir(), Node: "n1", Redact: []string{"ssn"}})
	fill(ref, func(t time.Time, c *Check) { ref.AppendGroup(t, []Check{*c}) })

	var got, want bytes.Buffer
	if err := l.Export(&got, Filter{}); err != nil {
		t.Fatal(err)
	}
	if err := ref.Export(&want, Filter{}); err != nil {
		t.Fatal(err)
	}
	if got.String() != want.String() {
		t.Fatalf("timed groups export\n%s\nas groups of one\n%s", got.String(), want.String())
	}
	l.Close()
	data, _ := os.ReadFile(segFiles(t, dir)[0])
	var kinds []string
	scanSegment(data, func(fr frame) bool {
		kinds = append(kinds, fmt.Sprintf("%d:%d:%v", fr.seq, fr.count, fr.timed))
		return true
	})
	// the decision, group c0, timed c1 c2, group c3, timed c4 c5, the invocation
	if w := "1:1:false 2:1:false 3:2:true 5:1:false 6:2:true 8:1:false"; strings.Join(kinds, " ") != w {
		t.Fatalf("frames (seq:count:timed) %v, want %s", kinds, w)
	}
	l = open(t, Config{Dir: dir})
	seqs := func(f Filter) (s []uint64) {
		for _, r := range queryAll(t, l, f) {
			s = append(s, r.Seq)
		}
		return s
	}
	if s := seqs(Filter{Since: at.Add(2 * time.Second)}); !reflect.DeepEqual(s, []uint64{4, 5, 6, 7, 8}) {
		t.Fatalf("since: %v", s)
	}
	if s := seqs(Filter{Until: at.Add(2 * time.Second)}); !reflect.DeepEqual(s, []uint64{1, 2, 3}) {
		t.Fatalf("until: %v", s)
	}
	if s := seqs(Filter{Since: at.Add(time.Second), Until: at.Add(5 * time.Second), Desc: true}); !reflect.DeepEqual(s, []uint64{6, 5, 4, 3}) {
		t.Fatalf("a window, newest first: %v", s)
	}
	if recs := queryAll(t, l, Filter{Action: "crm.read.2"}); len(recs) != 1 || !recs[0].Time.Equal(at.Add(2*time.Second)) {
		t.Fatalf("its own time: %+v", recs)
	}
	if rep, err := l.Verify(); err != nil || !rep.OK() || rep.Records != 8 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	if seq, err := l.AppendSync(context.Background(), decision(1)); err != nil || seq != 9 {
		t.Fatalf("after a restart: seq %d, %v", seq, err)
	}
}

// A kill -9 while single checks stream in from many goroutines loses no
// record the log acknowledged: a copy of the directory (what the kill
// leaves) taken after an AppendSync verifies and holds every check queued
// before it, seqs without a gap.
func TestTimedGroupsSurviveAKill(t *testing.T) {
	dir := t.TempDir()
	l := open(t, Config{Dir: dir, FsyncInterval: time.Hour})
	const writers, each = 8, 1200
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cs := checks(each)
			for i := range cs {
				cs[i].Full = false
				cs[i].Req.Subject.ID = fmt.Sprintf("w%d-%d", w, i)
				l.AppendCheck(time.Now(), &cs[i])
			}
		}()
	}
	wg.Wait()
	if _, err := l.AppendSync(context.Background(), &Record{Kind: KindInvocation, InvocationID: "inv-1"}); err != nil {
		t.Fatal(err)
	}
	cp := t.TempDir()
	copyDir(t, dir, cp)
	const n = writers*each + 1
	if rep := mustVerify(t, cp); !rep.OK() || rep.LastSeq != n || rep.Records != n {
		t.Fatalf("verify the copy: %+v", rep)
	}
	l2 := open(t, Config{Dir: cp})
	recs := queryAll(t, l2, Filter{Limit: MaxLimit})
	seen := map[string]bool{}
	for i, r := range recs {
		if r.Seq != uint64(i+1) {
			t.Fatalf("record %d has seq %d", i, r.Seq)
		}
		seen[r.Agent] = true
	}
	if len(recs) != n || len(seen) != n {
		t.Fatalf("%d records (%d distinct subjects), want %d", len(recs), len(seen), n)
	}
}
