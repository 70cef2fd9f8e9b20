package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/node/nodetest"
)

// TestTwoPersonRule: lifting a global kill switch is held until a second,
// different principal approves it, then runs once.
func TestTwoPersonRule(t *testing.T) {
	n, _ := startNode(t)
	root := bearer(nodetest.Token(n))
	st, out := raw(t, n, "POST", "/v1/kill", "application/json", `{"scope":"global","reason":"incident"}`, root)
	if st != http.StatusCreated {
		t.Fatalf("set: %d %s", st, out)
	}
	var k api.KillSwitch
	_ = json.Unmarshal([]byte(out), &k)
	lift := "/v1/kill/" + k.ID + "/lift"
	body := `{"reason":"over"}`

	st, out = raw(t, n, "POST", lift, "application/json", body, root)
	var held struct {
		ApprovalID string `json:"approval_id"`
	}
	_ = json.Unmarshal([]byte(out), &held)
	if st != http.StatusAccepted || held.ApprovalID == "" || !strings.Contains(out, "approval_required") || len(n.Store.ActiveKills()) != 1 {
		t.Fatalf("lift: %d %s", st, out)
	}
	// Not yet approved: it does not run.
	redeem := map[string]string{"Authorization": root["Authorization"], "X-Aibos-Approval": held.ApprovalID}
	if st, out := raw(t, n, "POST", lift, "application/json", body, redeem); st != http.StatusConflict || len(n.Store.ActiveKills()) != 1 {
		t.Fatalf("redeem before approval: %d %s", st, out)
	}
	// Not by the one who asked.
	if st, out := raw(t, n, "POST", "/v1/approvals/"+held.ApprovalID+"/approve", "application/json", "", root); st != http.StatusForbidden || !strings.Contains(out, "two-person") {
		t.Fatalf("self-approval: %d %s", st, out)
	}
	alice := bearer(nodetest.NewToken(t, n, "alice", "approver"))
	if st, out := raw(t, n, "POST", "/v1/approvals/"+held.ApprovalID+"/approve", "application/json", `{"reason":"confirmed"}`, alice); st != http.StatusOK {
		t.Fatalf("second person approves: %d %s", st, out)
	}
	// Now it runs, once.
	if st, out := raw(t, n, "POST", lift, "application/json", body, redeem); st != http.StatusOK || len(n.Store.ActiveKills()) != 0 {
		t.Fatalf("redeem: %d %s", st, out)
	}
	if st, out := raw(t, n, "POST", lift, "application/json", body, redeem); st != http.StatusConflict {
		t.Fatalf("redeem twice: %d %s", st, out)
	}
	if a, _ := n.Store.Approval(held.ApprovalID); a.State != api.ApprovalConsumed || a.DecidedBy != "alice" || a.Agent != nodetest.RootPrincipal {
		t.Fatalf("approval %+v", a)
	}
	// A kill switch of one agent lifts at once.
	st, out = raw(t, n, "POST", "/v1/kill", "application/json", `{"scope":"agent","target":"a1","reason":"r"}`, root)
	_ = json.Unmarshal([]byte(out), &k)
	if st, out := raw(t, n, "POST", "/v1/kill/"+k.ID+"/lift", "application/json", body, root); st != http.StatusOK {
		t.Fatalf("lift an agent's kill switch: %d %s", st, out)
	}
}
