package store

import (
	"testing"

	"github.com/aibos/kernel/api"
)

// TestAccessRequestApproval: an AuthZEN access request's approval has no
// agent version unless its subject is an agent; it is created, consumed
// and snapshotted like any other, and an unknown kind is refused.
func TestAccessRequestApproval(t *testing.T) {
	f := newFSM(nil)
	a := newApproval("ar1")
	a.Kind, a.Agent, a.AgentVersion, a.Tenant = api.ApprovalKindAccessRequest, "user:alice", "", ""
	applyOK(t, f, cmdApprovalCreate, approvalCreateCmd{Approval: a})
	bad := a
	bad.ID, bad.Kind = "ar2", "ticket"
	applyErr(t, f, ErrBadCommand, cmdApprovalCreate, approvalCreateCmd{Approval: bad})
	inv := newApproval("ar3")
	inv.AgentVersion = ""
	applyErr(t, f, ErrBadCommand, cmdApprovalCreate, approvalCreateCmd{Approval: inv})

	g := roundTrip(t, f)
	if got := g.st.approvals["ar1"]; got == nil || got.Kind != api.ApprovalKindAccessRequest || got.Agent != "user:alice" {
		t.Fatalf("restored %+v", got)
	}
	applyOK(t, g, cmdApprovalDecide, approvalDecideCmd{ID: "ar1", Approve: true, By: "bob", Time: t0.Add(1)})
	c := consumeCmd("ar1", "ev_1", t0.Add(2))
	c.Agent, c.AgentVersion = "user:alice", ""
	if r := applyOK(t, g, cmdApprovalConsume, c); r.Approval.State != api.ApprovalConsumed {
		t.Fatalf("consumed: %+v", r.Approval)
	}
}
