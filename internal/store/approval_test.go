package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
)

// newApproval is a pending approval of agent a1 (version 1, tenant acme)
// for crm.write with digest d1, created at t0, expiring an hour later.
func newApproval(id string) api.Approval {
	return api.Approval{
		ID: id, Agent: "a1", AgentVersion: "1", Tenant: "acme", Action: "crm.write", ArgsDigest: "d1",
		Input: json.RawMessage(`{"name":"x"}`), Reasons: []api.Reason{{Policy: "p", Rule: "r"}},
		Approvers: []string{"bob"}, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), InvocationID: "inv-0",
	}
}

func consumeCmd(id, invocation string, at time.Time) approvalConsumeCmd {
	return approvalConsumeCmd{ID: id, Agent: "a1", AgentVersion: "1", Action: "crm.write", ArgsDigest: "d1", InvocationID: invocation, Time: at}
}

func TestApprovalCreate(t *testing.T) {
	var changes []Change
	f := newFSM(func(c Change) { changes = append(changes, c) })
	r := applyOK(t, f, cmdApprovalCreate, approvalCreateCmd{Approval: newApproval("ap1")})
	if a := r.Approval; a.State != api.ApprovalPending || a.Revision != 1 || string(a.Input) != `{"name":"x"}` {
		t.Fatalf("created %+v", a)
	}
	if c := changes[0]; c.Kind != ChangeApproval || c.Approval == nil || c.Approval.ID != "ap1" {
		t.Fatalf("change %+v", c)
	}
	applyErr(t, f, ErrApprovalConflict, cmdApprovalCreate, approvalCreateCmd{Approval: newApproval("ap1")})
	for name, mod := range map[string]func(a *api.Approval){
		"no id":             func(a *api.Approval) { a.ID = "" },
		"bad id":            func(a *api.Approval) { a.ID = "a b" },
		"no agent":          func(a *api.Approval) { a.Agent = "" },
		"no agent version":  func(a *api.Approval) { a.AgentVersion = "" },
		"no action":         func(a *api.Approval) { a.Action = "" },
		"bad action":        func(a *api.Approval) { a.Action = "crm.*" },
		"no digest":         func(a *api.Approval) { a.ArgsDigest = "" },
		"no created_at":     func(a *api.Approval) { a.CreatedAt = time.Time{} },
		"expires at create": func(a *api.Approval) { a.ExpiresAt = a.CreatedAt },
		"created approved":  func(a *api.Approval) { a.State = api.ApprovalApproved },
		"created decided":   func(a *api.Approval) { a.DecidedBy = "bob" },
		"created consumed":  func(a *api.Approval) { a.ConsumedAt = t0 },
	} {
		t.Run(name, func(t *testing.T) {
			a := newApproval("ap2")
			mod(&a)
			applyErr(t, f, ErrBadCommand, cmdApprovalCreate, approvalCreateCmd{Approval: a})
		})
	}
	a := newApproval("ap3")
	a.State = api.ApprovalPending
	applyOK(t, f, cmdApprovalCreate, approvalCreateCmd{Approval: a})
	if f.st.revision != 2 {
		t.Fatalf("revision %d, want 2", f.st.revision)
	}
}

func TestApprovalDecide(t *testing.T) {
	f := newFSM(nil)
	for _, id := range []string{"ap1", "ap2", "ap3"} {
		applyOK(t, f, cmdApprovalCreate, approvalCreateCmd{Approval: newApproval(id)})
	}
	at := t0.Add(time.Minute)
	applyErr(t, f, ErrNotFound, cmdApprovalDecide, approvalDecideCmd{ID: "nope", Approve: true, By: "bob", Time: at})
	applyErr(t, f, ErrBadCommand, cmdApprovalDecide, approvalDecideCmd{ID: "ap1", Approve: true, Time: at})
	applyErr(t, f, ErrBadCommand, cmdApprovalDecide, approvalDecideCmd{ID: "ap1", Approve: true, By: "bob"})
	applyErr(t, f, ErrBadCommand, cmdApprovalDecide, approvalDecideCmd{Approve: true, By: "bob", Time: at})
	// At ExpiresAt it has expired.
	applyErr(t, f, ErrApprovalExpired, cmdApprovalDecide, approvalDecideCmd{ID: "ap1", Approve: true, By: "bob", Time: t0.Add(time.Hour)})

	r := applyOK(t, f, cmdApprovalDecide, approvalDecideCmd{ID: "ap1", Approve: true, By: "bob", Reason: "ok", Time: at})
	if a := r.Approval; a.State != api.ApprovalApproved || a.DecidedBy != "bob" || !a.DecidedAt.Equal(at) || a.Reason != "ok" || a.Revision != 4 {
		t.Fatalf("approved %+v", a)
	}
	r = applyOK(t, f, cmdApprovalDecide, approvalDecideCmd{ID: "ap2", Approve: false, By: "eve", Time: at})
	if a := r.Approval; a.State != api.ApprovalDenied || a.DecidedBy != "eve" {
		t.Fatalf("denied %+v", a)
	}
	for _, id := range []string{"ap1", "ap2"} {
		before := dump(t, f)
		err, _ := applyRaw(f, mustCmd(t, cmdApprovalDecide, approvalDecideCmd{ID: id, Approve: true, By: "bob", Time: at})).(error)
		if !errors.Is(err, ErrApprovalState) || !strings.Contains(err.Error(), "not pending") {
			t.Fatalf("decide %s twice: %v", id, err)
		}
		if string(dump(t, f)) != string(before) {
			t.Fatal("refused decide changed the state")
		}
	}
}

func TestApprovalConsume(t *testing.T) {
	f := newFSM(nil)
	at := t0.Add(time.Minute)
	create := func(id string, approve *bool) {
		t.Helper()
		applyOK(t, f, cmdApprovalCreate, approvalCreateCmd{Approval: newApproval(id)})
		if approve != nil {
			applyOK(t, f, cmdApprovalDecide, approvalDecideCmd{ID: id, Approve: *approve, By: "bob", Time: at})
		}
	}
	yes, no := true, false
	create("pending", nil)
	create("denied", &no)
	create("ok", &yes)

	applyErr(t, f, ErrNotFound, cmdApprovalConsume, consumeCmd("nope", "inv-1", at))
	applyErr(t, f, ErrBadCommand, cmdApprovalConsume, consumeCmd("ok", "", at))
	applyErr(t, f, ErrBadCommand, cmdApprovalConsume, consumeCmd("ok", "inv-1", time.Time{}))
	applyErr(t, f, ErrApprovalState, cmdApprovalConsume, consumeCmd("pending", "inv-1", at))
	applyErr(t, f, ErrApprovalState, cmdApprovalConsume, consumeCmd("denied", "inv-1", at))
	applyErr(t, f, ErrApprovalExpired, cmdApprovalConsume, consumeCmd("ok", "inv-1", t0.Add(time.Hour)))
	// An expired one is not voided by other arguments either.
	late := consumeCmd("ok", "inv-1", t0.Add(2*time.Hour))
	late.ArgsDigest = "other"
	applyErr(t, f, ErrApprovalExpired, cmdApprovalConsume, late)

	r := applyOK(t, f, cmdApprovalConsume, consumeCmd("ok", "inv-1", at))
	if a := r.Approval; a.State != api.ApprovalConsumed || a.ConsumedBy != "inv-1" || !a.ConsumedAt.Equal(at) || a.DecidedBy != "bob" {
		t.Fatalf("consumed %+v", a)
	}
	before := dump(t, f)
	err, _ := applyRaw(f, mustCmd(t, cmdApprovalConsume, consumeCmd("ok", "inv-2", at))).(error)
	if !errors.Is(err, ErrApprovalState) || !strings.Contains(err.Error(), `"inv-1"`) {
		t.Fatalf("second consume: %v; want ErrApprovalState naming inv-1", err)
	}
	if string(dump(t, f)) != string(before) {
		t.Fatal("refused consume changed the state")
	}

	// Any of the four differing voids the approval, pending or approved,
	// as a change of its own.
	for i, tc := range []struct {
		mod     func(p *approvalConsumeCmd)
		approve bool
		reason  string
	}{
		{func(p *approvalConsumeCmd) { p.ArgsDigest = "d2" }, true, "arguments changed after approval"},
		{func(p *approvalConsumeCmd) { p.AgentVersion = "2" }, true, "agent version changed"},
		{func(p *approvalConsumeCmd) { p.Action = "crm.delete" }, true, "action changed"},
		{func(p *approvalConsumeCmd) { p.Agent = "a2" }, true, "agent changed"},
		{func(p *approvalConsumeCmd) { p.ArgsDigest = "d2" }, false, "arguments changed after approval"},
	} {
		id := fmt.Sprint("v", i)
		if tc.approve {
			create(id, &yes)
		} else {
			create(id, nil)
		}
		p := consumeCmd(id, "inv-v", at)
		tc.mod(&p)
		rev := f.st.revision
		r := applyOK(t, f, cmdApprovalConsume, p)
		if a := r.Approval; a.State != api.ApprovalVoided || a.Reason != tc.reason || r.Revision != rev+1 || a.ConsumedBy != "" || a.DecidedBy != p.Agent {
			t.Fatalf("%s: %+v at revision %d; want voided: %s", id, a, r.Revision, tc.reason)
		}
		applyErr(t, f, ErrApprovalState, cmdApprovalConsume, consumeCmd(id, "inv-w", at))
	}
	roundTrip(t, f)
}

func TestApprovalPruning(t *testing.T) {
	f := newFSM(nil)
	day := 24 * time.Hour
	mk := func(id string, created time.Time, ttl time.Duration) {
		t.Helper()
		a := newApproval(id)
		a.CreatedAt, a.ExpiresAt = created, created.Add(ttl)
		applyOK(t, f, cmdApprovalCreate, approvalCreateCmd{Approval: a})
	}
	mk("old-pending", t0, time.Hour)     // expires t0+1h
	mk("long-pending", t0, 10*day)       // expires t0+10d
	mk("old-denied", t0, time.Hour)      // denied at t0+1m
	mk("late-consumed", t0, 2*time.Hour) // consumed at t0+90m
	applyOK(t, f, cmdApprovalDecide, approvalDecideCmd{ID: "old-denied", By: "bob", Time: t0.Add(time.Minute)})
	applyOK(t, f, cmdApprovalDecide, approvalDecideCmd{ID: "late-consumed", Approve: true, By: "bob", Time: t0.Add(time.Minute)})
	applyOK(t, f, cmdApprovalConsume, consumeCmd("late-consumed", "inv", t0.Add(90*time.Minute)))

	// At t0+7d+1h+30s: old-pending expired 7d+30s ago and old-denied was
	// decided more than 7d ago (both dropped); late-consumed was consumed
	// less than 7d ago and long-pending has not expired (both kept).
	mk("new", t0.Add(7*day+time.Hour+30*time.Second), time.Hour)
	var kept []string
	for _, a := range (&Store{fsm: f}).Approvals() {
		kept = append(kept, a.ID)
	}
	if got := strings.Join(kept, ","); got != "late-consumed,long-pending,new" {
		t.Fatalf("kept %s", got)
	}
	mk("newer", t0.Add(7*day+2*time.Hour), time.Hour)
	if _, ok := f.st.approvals["late-consumed"]; ok {
		t.Fatal("late-consumed kept past its retention")
	}
}

func TestEffectiveApprovalState(t *testing.T) {
	a := newApproval("x")
	for _, tc := range []struct {
		state string
		at    time.Time
		want  string
	}{
		{api.ApprovalPending, t0, api.ApprovalPending},
		{api.ApprovalPending, a.ExpiresAt, api.ApprovalExpired},
		{api.ApprovalApproved, a.ExpiresAt.Add(-1), api.ApprovalApproved},
		{api.ApprovalApproved, a.ExpiresAt.Add(time.Hour), api.ApprovalExpired},
		{api.ApprovalConsumed, a.ExpiresAt.Add(time.Hour), api.ApprovalConsumed},
		{api.ApprovalDenied, a.ExpiresAt.Add(time.Hour), api.ApprovalDenied},
		{api.ApprovalVoided, a.ExpiresAt.Add(time.Hour), api.ApprovalVoided},
	} {
		a.State = tc.state
		if got := EffectiveApprovalState(a, tc.at); got != tc.want {
			t.Errorf("%s at %s: %s, want %s", tc.state, tc.at, got, tc.want)
		}
	}
}

// TestApprovalStore drives approvals through a real raft store, including
// the exactly-once consume under concurrency.
func TestApprovalStore(t *testing.T) {
	n := startLeader(t)
	ctx := ctxLong(t)
	at := t0.Add(time.Minute)
	for _, id := range []string{"ap1", "ap2", "ap3"} {
		a, err := n.CreateApproval(ctx, newApproval(id))
		if err != nil || a.State != api.ApprovalPending || a.Revision == 0 {
			t.Fatalf("create %s: %+v, %v", id, a, err)
		}
	}
	if _, err := n.CreateApproval(ctx, newApproval("ap1")); !errors.Is(err, ErrApprovalConflict) {
		t.Fatalf("duplicate: %v", err)
	}
	bad := newApproval("ap9")
	bad.ArgsDigest = ""
	if _, err := n.CreateApproval(ctx, bad); !errors.Is(err, ErrBadCommand) {
		t.Fatalf("no digest: %v", err)
	}
	if _, err := n.DecideApproval(ctx, "ap1", true, "", "", at); !errors.Is(err, ErrBadCommand) {
		t.Fatalf("no approver: %v", err)
	}
	if _, err := n.DecideApproval(ctx, "zz", true, "bob", "", at); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
	if _, err := n.DecideApproval(ctx, "ap1", true, "bob", "", t0.Add(2*time.Hour)); !errors.Is(err, ErrApprovalExpired) {
		t.Fatalf("expired: %v", err)
	}
	if _, err := n.ConsumeApproval(ctx, "ap1", "a1", "1", "crm.write", "d1", "inv-1", at); !errors.Is(err, ErrApprovalState) {
		t.Fatalf("consume pending: %v", err)
	}
	for _, id := range []string{"ap1", "ap2"} {
		if a, err := n.DecideApproval(ctx, id, true, "bob", "fine", at); err != nil || a.State != api.ApprovalApproved {
			t.Fatalf("approve %s: %+v, %v", id, a, err)
		}
	}
	if _, err := n.DecideApproval(ctx, "ap1", false, "eve", "", at); !errors.Is(err, ErrApprovalState) {
		t.Fatalf("decide twice: %v", err)
	}

	// Other arguments void it: the voided approval comes back with the
	// error, and a later consume with the right ones is refused.
	a, err := n.ConsumeApproval(ctx, "ap2", "a1", "1", "crm.write", "other", "inv-2", at)
	if !errors.Is(err, ErrApprovalVoided) || a.State != api.ApprovalVoided || a.Reason != "arguments changed after approval" {
		t.Fatalf("changed args: %+v, %v", a, err)
	}
	if got, _ := n.Approval("ap2"); got.State != api.ApprovalVoided || got.Revision != a.Revision {
		t.Fatalf("stored %+v", got)
	}
	if _, err := n.ConsumeApproval(ctx, "ap2", "a1", "1", "crm.write", "d1", "inv-3", at); !errors.Is(err, ErrApprovalState) {
		t.Fatalf("consume voided: %v", err)
	}

	// Concurrent consumes of one approval: exactly one wins.
	const racers = 8
	var wg sync.WaitGroup
	errs := make([]error, racers)
	for i := range racers {
		wg.Go(func() {
			_, errs[i] = n.ConsumeApproval(ctx, "ap1", "a1", "1", "crm.write", "d1", fmt.Sprint("race-", i), at)
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("racers %d and %d both consumed", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, ErrApprovalState):
			t.Fatalf("racer %d: %v", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no racer consumed")
	}
	if got, _ := n.Approval("ap1"); got.State != api.ApprovalConsumed || got.ConsumedBy != fmt.Sprint("race-", winner) {
		t.Fatalf("after the race %+v (winner %d)", got, winner)
	}
	if as := n.Approvals(); len(as) != 3 || as[0].ID != "ap1" || as[2].ID != "ap3" {
		t.Fatalf("approvals %+v", as)
	}
	var kinds []string
	for _, c := range n.changes.all() {
		if c.Kind == ChangeApproval && c.Approval == nil {
			t.Fatalf("approval change without its approval: %+v", c)
		}
		kinds = append(kinds, c.Kind)
	}
	if got := strings.Count(strings.Join(kinds, " "), ChangeApproval); got != 7 {
		t.Fatalf("%d approval changes (%v), want 7: 3 creates, 2 approvals, 1 void, 1 consume", got, kinds)
	}
}
