package store

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
)

// gatewaySeedCommands put an orchestra, approvals in several states and
// kill switches (one active, one lifted) into a state machine seeded with
// seedCommands.
func gatewaySeedCommands(t testing.TB) [][]byte {
	other := newApproval("ap-other")
	other.Agent = "a2"
	return [][]byte{
		mustCmd(t, cmdOrchestraPut, orchestraPutCmd{Orchestra: orchestra("crm", "read", "write"), Time: t0}),
		mustCmd(t, cmdApprovalCreate, approvalCreateCmd{Approval: newApproval("ap-pending")}),
		mustCmd(t, cmdApprovalCreate, approvalCreateCmd{Approval: newApproval("ap-approved")}),
		mustCmd(t, cmdApprovalDecide, approvalDecideCmd{ID: "ap-approved", Approve: true, By: "bob", Time: t0.Add(time.Second)}),
		mustCmd(t, cmdApprovalCreate, approvalCreateCmd{Approval: other}),
		mustCmd(t, cmdKillSet, killSetCmd{Kill: newKill("k-active", api.KillAction, "billing.*")}),
		mustCmd(t, cmdKillSet, killSetCmd{Kill: newKill("k-lifted", api.KillAgent, "zz")}),
		mustCmd(t, cmdKillLift, killLiftCmd{ID: "k-lifted", By: "ops", Reason: "done", Time: t0.Add(time.Hour)}),
		mustCmd(t, cmdTokenCreate, newTokenCmd("acc_root", "a", "root", true, t0)),
		mustCmd(t, cmdTokenCreate, newTokenCmd("acc_gone", "b", "bob", false, t0)),
		mustCmd(t, cmdTokenRevoke, tokenRevokeCmd{Accessor: "acc_gone", By: "root", Time: t0.Add(time.Minute)}),
	}
}

// gatewayFuzzSeeds are commands that apply to the gateway-seeded state.
func gatewayFuzzSeeds(t testing.TB) [][]byte {
	bad := consumeCmd("ap-approved", "inv-2", t0.Add(time.Minute))
	bad.ArgsDigest = "d2"
	return [][]byte{
		mustCmd(t, cmdOrchestraPut, orchestraPutCmd{Orchestra: orchestra("billing.eu", "charge"), Time: t0}),
		mustCmd(t, cmdOrchestraDelete, orchestraDeleteCmd{Name: "crm", Time: t0}),
		mustCmd(t, cmdApprovalCreate, approvalCreateCmd{Approval: newApproval("ap-new")}),
		mustCmd(t, cmdApprovalDecide, approvalDecideCmd{ID: "ap-pending", By: "eve", Reason: "no", Time: t0.Add(time.Minute)}),
		mustCmd(t, cmdApprovalConsume, consumeCmd("ap-approved", "inv-1", t0.Add(time.Minute))),
		mustCmd(t, cmdApprovalConsume, bad),
		mustCmd(t, cmdKillSet, killSetCmd{Kill: newKill("k-global", api.KillGlobal, "")}),
		mustCmd(t, cmdKillLift, killLiftCmd{ID: "k-active", By: "ops", Time: t0.Add(time.Hour)}),
	}
}

// gatewayFSM is seededFSM with gatewaySeedCommands applied.
func gatewayFSM(t testing.TB) *fsm {
	f := seededFSM(t)
	for i, c := range gatewaySeedCommands(t) {
		if err, ok := applyRaw(f, c).(error); ok {
			t.Fatalf("gateway seed %d: %v", i, err)
		}
	}
	return f
}

func TestGatewaySnapshotRoundTrip(t *testing.T) {
	f := gatewayFSM(t)
	g := roundTrip(t, f)
	if len(g.st.orchestras) != 1 || len(g.st.approvals) != 3 || len(g.st.kills) != 2 || g.st.catalogRev != 9 || g.st.killRev != 16 {
		t.Fatalf("restored %d orchestras, %d approvals, %d kills, catalog revision %d, kill revision %d",
			len(g.st.orchestras), len(g.st.approvals), len(g.st.kills), g.st.catalogRev, g.st.killRev)
	}
	// Both replicas apply every next command alike.
	for i, c := range gatewayFuzzSeeds(t) {
		a, b := f.clone(t), g.clone(t)
		ra, rb := applyRaw(a, c), applyRaw(b, c)
		if _, ok := ra.(applyResult); !ok {
			t.Fatalf("seed %d: %v", i, ra)
		}
		if _, ok := rb.(applyResult); !ok || !bytes.Equal(dump(t, a), dump(t, b)) {
			t.Fatalf("seed %d after restore: %v", i, rb)
		}
	}
}

// clone is a copy of f through a snapshot.
func (f *fsm) clone(t testing.TB) *fsm { return roundTrip(t, f) }

func TestSnapshotWithoutGatewayUnchanged(t *testing.T) {
	// A state without orchestras, approvals and kill switches encodes its
	// header exactly as before they existed.
	b := dump(t, seededFSM(t))
	header, _, _ := bytes.Cut(b, []byte("\n"))
	if want := `{"format":1,"revision":8,"versions":3,"nodes":1,"entities":1}`; string(header) != want {
		t.Fatalf("header %s, want %s", header, want)
	}
}

func TestDecodeSnapshotRejectsBadGateway(t *testing.T) {
	rec := func(r snapshotRecord) string {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	o := orchestra("crm", "read")
	sub := orchestra("crm.eu", "read")
	badO := orchestra("kernel", "x")
	a := newApproval("ap1")
	a.State = api.ApprovalPending
	weird := a
	weird.State = api.ApprovalExpired
	noDigest := a
	noDigest.ArgsDigest = ""
	k := newKill("k1", api.KillGlobal, "")
	k.Active = true
	badK := k
	badK.Scope = "moon"
	for name, s := range map[string]string{
		"invalid orchestra":   `{"format":1,"orchestras":1}` + "\n" + rec(snapshotRecord{Orchestra: &badO}),
		"overlapping":         `{"format":1,"orchestras":2}` + "\n" + rec(snapshotRecord{Orchestra: &o}) + "\n" + rec(snapshotRecord{Orchestra: &sub}),
		"duplicate orchestra": `{"format":1,"orchestras":2}` + "\n" + rec(snapshotRecord{Orchestra: &o}) + "\n" + rec(snapshotRecord{Orchestra: &o}),
		"approval as orch":    `{"format":1,"orchestras":1}` + "\n" + rec(snapshotRecord{Approval: &a}),
		"expired is no state": `{"format":1,"approvals":1}` + "\n" + rec(snapshotRecord{Approval: &weird}),
		"approval no digest":  `{"format":1,"approvals":1}` + "\n" + rec(snapshotRecord{Approval: &noDigest}),
		"duplicate approval":  `{"format":1,"approvals":2}` + "\n" + rec(snapshotRecord{Approval: &a}) + "\n" + rec(snapshotRecord{Approval: &a}),
		"bad kill":            `{"format":1,"kills":1}` + "\n" + rec(snapshotRecord{Kill: &badK}),
		"duplicate kill":      `{"format":1,"kills":2}` + "\n" + rec(snapshotRecord{Kill: &k}) + "\n" + rec(snapshotRecord{Kill: &k}),
		"two kinds":           `{"format":1,"kills":1}` + "\n" + rec(snapshotRecord{Kill: &k, Approval: &a}),
		"kill uncounted":      `{"format":1}` + "\n" + rec(snapshotRecord{Kill: &k}),
		"negative":            `{"format":1,"kills":-1}`,
	} {
		if _, err := decodeSnapshot(bytes.NewReader([]byte(s))); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// And the good ones are accepted.
	good := `{"format":1,"orchestras":1,"approvals":1,"kills":1}` + "\n" + rec(snapshotRecord{Orchestra: &o}) + "\n" +
		rec(snapshotRecord{Approval: &a}) + "\n" + rec(snapshotRecord{Kill: &k})
	if _, err := decodeSnapshot(bytes.NewReader([]byte(good))); err != nil {
		t.Fatal(err)
	}
}
