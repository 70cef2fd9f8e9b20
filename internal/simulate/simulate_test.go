package simulate_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/decisionlog"
	"github.com/aibos/kernel/internal/engine"
	"github.com/aibos/kernel/internal/engine/enginetest"
	"github.com/aibos/kernel/internal/simulate"
)

func load(t testing.TB, files []api.File) *engine.Bundle {
	t.Helper()
	b, err := engine.Load(files, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// record decides n generated requests with the 1,000-policy bundle and logs
// them. Request i asks for the action of policy i % 1000 (its namespace's
// exact action, or a glob policy's namespace).
func record(t testing.TB, n int) *decisionlog.Log {
	t.Helper()
	l, err := decisionlog.Open(decisionlog.Config{Dir: t.TempDir(), FullWait: time.Minute, QueueLen: 1 << 14})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	current := load(t, enginetest.GenerateBundle(1000, 20))
	now := time.Now()
	reqs := make([]*api.CheckRequest, 1000)
	for i := range reqs {
		reqs[i] = enginetest.Request(enginetest.Action(i%20, i/20))
	}
	for i := range n {
		req := reqs[i%len(reqs)]
		d := current.Decide(req, engine.NoEntities{}, now)
		l.Record(req, &d)
	}
	l.Flush()
	if st := l.Stats(); st.Dropped != 0 || st.Failed != 0 {
		t.Fatalf("log stats %+v", st)
	}
	return l
}

const changes = `kind: Policy
name: freeze
layer: platform
rules:
  - name: ns00-frozen
    effect: deny
    actions: ["ns00.*"]
  - name: ns01-approval
    effect: require_approval
    actions: ["ns01.*"]
`

func TestReplayCountsFlips(t *testing.T) {
	l := record(t, 3000)
	// The candidate denies every ns00 action and asks approval for every
	// ns01 one: 50 actions of each in the 1,000 requests, logged 3 times.
	candidate := load(t, append(enginetest.GenerateBundle(1000, 20), api.File{Name: "change.yaml", Data: []byte(changes)}))
	current := load(t, enginetest.GenerateBundle(1000, 20))
	want := 0
	for i := range 1000 {
		req := enginetest.Request(enginetest.Action(i%20, i/20))
		if current.Decide(req, engine.NoEntities{}, time.Now()).Decision != candidate.Decide(req, engine.NoEntities{}, time.Now()).Decision {
			want += 3
		}
	}
	if want == 0 {
		t.Fatal("the candidate changes no decision; the test needs one that does")
	}
	rep, err := simulate.Replay(context.Background(), l, candidate, simulate.Options{Samples: 5})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Replayed != 3000 || rep.Changed != want {
		t.Fatalf("replayed %d changed %d, want 3000 and %d; flips %v", rep.Replayed, rep.Changed, want, rep.Flips)
	}
	if want := map[string]int{"allow→deny": 150, "allow→require_approval": 150}; fmt.Sprint(rep.Flips) != fmt.Sprint(want) {
		t.Errorf("flips %v, want %v", rep.Flips, want)
	}
	if got := rep.ByRule["freeze/ns00-frozen"]["allow→deny"]; got != 150 {
		t.Errorf("by rule: %v", rep.ByRule)
	}
	if got := rep.BySubject["agent:agent-42"]["allow→require_approval"]; got != 150 {
		t.Errorf("by subject: %v", rep.BySubject)
	}
	if len(rep.Samples) != min(5, want) {
		t.Errorf("%d samples", len(rep.Samples))
	}
	sum := 0
	for _, g := range rep.ByAction {
		for _, v := range g {
			sum += v
		}
	}
	if sum != want {
		t.Errorf("by action adds up to %d, want %d", sum, want)
	}
	// An identical candidate changes nothing.
	rep, err = simulate.Replay(context.Background(), l, current, simulate.Options{})
	if err != nil || rep.Changed != 0 || rep.Replayed != 3000 {
		t.Fatalf("same bundle: %+v, %v", rep, err)
	}
}

// BenchmarkReplay replays 1,000,000 logged decisions against a candidate
// bundle of 1,000 policies: the figure is decisions/s (DESIGN.md §5:
// ≥ 100,000/s). Run with -benchtime 1x; logging them takes longer than
// replaying them.
func BenchmarkReplay(b *testing.B) {
	const n = 1_000_000
	l := record(b, n)
	// Flip some: deny every ns00 action at the platform layer.
	candidate := load(b, append(enginetest.GenerateBundle(1000, 20), api.File{Name: "freeze.yaml", Data: []byte(
		"kind: Policy\nname: freeze\nlayer: platform\nrules:\n  - name: ns00-frozen\n    effect: deny\n    actions: [\"ns00.*\"]\n")}))
	b.ResetTimer()
	var rep simulate.Report
	for b.Loop() {
		var err error
		if rep, err = simulate.Replay(context.Background(), l, candidate, simulate.Options{}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if rep.Replayed != n {
		b.Fatalf("replayed %d of %d", rep.Replayed, n)
	}
	took := time.Duration(rep.Took)
	b.ReportMetric(float64(n)/took.Seconds(), "decisions/s")
	b.Log(fmt.Sprintf("replayed %d in %s: %d changed (%v)", n, took, rep.Changed, rep.Flips))
}
