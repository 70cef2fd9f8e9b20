package store

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
)

func newKill(id, scope, target string) api.KillSwitch {
	return api.KillSwitch{ID: id, Scope: scope, Target: target, Reason: "runaway", By: "ops", CreatedAt: t0.Add(time.Minute)}
}

func TestKillValidation(t *testing.T) {
	f := newFSM(nil)
	for name, k := range map[string]api.KillSwitch{
		"no id":               newKill("", api.KillGlobal, ""),
		"bad id":              newKill("k 1", api.KillGlobal, ""),
		"global with target":  newKill("k1", api.KillGlobal, "acme"),
		"tenant no target":    newKill("k1", api.KillTenant, ""),
		"agent bad target":    newKill("k1", api.KillAgent, "a/b"),
		"action bad pattern":  newKill("k1", api.KillAction, "crm.*.x"),
		"unknown scope":       newKill("k1", "region", "eu"),
		"no scope":            newKill("k1", "", ""),
		"no reason":           func() api.KillSwitch { k := newKill("k1", api.KillGlobal, ""); k.Reason = ""; return k }(),
		"no by":               func() api.KillSwitch { k := newKill("k1", api.KillGlobal, ""); k.By = ""; return k }(),
		"no time":             func() api.KillSwitch { k := newKill("k1", api.KillGlobal, ""); k.CreatedAt = time.Time{}; return k }(),
		"created lifted":      func() api.KillSwitch { k := newKill("k1", api.KillGlobal, ""); k.LiftedBy = "x"; return k }(),
		"created lift reason": func() api.KillSwitch { k := newKill("k1", api.KillGlobal, ""); k.LiftReason = "x"; return k }(),
	} {
		t.Run(name, func(t *testing.T) { applyErr(t, f, ErrBadCommand, cmdKillSet, killSetCmd{Kill: k}) })
	}
	for _, k := range []api.KillSwitch{
		newKill("k1", api.KillGlobal, ""), newKill("k2", api.KillTenant, "acme"), newKill("k3", api.KillAgent, "a1"),
		newKill("k4", api.KillAction, "crm.*"), newKill("k5", api.KillAction, "*"), newKill("k6", api.KillAction, "crm.write"),
	} {
		applyOK(t, f, cmdKillSet, killSetCmd{Kill: k})
	}
	applyErr(t, f, ErrKillState, cmdKillSet, killSetCmd{Kill: newKill("k1", api.KillGlobal, "")})
}

func TestKillCovers(t *testing.T) {
	a := newApproval("x") // agent a1, tenant acme, action crm.write
	for _, tc := range []struct {
		scope, target string
		want          bool
	}{
		{api.KillGlobal, "", true},
		{api.KillTenant, "acme", true},
		{api.KillTenant, "other", false},
		{api.KillAgent, "a1", true},
		{api.KillAgent, "a10", false},
		{api.KillAction, "crm.write", true},
		{api.KillAction, "crm.*", true},
		{api.KillAction, "*", true},
		{api.KillAction, "crm.read", false},
		{api.KillAction, "cr.*", false},
	} {
		k := newKill("k", tc.scope, tc.target)
		if got := killCovers(&k, &a); got != tc.want {
			t.Errorf("%s %q: %v, want %v", tc.scope, tc.target, got, tc.want)
		}
	}
}

// TestKillVoidsApprovals: setting a switch voids the pending and approved
// approvals in its scope, in its own revision, and refuses new ones until
// it is lifted.
func TestKillVoidsApprovals(t *testing.T) {
	var changes []Change
	f := newFSM(func(c Change) { changes = append(changes, c) })
	mk := func(id, agent, action string, mod func(a *api.Approval)) {
		t.Helper()
		a := newApproval(id)
		a.Agent, a.Action = agent, action
		if mod != nil {
			mod(&a)
		}
		applyOK(t, f, cmdApprovalCreate, approvalCreateCmd{Approval: a})
	}
	at := t0.Add(30 * time.Second)
	mk("p1", "a1", "crm.write", nil)
	mk("p2", "a1", "crm.read", nil)
	mk("other-agent", "a2", "crm.write", nil)
	mk("expired", "a1", "crm.write", func(a *api.Approval) { a.ExpiresAt = t0.Add(time.Second) })
	mk("approved", "a1", "billing.charge", nil)
	mk("denied", "a1", "crm.write", nil)
	mk("consumed", "a1", "crm.write", nil)
	applyOK(t, f, cmdApprovalDecide, approvalDecideCmd{ID: "approved", Approve: true, By: "bob", Time: at})
	applyOK(t, f, cmdApprovalDecide, approvalDecideCmd{ID: "denied", By: "bob", Time: at})
	applyOK(t, f, cmdApprovalDecide, approvalDecideCmd{ID: "consumed", Approve: true, By: "bob", Time: at})
	applyOK(t, f, cmdApprovalConsume, consumeCmd("consumed", "inv", at))
	rev := f.st.revision

	k := newKill("k1", api.KillAgent, "a1")
	r := applyOK(t, f, cmdKillSet, killSetCmd{Kill: k})
	if kk := r.Kill; !kk.Active || kk.Revision != rev+1 || r.Revision != rev+1 || f.st.killRev != rev+1 {
		t.Fatalf("set %+v", kk)
	}
	c := changes[len(changes)-1]
	if c.Kind != ChangeKill || c.Kill == nil || c.Kill.ID != "k1" {
		t.Fatalf("change %+v", c)
	}
	var ids []string
	for _, v := range c.Voided {
		ids = append(ids, v.ID)
		if v.State != api.ApprovalVoided || v.Revision != rev+1 || v.Reason != "kill switch k1: runaway" || v.DecidedBy != "ops" || f.st.approvals[v.ID] != v {
			t.Fatalf("voided %+v", v)
		}
	}
	if got := fmt.Sprint(ids); got != "[approved p1 p2]" {
		t.Fatalf("voided %s, want approved, p1, p2", got)
	}
	for id, want := range map[string]string{"other-agent": api.ApprovalPending, "expired": api.ApprovalPending, "denied": api.ApprovalDenied, "consumed": api.ApprovalConsumed} {
		if got := f.st.approvals[id].State; got != want {
			t.Errorf("%s is %s, want %s", id, got, want)
		}
	}

	// While it is active no approval it covers can be created; others can.
	a := newApproval("new")
	applyErr(t, f, ErrKilled, cmdApprovalCreate, approvalCreateCmd{Approval: a})
	a.Agent = "a2"
	applyOK(t, f, cmdApprovalCreate, approvalCreateCmd{Approval: a})

	applyErr(t, f, ErrNotFound, cmdKillLift, killLiftCmd{ID: "nope", By: "ops", Time: at})
	applyErr(t, f, ErrBadCommand, cmdKillLift, killLiftCmd{ID: "k1", Time: at})
	applyErr(t, f, ErrBadCommand, cmdKillLift, killLiftCmd{ID: "k1", By: "ops"})
	lifted := t0.Add(time.Hour)
	r = applyOK(t, f, cmdKillLift, killLiftCmd{ID: "k1", By: "lead", Reason: "fixed", Time: lifted})
	if kk := r.Kill; kk.Active || kk.LiftedBy != "lead" || !kk.LiftedAt.Equal(lifted) || kk.LiftReason != "fixed" || kk.Revision != r.Revision || f.st.killRev != r.Revision {
		t.Fatalf("lifted %+v", kk)
	}
	if c := changes[len(changes)-1]; c.Kind != ChangeKill || c.Kill.Active || c.Voided != nil {
		t.Fatalf("lift change %+v", c)
	}
	applyErr(t, f, ErrKillState, cmdKillLift, killLiftCmd{ID: "k1", By: "lead", Time: lifted})
	// Lifted, it no longer refuses approvals; the voided ones stay voided.
	a = newApproval("after")
	applyOK(t, f, cmdApprovalCreate, approvalCreateCmd{Approval: a})
	if f.st.approvals["p1"].State != api.ApprovalVoided {
		t.Fatal("lifting revived a voided approval")
	}
	g := roundTrip(t, f)
	if g.st.killRev != f.st.killRev {
		t.Fatalf("restored kill revision %d, want %d", g.st.killRev, f.st.killRev)
	}
}

// TestLiftedKillsBounded: only the most recently lifted switches are kept;
// active ones always are.
func TestLiftedKillsBounded(t *testing.T) {
	f := newFSM(nil)
	applyOK(t, f, cmdKillSet, killSetCmd{Kill: newKill("active", api.KillGlobal, "")})
	for i := range maxLiftedKills + 2 {
		id := fmt.Sprintf("k%04d", i)
		applyOK(t, f, cmdKillSet, killSetCmd{Kill: newKill(id, api.KillAgent, "a1")})
		applyOK(t, f, cmdKillLift, killLiftCmd{ID: id, By: "ops", Time: t0.Add(time.Hour)})
	}
	if len(f.st.kills) != maxLiftedKills+1 {
		t.Fatalf("%d kept, want %d", len(f.st.kills), maxLiftedKills+1)
	}
	for id, want := range map[string]bool{"active": true, "k0000": false, "k0001": false, "k0002": true, fmt.Sprintf("k%04d", maxLiftedKills+1): true} {
		if _, ok := f.st.kills[id]; ok != want {
			t.Errorf("%s kept: %v, want %v", id, ok, want)
		}
	}
	if g := roundTrip(t, f); g.st.killRev != f.st.revision {
		t.Fatalf("restored kill revision %d, want %d", g.st.killRev, f.st.revision)
	}
}

func TestKillStore(t *testing.T) {
	n := startLeader(t)
	ctx := ctxLong(t)
	if _, err := n.CreateApproval(ctx, newApproval("ap1")); err != nil {
		t.Fatal(err)
	}
	if _, err := n.DecideApproval(ctx, "ap1", true, "bob", "", t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := n.SetKill(ctx, newKill("k1", api.KillGlobal, "x")); !errors.Is(err, ErrBadCommand) {
		t.Fatalf("global with target: %v", err)
	}
	k, err := n.SetKill(ctx, newKill("k1", api.KillAction, "crm.*"))
	if err != nil || !k.Active || k.Revision == 0 || n.KillRevision() != k.Revision {
		t.Fatalf("set %+v, %v (kill revision %d)", k, err, n.KillRevision())
	}
	if a, _ := n.Approval("ap1"); a.State != api.ApprovalVoided || a.Revision != k.Revision {
		t.Fatalf("approval after the kill %+v", a)
	}
	if _, err := n.ConsumeApproval(ctx, "ap1", "a1", "1", "crm.write", "d1", "inv", t0.Add(2*time.Minute)); !errors.Is(err, ErrApprovalState) {
		t.Fatalf("consume after the kill: %v", err)
	}
	if _, err := n.CreateApproval(ctx, newApproval("ap2")); !errors.Is(err, ErrKilled) {
		t.Fatalf("create under the kill: %v", err)
	}
	k2 := newKill("k2", api.KillTenant, "acme")
	k2.CreatedAt = t0
	if _, err := n.SetKill(ctx, k2); err != nil {
		t.Fatal(err)
	}
	if ks := n.Kills(); len(ks) != 2 || ks[0].ID != "k2" || ks[1].ID != "k1" {
		t.Fatalf("kills %+v (want by created_at)", ks)
	}
	if _, err := n.LiftKill(ctx, "k1", "", "", t0.Add(time.Hour)); !errors.Is(err, ErrBadCommand) {
		t.Fatalf("lift without by: %v", err)
	}
	l, err := n.LiftKill(ctx, "k1", "lead", "fixed", t0.Add(time.Hour))
	if err != nil || l.Active || n.KillRevision() != l.Revision {
		t.Fatalf("lift %+v, %v", l, err)
	}
	if _, err := n.LiftKill(ctx, "k1", "lead", "", t0.Add(time.Hour)); !errors.Is(err, ErrKillState) {
		t.Fatalf("lift twice: %v", err)
	}
	if _, err := n.LiftKill(ctx, "zz", "lead", "", t0.Add(time.Hour)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("lift unknown: %v", err)
	}
	if ks := n.ActiveKills(); len(ks) != 1 || ks[0].ID != "k2" {
		t.Fatalf("active %+v", ks)
	}
	if got, ok := n.KillSwitch("k1"); !ok || got.LiftReason != "fixed" {
		t.Fatalf("k1 %+v", got)
	}
	var sawVoid bool
	for _, c := range n.changes.all() {
		if c.Kind == ChangeKill && c.Kill.ID == "k1" && c.Kill.Active {
			sawVoid = len(c.Voided) == 1 && c.Voided[0].ID == "ap1"
		}
	}
	if !sawVoid {
		t.Fatal("the kill's change does not list the approval it voided")
	}
}
