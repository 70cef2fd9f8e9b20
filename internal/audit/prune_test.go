package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func dirBytes(t testing.TB, dir string) int64 {
	t.Helper()
	segs, _, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, s := range segs {
		fi, err := os.Stat(s.path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted by the pruner since it was listed
		}
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

// TestSizeBound writes far past MaxBytes, decisions with an invocation
// now and then: the segments stay within the bound, every invocation is
// kept, and Verify passes, accounting for each deleted run.
func TestSizeBound(t *testing.T) {
	dir := t.TempDir()
	const seg, max = 8 << 10, 64 << 10
	l := open(t, Config{Dir: dir, Node: "n1", SegmentBytes: seg, MaxBytes: max})
	ctx := context.Background()
	var invocations []uint64
	for i := range 6000 {
		if i%1500 == 7 {
			seq, err := l.AppendSync(ctx, &Record{Kind: KindInvocation, Agent: "a1", Action: "pay.refund", InvocationID: fmt.Sprint("inv-", i), Status: "ok"})
			if err != nil {
				t.Fatal(err)
			}
			invocations = append(invocations, seq)
			continue
		}
		l.Append(decision(i))
	}
	if _, err := l.AppendSync(ctx, decision(0)); err != nil {
		t.Fatal(err)
	}
	// The pruner runs on its own; let it finish its rounds.
	deadline := time.Now().Add(30 * time.Second)
	for dirBytes(t, dir) > max && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := dirBytes(t, dir); n > max {
		t.Fatalf("the segments hold %d bytes, over the bound of %d (%+v)", n, max, l.Stats())
	}
	st := l.Stats()
	if st.Pruned == 0 || st.OverBound {
		t.Fatalf("stats %+v: want segments pruned and the log within its bound", st)
	}
	got := queryAll(t, l, Filter{Kind: KindInvocation})
	if len(got) != len(invocations) {
		t.Fatalf("%d invocations kept of %d", len(got), len(invocations))
	}
	for i, r := range got {
		if r.Seq != invocations[i] {
			t.Fatalf("invocation %d has seq %d, want %d", i, r.Seq, invocations[i])
		}
	}
	pruned := queryAll(t, l, Filter{Kind: KindPruned})
	if len(pruned) == 0 || !strings.Contains(pruned[0].Reason, "size bound") {
		t.Fatalf("no record of the deletions: %+v", pruned)
	}

	rep, err := l.Verify()
	if err != nil || !rep.OK() {
		t.Fatalf("Verify of the running log: %v %+v", err, rep.Problems)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep = mustVerify(t, dir)
	if !rep.OK() {
		t.Fatalf("Verify: %+v", rep.Problems)
	}
	if !strings.Contains(strings.Join(rep.Notes, "\n"), "deleted by the size bound") {
		t.Errorf("Verify notes say nothing of the size bound: %q", rep.Notes)
	}

	// A segment removed by hand from the middle is still a problem: the
	// size bound vouches only for what it deleted.
	segs, _, _ := listSegments(dir)
	var victim string
	for _, s := range segs[1 : len(segs)-1] {
		if info, ok := classify(s, 0); ok && !info.decisionsOnly {
			victim = s.path
			break
		}
	}
	if victim == "" {
		t.Fatal("no kept segment with an invocation in the middle of the log")
	}
	if err := os.Remove(victim); err != nil {
		t.Fatal(err)
	}
	rep = mustVerify(t, dir)
	if rep.OK() || !strings.Contains(rep.Problems[0].Message, "missing") {
		t.Fatalf("removing %s went unnoticed: %+v", filepath.Base(victim), rep)
	}
}

// TestSizeBoundAtOpen: a log already over its bound is brought within it
// when opened with one.
func TestSizeBoundAtOpen(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 3000, 8<<10)
	before := dirBytes(t, dir)
	const max = 32 << 10
	if before <= max {
		t.Fatalf("the log holds %d bytes; the test wants more than %d", before, max)
	}
	l := open(t, Config{Dir: dir, SegmentBytes: 8 << 10, MaxBytes: max})
	deadline := time.Now().Add(30 * time.Second)
	for dirBytes(t, dir) > max && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := dirBytes(t, dir); n > max {
		t.Fatalf("%d bytes after Open with a bound of %d", n, max)
	}
	l.Close()
	if rep := mustVerify(t, dir); !rep.OK() {
		t.Fatalf("Verify: %+v", rep.Problems)
	}
}

func TestMaxBytesBelowTwoSegmentsIsRefused(t *testing.T) {
	if _, err := Open(Config{Dir: t.TempDir(), SegmentBytes: 1 << 20, MaxBytes: 1 << 20}); err == nil || !strings.Contains(err.Error(), "MaxBytes") {
		t.Fatalf("err %v", err)
	}
}

func TestBodyKind(t *testing.T) {
	for body, want := range map[string]string{
		`{"kind":"decision","agent":"a"}`:             "decision",
		`{"node":"n1","kind":"invocation"}`:           "invocation",
		`{"node":"n\"1,\\","kind":"pruned","x":1}`:    "pruned",
		`{"node":"n1","agent":"a","kind":"decision"}`: "",
		`{"kind":"deci\u0073ion"}`:                    "",
		`{"node":"n1`:                                 "",
		``:                                            "",
	} {
		if got := bodyKind([]byte(body)); got != want {
			t.Errorf("bodyKind(%s) = %q, want %q", body, got, want)
		}
	}
}

// FuzzBodyKind: whatever bodyKind reads as a kind is the kind encoding/json
// reads from the same body, and it reads every body appendBody writes.
func FuzzBodyKind(f *testing.F) {
	f.Add("n1", "decision")
	f.Add(`n"\1`, "pruned")
	f.Add("", "invocation")
	f.Add("n", `k"\x`)
	f.Fuzz(func(t *testing.T, node, kind string) {
		body := appendBody(nil, &Record{Kind: kind, Agent: "a"}, node, nil, nil, nil, false)
		var r struct {
			Kind string `json:"kind"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			t.Skip() // appendBody's own fuzz test owns its JSON
		}
		got := bodyKind(body)
		if got != "" && got != r.Kind {
			t.Fatalf("bodyKind(%s) = %q, encoding/json reads %q", body, got, r.Kind)
		}
		// A kind written as it is (nothing to escape) is read back.
		if !strings.ContainsAny(kind, "\"\\") && strings.Contains(string(body), `"kind":"`+kind+`"`) && got != kind {
			t.Fatalf("bodyKind(%s) = %q, want %q", body, got, kind)
		}
	})
}

// TestSizeBoundKeepsInvocations: when every segment holds an invocation,
// nothing can be deleted: the log goes over its bound and says so.
func TestSizeBoundKeepsInvocations(t *testing.T) {
	dir := t.TempDir()
	const seg, max = 8 << 10, 32 << 10
	l := open(t, Config{Dir: dir, SegmentBytes: seg, MaxBytes: max})
	ctx := context.Background()
	const n = 600
	for i := range n {
		if _, err := l.AppendSync(ctx, &Record{Kind: KindInvocation, Agent: "a1", Action: "pay.refund", InvocationID: fmt.Sprint("inv-", i)}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for !l.Stats().OverBound && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	st := l.Stats()
	if !st.OverBound || st.Pruned != 0 || dirBytes(t, dir) <= max {
		t.Fatalf("stats %+v, %d bytes: want over the bound with nothing deleted", st, dirBytes(t, dir))
	}
	if got := queryAll(t, l, Filter{Kind: KindInvocation, Limit: n}); len(got) != n {
		t.Fatalf("%d invocations of %d", len(got), n)
	}
}

// Groups of decisions are decisions to the size bound: segments of them
// are deleted, their runs recorded, and Verify accounts for the gaps.
func TestSizeBoundGroups(t *testing.T) {
	dir := t.TempDir()
	const seg, max = 16 << 10, 128 << 10
	l := open(t, Config{Dir: dir, Node: "n1", SegmentBytes: seg, MaxBytes: max})
	ctx := context.Background()
	for range 1000 {
		l.AppendGroup(time.Now(), checks(10))
	}
	if _, err := l.AppendSync(ctx, &Record{Kind: KindInvocation, InvocationID: "inv-last"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for dirBytes(t, dir) > max && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	st := l.Stats()
	if n := dirBytes(t, dir); n > max || st.Pruned == 0 || st.Written < 10001 { // and the records of what was pruned
		t.Fatalf("the segments hold %d bytes (bound %d), stats %+v", n, max, st)
	}
	rep, err := l.Verify()
	if err != nil || !rep.OK() || rep.LastSeq != st.Written {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	if got := queryAll(t, l, Filter{InvocationID: "inv-last"}); len(got) != 1 {
		t.Fatalf("the invocation: %+v", got)
	}
	if !strings.Contains(strings.Join(rep.Notes, "\n"), "deleted by the size bound") {
		t.Fatalf("verify notes %q: want the deleted runs accounted for", rep.Notes)
	}
}
