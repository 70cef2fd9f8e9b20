package store

import (
	"bytes"
	"errors"
	"testing"

	"github.com/aibos/kernel/api"
)

func rate(f float64) *float64 { return &f }

// TestRolloutApply walks a rollout through start, the refusals, abort, a
// second start and promote, checking results, revisions and changes.
func TestRolloutApply(t *testing.T) {
	var changes []Change
	f := newFSM(func(c Change) { changes = append(changes, c) })
	for _, c := range [][]byte{
		mustCmd(t, cmdBundlePublish, publishCmd{Files: files("a", "1"), Hash: "h1", Time: t0}),
		mustCmd(t, cmdBundlePublish, publishCmd{Files: files("a", "2"), Hash: "h2", Time: t0}),
	} {
		if err, ok := applyRaw(f, c).(error); ok {
			t.Fatal(err)
		}
	}
	start := func(p rolloutStartCmd) any { return applyRaw(f, mustCmd(t, cmdRolloutStart, p)) }
	wantErr := func(name string, got any, want error) {
		t.Helper()
		err, ok := got.(error)
		if !ok || !errors.Is(err, want) {
			t.Fatalf("%s: got %v, want %v", name, got, want)
		}
	}
	wantErr("missing candidate", start(rolloutStartCmd{Candidate: 9, Time: t0}), ErrNoSuchVersion)
	wantErr("current as candidate", start(rolloutStartCmd{Candidate: 2, Time: t0}), ErrBadCommand)
	wantErr("bad percent", start(rolloutStartCmd{Candidate: 1, Cohort: api.RolloutCohort{Percent: 101}}), ErrBadCommand)
	wantErr("both cohorts", start(rolloutStartCmd{Candidate: 1, Cohort: api.RolloutCohort{Percent: 5, Selector: map[string]any{"a": "b"}}}), ErrBadCommand)
	wantErr("bad rate", start(rolloutStartCmd{Candidate: 1, Abort: api.RolloutAbortPolicy{MaxFlipRate: rate(2)}}), ErrBadCommand)
	wantErr("abort without rollout", applyRaw(f, mustCmd(t, cmdRolloutAbort, rolloutEndCmd{Time: t0})), ErrNoRollout)
	if f.st.revision != 2 {
		t.Fatalf("rejected commands moved the revision to %d", f.st.revision)
	}

	res, ok := start(rolloutStartCmd{Candidate: 1, Cohort: api.RolloutCohort{Percent: 10}, By: "ann", Time: t0}).(applyResult)
	if !ok || res.Revision != 3 || res.Rollout.ID != 3 || res.Rollout.State != api.RolloutActive || res.Rollout.Base != 2 {
		t.Fatalf("start: %+v", res)
	}
	if c := changes[len(changes)-1]; c.Kind != ChangeRollout || c.Candidate == nil || c.Candidate.Version != 1 || c.Version != nil {
		t.Fatalf("start change %+v", c)
	}
	wantErr("second start", start(rolloutStartCmd{Candidate: 1, Time: t0}), ErrRolloutActive)
	wantErr("abort of another id", applyRaw(f, mustCmd(t, cmdRolloutAbort, rolloutEndCmd{ID: 99, Time: t0})), ErrNoRollout)

	res = applyRaw(f, mustCmd(t, cmdRolloutAbort, rolloutEndCmd{ID: 3, Reason: "flips", By: "node2", Time: t0})).(applyResult)
	if res.Revision != 4 || res.Rollout.State != api.RolloutAborted || res.Rollout.Reason != "flips" || res.Version != nil {
		t.Fatalf("abort: %+v", res)
	}
	if c := changes[len(changes)-1]; c.Candidate != nil || len(f.st.versions) != 2 {
		t.Fatalf("abort change %+v, %d versions", c, len(f.st.versions))
	}
	wantErr("abort twice", applyRaw(f, mustCmd(t, cmdRolloutAbort, rolloutEndCmd{Time: t0})), ErrNoRollout)

	start(rolloutStartCmd{Candidate: 1, Cohort: api.RolloutCohort{Selector: map[string]any{"tier": "beta"}}, Time: t0})
	res = applyRaw(f, mustCmd(t, cmdRolloutPromote, rolloutEndCmd{By: "ann", Time: t0})).(applyResult)
	if res.Revision != 6 || res.Rollout.State != api.RolloutPromoted || res.Rollout.Promoted != 3 || res.Version.Version != 3 || res.Version.Revision != 6 {
		t.Fatalf("promote: %+v %+v", res, res.Version)
	}
	v3 := f.st.versions[2]
	if v3.Hash != "h1" || string(v3.Files[0].Data) != "1" || v3.Parent != 2 {
		t.Fatalf("promoted version %+v", v3.VersionInfo)
	}
	if c := changes[len(changes)-1]; c.Kind != ChangeRollout || c.Version != v3 || c.Rollout.State != api.RolloutPromoted {
		t.Fatalf("promote change %+v", c)
	}
}

// TestRolloutSnapshot: an active rollout survives a snapshot and restore
// (and is reported by the restore's Change); a state without one encodes
// exactly as before rollouts existed.
func TestRolloutSnapshot(t *testing.T) {
	f := seededFSM(t)
	if bytes.Contains(dump(t, f), []byte("rollout")) {
		t.Fatal("a state without rollouts mentions them")
	}
	if err, ok := applyRaw(f, mustCmd(t, cmdRolloutStart, rolloutStartCmd{
		Candidate: 2, Cohort: api.RolloutCohort{Selector: map[string]any{"tier": "beta"}},
		Abort: api.RolloutAbortPolicy{MaxFlipRate: rate(0.05), MinSamples: 10}, Time: t0,
	})).(error); ok {
		t.Fatal(err)
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := snap.(*fsmSnapshot).write(&buf); err != nil {
		t.Fatal(err)
	}
	var got Change
	g := newFSM(func(c Change) { got = c })
	if err := g.Restore(readCloser{&buf}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dump(t, g), dump(t, f)) {
		t.Fatalf("restored state differs:\n%s\nwant\n%s", dump(t, g), dump(t, f))
	}
	if got.Rollout == nil || got.Rollout.State != api.RolloutActive || got.Candidate == nil || got.Candidate.Version != 2 ||
		*got.Rollout.Abort.MaxFlipRate != 0.05 || got.Rollout.Cohort.Selector["tier"] != "beta" {
		t.Fatalf("restore change %+v", got)
	}
	// The restored replica applies the next rollout command like the
	// original.
	a := applyRaw(f, mustCmd(t, cmdRolloutAbort, rolloutEndCmd{Time: t0}))
	b := applyRaw(g, mustCmd(t, cmdRolloutAbort, rolloutEndCmd{Time: t0}))
	if _, ok := b.(applyResult); !ok || !bytes.Equal(dump(t, g), dump(t, f)) {
		t.Fatalf("abort after restore: %v / %v", a, b)
	}
}

func TestDecodeSnapshotRejectsBadRollout(t *testing.T) {
	for name, s := range map[string]string{
		"missing record": `{"format":1,"revision":1,"versions":0,"nodes":0,"entities":0,"rollouts":1}`,
		"two rollouts":   `{"format":1,"revision":1,"versions":0,"nodes":0,"entities":0,"rollouts":2}`,
		"no candidate":   `{"format":1,"revision":1,"versions":0,"nodes":0,"entities":0,"rollouts":1}` + "\n" + `{"rollout":{"id":1,"state":"active","candidate":1}}`,
		"out of place":   `{"format":1,"revision":1,"versions":1,"nodes":0,"entities":0,"rollouts":1}` + "\n" + `{"rollout":{"id":1,"candidate":1}}`,
		"staged without candidate": `{"format":1,"revision":1,"versions":0,"nodes":0,"entities":0,"rollouts":1}` + "\n" +
			`{"rollout":{"id":1,"state":"active","candidate":1,"staged":true}}`,
		"staged of wrong number": `{"format":1,"revision":1,"versions":0,"nodes":0,"entities":0,"rollouts":1}` + "\n" +
			`{"rollout":{"id":1,"state":"active","candidate":2,"staged":true},"staged":{"version":2,"files":[]}}`,
		"candidate of ended rollout": `{"format":1,"revision":1,"versions":0,"nodes":0,"entities":0,"rollouts":1}` + "\n" +
			`{"rollout":{"id":1,"state":"aborted","candidate":1,"staged":true},"staged":{"version":1,"files":[]}}`,
	} {
		if _, err := decodeSnapshot(bytes.NewReader([]byte(s))); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestRolloutStaged: a rollout of files stages them as version n+1 outside
// the version list; abort drops them, promote publishes exactly n+1 with
// their hash and files.
func TestRolloutStaged(t *testing.T) {
	var changes []Change
	f := newFSM(func(c Change) { changes = append(changes, c) })
	for _, c := range [][]byte{
		mustCmd(t, cmdBundlePublish, publishCmd{Files: files("a", "1"), Hash: "h1", Time: t0}),
		mustCmd(t, cmdBundlePublish, publishCmd{Files: files("a", "2"), Hash: "h2", Time: t0}),
	} {
		if err, ok := applyRaw(f, c).(error); ok {
			t.Fatal(err)
		}
	}
	for name, p := range map[string]rolloutStartCmd{
		"candidate and files": {Candidate: 1, Files: files("a", "3"), Hash: "h3", Time: t0},
		"files without hash":  {Files: files("a", "3"), Time: t0},
		"bad file name":       {Files: files("", "3"), Hash: "h3", Time: t0},
	} {
		if err, ok := applyRaw(f, mustCmd(t, cmdRolloutStart, p)).(error); !ok || !errors.Is(err, ErrBadCommand) {
			t.Errorf("%s: got %v, want ErrBadCommand", name, err)
		}
	}
	if f.st.revision != 2 {
		t.Fatalf("rejected commands moved the revision to %d", f.st.revision)
	}

	stage := func() api.Rollout {
		t.Helper()
		res, ok := applyRaw(f, mustCmd(t, cmdRolloutStart, rolloutStartCmd{Files: files("a", "3"), Hash: "h3", By: "ann", Time: t0})).(applyResult)
		if !ok {
			t.Fatal("staged start rejected")
		}
		return *res.Rollout
	}
	ro := stage()
	if !ro.Staged || ro.Candidate != 3 || ro.CandidateHash != "h3" || ro.Base != 2 || ro.ID != 3 {
		t.Fatalf("staged start %+v", ro)
	}
	c := changes[len(changes)-1]
	if c.Candidate == nil || c.Candidate.Version != 3 || c.Candidate.Hash != "h3" || c.Candidate.Parent != 2 ||
		c.Candidate.Message != "candidate of rollout 3" || c.Candidate.Author != "ann" || string(c.Candidate.Files[0].Data) != "3" {
		t.Fatalf("staged candidate %+v", c.Candidate)
	}
	if len(f.st.versions) != 2 {
		t.Fatalf("staging added a version: %d", len(f.st.versions))
	}

	res := applyRaw(f, mustCmd(t, cmdRolloutAbort, rolloutEndCmd{Time: t0})).(applyResult)
	if res.Rollout.State != api.RolloutAborted || f.st.staged != nil || len(f.st.versions) != 2 || changes[len(changes)-1].Candidate != nil {
		t.Fatalf("abort: %+v, staged %v, %d versions", res.Rollout, f.st.staged, len(f.st.versions))
	}

	ro = stage()
	if ro.Candidate != 3 {
		t.Fatalf("second staged start of version %d", ro.Candidate)
	}
	res = applyRaw(f, mustCmd(t, cmdRolloutPromote, rolloutEndCmd{Reason: "good", By: "bob", Time: t0})).(applyResult)
	if res.Rollout.State != api.RolloutPromoted || res.Rollout.Promoted != 3 || res.Version.Version != 3 || f.st.staged != nil {
		t.Fatalf("promote: %+v %+v", res.Rollout, res.Version)
	}
	v3 := f.st.versions[2]
	if v3.Hash != "h3" || string(v3.Files[0].Data) != "3" || v3.Parent != 2 || v3.Author != "bob" || v3.Message != "promoted canary rollout 5: good" {
		t.Fatalf("promoted version %+v", v3.VersionInfo)
	}
}

// TestRolloutFreezesBundle: publish and rollback are rejected while a
// rollout is active, changing nothing, and accepted again once it ends.
func TestRolloutFreezesBundle(t *testing.T) {
	for _, staged := range []bool{false, true} {
		f := seededFSM(t)
		p := rolloutStartCmd{Candidate: 1, Time: t0}
		if staged {
			p = rolloutStartCmd{Files: files("a", "9"), Hash: "h9", Time: t0}
		}
		if err, ok := applyRaw(f, mustCmd(t, cmdRolloutStart, p)).(error); ok {
			t.Fatal(err)
		}
		before := dump(t, f)
		for name, cmd := range map[string][]byte{
			"publish":  mustCmd(t, cmdBundlePublish, publishCmd{Files: files("a", "4"), Hash: "h4", Time: t0}),
			"rollback": mustCmd(t, cmdBundleRollback, rollbackCmd{To: 1, Time: t0}),
		} {
			if err, ok := applyRaw(f, cmd).(error); !ok || !errors.Is(err, ErrRolloutActive) {
				t.Errorf("staged %v: %s during a rollout: got %v, want ErrRolloutActive", staged, name, err)
			}
		}
		if !bytes.Equal(dump(t, f), before) {
			t.Fatalf("staged %v: a rejected command changed the state", staged)
		}
		if err, ok := applyRaw(f, mustCmd(t, cmdRolloutAbort, rolloutEndCmd{Time: t0})).(error); ok {
			t.Fatal(err)
		}
		if err, ok := applyRaw(f, mustCmd(t, cmdBundlePublish, publishCmd{Files: files("a", "4"), Hash: "h4", Time: t0})).(error); ok {
			t.Fatalf("staged %v: publish after the rollout: %v", staged, err)
		}
	}
}

// TestRolloutSnapshotStaged: a staged candidate survives a snapshot and
// restore, and the restored replica promotes it like the original.
func TestRolloutSnapshotStaged(t *testing.T) {
	f := seededFSM(t)
	if err, ok := applyRaw(f, mustCmd(t, cmdRolloutStart, rolloutStartCmd{
		Files: files("a", "9"), Hash: "h9", Cohort: api.RolloutCohort{Percent: 10}, By: "ann", Time: t0,
	})).(error); ok {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := f.captureLocked().write(&buf); err != nil {
		t.Fatal(err)
	}
	var got Change
	g := newFSM(func(c Change) { got = c })
	if err := g.Restore(readCloser{&buf}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dump(t, g), dump(t, f)) {
		t.Fatalf("restored state differs:\n%s\nwant\n%s", dump(t, g), dump(t, f))
	}
	if got.Candidate == nil || got.Candidate.Version != 4 || got.Candidate.Hash != "h9" || !got.Rollout.Staged || len(g.st.versions) != 3 {
		t.Fatalf("restore change %+v, candidate %+v", got, got.Candidate)
	}
	a := applyRaw(f, mustCmd(t, cmdRolloutPromote, rolloutEndCmd{Time: t0}))
	b := applyRaw(g, mustCmd(t, cmdRolloutPromote, rolloutEndCmd{Time: t0}))
	if r, ok := b.(applyResult); !ok || r.Version.Version != 4 || !bytes.Equal(dump(t, g), dump(t, f)) {
		t.Fatalf("promote after restore: %v / %v", a, b)
	}
	// Ended staged rollouts round-trip too (an aborted one names a version
	// that was never published).
	if err, ok := applyRaw(f, mustCmd(t, cmdRolloutStart, rolloutStartCmd{Files: files("a", "8"), Hash: "h8", Time: t0})).(error); ok {
		t.Fatal(err)
	}
	if err, ok := applyRaw(f, mustCmd(t, cmdRolloutAbort, rolloutEndCmd{Time: t0})).(error); ok {
		t.Fatal(err)
	}
	st, err := decodeSnapshot(bytes.NewReader(dump(t, f)))
	if err != nil || st.rollout.State != api.RolloutAborted || st.rollout.Candidate != 5 || st.staged != nil {
		t.Fatalf("aborted staged rollout: %+v %v", st.rollout, err)
	}
}
