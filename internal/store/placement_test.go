package store

import (
	"bytes"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
)

// Placement: every placement of an agent gets a higher epoch; writes of
// any other epoch, or of an agent placed nowhere, are refused and change
// nothing; stop clears the node and the timers and keeps the epoch.
func TestSandboxPlacementFences(t *testing.T) {
	f := newFSM(nil)
	applyOK(t, f, cmdAgentRegister, agentRegisterCmd{Manifest: agentManifest("a1", "1", "data.*"), TokenHash: TokenHash("tok1"), Time: t0})
	applyOK(t, f, cmdAgentRegister, agentRegisterCmd{Manifest: agentManifest("a2", "1", "data.*"), TokenHash: TokenHash("tok2"), Time: t0})
	place := func(agent, node string, from uint64) sandboxPlaceCmd {
		return sandboxPlaceCmd{Placements: []placeEntry{{Agent: agent, Node: node, From: from}}, Time: t0}
	}
	// Not asked to run: no placement.
	applyErr(t, f, ErrAgentConflict, cmdSandboxPlace, place("a1", "n1", 0))
	applyOK(t, f, cmdSandboxRunSet, sandboxRunSetCmd{Agent: "a1", Desired: api.SandboxRun, Time: t0})
	applyOK(t, f, cmdSandboxRunSet, sandboxRunSetCmd{Agent: "a2", Desired: api.SandboxRun, Time: t0})
	// A report from before placements (a leader term as its epoch) is
	// outgrown by the first placement.
	applyOK(t, f, cmdSandboxStatusSet, sandboxStatusSetCmd{Agent: "a1", State: api.RuntimeRunning, Node: "n1", Epoch: 4, Time: t0})
	applyOK(t, f, cmdSandboxPlace, sandboxPlaceCmd{Placements: []placeEntry{{Agent: "a1", Node: "n1"}, {Agent: "a2", Node: "n2"}}, Time: t0})
	if p := f.st.sandbox["a1"].Place; p.Node != "n1" || p.Epoch != 5 {
		t.Fatalf("a1 placed %+v; want n1 in epoch 5", p)
	}
	for name, c := range map[string]sandboxPlaceCmd{
		"empty":     {Time: t0},
		"no node":   place("a1", "", 5),
		"twice":     {Placements: []placeEntry{{Agent: "a1", Node: "n1", From: 5}, {Agent: "a1", Node: "n2", From: 5}}},
		"no agent":  place("", "n1", 0),
		"raced":     place("a1", "n2", 4),
		"unknown":   place("nobody", "n1", 0),
		"half good": {Placements: []placeEntry{{Agent: "a2", Node: "n3", From: 1}, {Agent: "a1", Node: "n2", From: 3}}},
	} {
		before := dump(t, f)
		applyRaw(f, mustCmd(t, cmdSandboxPlace, c))
		if !bytes.Equal(before, dump(t, f)) {
			t.Errorf("%s: a refused placement changed the state", name)
		}
	}
	applyOK(t, f, cmdSandboxKVPut, sandboxKVPutCmd{Agent: "a1", Epoch: 5, Key: "k", Value: []byte("v")})
	applyOK(t, f, cmdSandboxTimer, sandboxTimerCmd{Agent: "a1", Epoch: 5, Op: TimerSet, Name: "t", Due: t0.Add(time.Minute)})

	// Moved to n2: epoch 6; the old epoch's writes are refused.
	applyOK(t, f, cmdSandboxPlace, place("a1", "n2", 5))
	applyErr(t, f, ErrStaleEpoch, cmdSandboxKVPut, sandboxKVPutCmd{Agent: "a1", Epoch: 5, Key: "k", Value: []byte("stale")})
	applyErr(t, f, ErrStaleEpoch, cmdSandboxTimer, sandboxTimerCmd{Agent: "a1", Epoch: 5, Op: TimerCancel, Name: "t"})
	if string(f.st.sandbox["a1"].KV["k"]) != "v" || len(f.st.sandbox["a1"].Timers) != 1 {
		t.Fatal("a stale write changed the state")
	}
	// A status report of the old placement is stale too.
	applyOK(t, f, cmdSandboxStatusSet, sandboxStatusSetCmd{Agent: "a1", State: api.RuntimeStopped, Node: "n1", Epoch: 5, Time: t0})
	if st := f.st.sandbox["a1"].Status; st.Node != "n1" || st.State != api.RuntimeRunning {
		t.Fatalf("status %+v: the old node's stopped report applied", st)
	}
	applyOK(t, f, cmdSandboxKVPut, sandboxKVPutCmd{Agent: "a1", Epoch: 6, Key: "k", Value: []byte("w")})

	// Timers: fired retires only the one due then; bounds.
	due := t0.Add(time.Minute)
	applyOK(t, f, cmdSandboxTimer, sandboxTimerCmd{Agent: "a1", Epoch: 6, Op: TimerSet, Name: "t", Due: due.Add(time.Second)})
	applyOK(t, f, cmdSandboxTimer, sandboxTimerCmd{Agent: "a1", Epoch: 6, Op: TimerFired, Name: "t", Due: due})
	if got := f.st.sandbox["a1"].Timers["t"]; !got.Equal(due.Add(time.Second)) {
		t.Fatalf("timer due %v after an older firing; want the re-set one", got)
	}
	applyOK(t, f, cmdSandboxTimer, sandboxTimerCmd{Agent: "a1", Epoch: 6, Op: TimerFired, Name: "t", Due: due.Add(time.Second)})
	if len(f.st.sandbox["a1"].Timers) != 0 {
		t.Fatal("fired timer kept")
	}
	for i := range MaxTimers {
		applyOK(t, f, cmdSandboxTimer, sandboxTimerCmd{Agent: "a1", Epoch: 6, Op: TimerSet, Name: string(rune('A' + i)), Due: due})
	}
	applyErr(t, f, ErrQuota, cmdSandboxTimer, sandboxTimerCmd{Agent: "a1", Epoch: 6, Op: TimerSet, Name: "one more", Due: due})
	applyErr(t, f, ErrBadCommand, cmdSandboxTimer, sandboxTimerCmd{Agent: "a1", Epoch: 6, Op: "snooze", Name: "A", Due: due})
	applyErr(t, f, ErrBadCommand, cmdSandboxTimer, sandboxTimerCmd{Agent: "a1", Epoch: 6, Op: TimerSet, Name: "", Due: due})
	applyErr(t, f, ErrBadCommand, cmdSandboxTimer, sandboxTimerCmd{Agent: "a1", Epoch: 6, Op: TimerSet, Name: "A"})

	// The snapshot carries placements and timers.
	g := roundTrip(t, f)
	if !bytes.Equal(dump(t, f), dump(t, g)) {
		t.Fatal("snapshot round trip changed the placement state")
	}

	// Stop: placed nowhere, no timers, epoch kept; writes refused; the
	// next placement is epoch 7.
	applyOK(t, f, cmdSandboxRunSet, sandboxRunSetCmd{Agent: "a1", Desired: api.SandboxStop, Time: t0})
	if r := f.st.sandbox["a1"]; r.Place.Node != "" || r.Place.Epoch != 6 || len(r.Timers) != 0 {
		t.Fatalf("after stop: place %+v, %d timers", r.Place, len(r.Timers))
	}
	applyErr(t, f, ErrStaleEpoch, cmdSandboxKVPut, sandboxKVPutCmd{Agent: "a1", Epoch: 6, Key: "k", Value: []byte("x")})
	applyOK(t, f, cmdSandboxRunSet, sandboxRunSetCmd{Agent: "a1", Desired: api.SandboxRun, Time: t0})
	applyOK(t, f, cmdSandboxPlace, place("a1", "n3", 6))
	if p := f.st.sandbox["a1"].Place; p.Node != "n3" || p.Epoch != 7 {
		t.Fatalf("placed again %+v; want n3 in epoch 7", p)
	}
}

// peerHealth: a voter is down from its first failed heartbeat (or its
// last contact, if earlier) until one succeeds; a new leader counts the
// old leader's silence from its own last contact with it.
func TestPeerHealth(t *testing.T) {
	now := t0
	var p peerHealth
	p.leaderChanged("n1", "n2", time.Time{})
	if d := p.downFor("n3", now); d != 0 {
		t.Fatalf("a peer never failing is down for %v", d)
	}
	p.failed("n3", time.Time{}, now)
	p.failed("n3", time.Time{}, now.Add(time.Second)) // later failures do not move it
	if d := p.downFor("n3", now.Add(2*time.Second)); d != 2*time.Second {
		t.Fatalf("down for %v; want 2s", d)
	}
	p.resumed("n3")
	if d := p.downFor("n3", now.Add(3*time.Second)); d != 0 {
		t.Fatalf("resumed, yet down for %v", d)
	}
	p.failed("n3", now.Add(-time.Second), now)
	if d := p.downFor("n3", now); d != time.Second {
		t.Fatalf("down for %v; want since its last contact", d)
	}
	// n2 becomes the leader, having last heard from n1 a while ago.
	p.leaderChanged("", "n2", time.Time{})
	p.leaderChanged("n2", "n2", now.Add(-1500*time.Millisecond))
	if d := p.downFor("n3", now); d != 0 {
		t.Fatal("a new leader kept the old leader's view")
	}
	p.failed("n1", time.Time{}, now)
	if d := p.downFor("n1", now); d != 1500*time.Millisecond {
		t.Fatalf("old leader down for %v; want since the last contact with it", d)
	}
}
