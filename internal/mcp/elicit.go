package mcp

import (
	"context"
	"fmt"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/store"
)

// Where the client supports elicitation, a held call also asks through it:
// "this call waits for approval X; wait?". If the user accepts, the call
// stays open until an operator decides (at most MaxApprovalWait, and never
// past the approval's expiry): approved, it redeems the approval and runs
// once, in the same tools/call; denied, it answers the denial. Declined,
// cancelled, or a wait that ran out: the approval_required tool error as
// without elicitation, and the approval stays pending.

// MaxApprovalWait bounds how long a tools/call waits for an approval after
// the user chose to wait.
const MaxApprovalWait = 5 * time.Minute

// approvalPoll is how often a waiting call reads the approval.
const approvalPoll = 100 * time.Millisecond

func supportsElicitation(ss *mcp.ServerSession) bool {
	p := ss.InitializeParams()
	return p != nil && p.Capabilities != nil && p.Capabilities.Elicitation != nil
}

// waitForApproval asks the client whether to wait for approval id and, if
// so, waits for its decision. It returns the decided state (approved or
// denied, with who and why), or "" if the call should not wait.
func (e *Endpoint) waitForApproval(ctx context.Context, ss *mcp.ServerSession, id, action string) (api.Approval, bool) {
	if ss == nil || !supportsElicitation(ss) {
		return api.Approval{}, false
	}
	res, err := ss.Elicit(ctx, &mcp.ElicitParams{
		Mode: "form",
		Message: fmt.Sprintf("The kernel's policy holds %s for an operator's approval (%s). Wait here for the decision? It runs once approved.",
			action, id),
		RequestedSchema: map[string]any{"type": "object", "properties": map[string]any{
			"wait": map[string]any{"type": "boolean", "title": "Wait for the approval", "default": true},
		}},
	})
	if err != nil || res.Action != "accept" {
		return api.Approval{}, false
	}
	if w, ok := res.Content["wait"].(bool); ok && !w {
		return api.Approval{}, false
	}
	wctx, cancel := context.WithTimeout(ctx, MaxApprovalWait)
	defer cancel()
	t := time.NewTicker(approvalPoll)
	defer t.Stop()
	for {
		if a, ok := e.m.approval(id); ok {
			switch store.EffectiveApprovalState(a, e.now()) {
			case api.ApprovalApproved, api.ApprovalDenied:
				return a, true
			case api.ApprovalPending:
			default:
				return api.Approval{}, false // expired or voided
			}
		}
		select {
		case <-wctx.Done():
			return api.Approval{}, false
		case <-t.C:
		}
	}
}

// approval reads one approval from the replica, if the store can.
func (m *Manager) approval(id string) (api.Approval, bool) {
	if s, ok := m.cfg.Store.(interface {
		Approval(id string) (api.Approval, bool)
	}); ok {
		return s.Approval(id)
	}
	for _, a := range m.cfg.Store.Approvals() {
		if a.ID == id {
			return a, true
		}
	}
	return api.Approval{}, false
}
