package gateway

import (
	"errors"
	"strings"
	"testing"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/store"
)

// TestCheckApprover: the separation-of-duties rules every entry point
// shares when an approval is decided.
func TestCheckApprover(t *testing.T) {
	owner := func(agent string) string {
		if agent == "bot" {
			return "olga"
		}
		return ""
	}
	for _, tc := range []struct {
		name     string
		a        api.Approval
		approver string
		refused  string // a substring of the refusal; "" if allowed
	}{
		{"anyone when none are listed", api.Approval{ID: "a1", Agent: "bot", AgentVersion: "1"}, "ann", ""},
		{"a listed approver", api.Approval{ID: "a1", Agent: "bot", AgentVersion: "1", Approvers: []string{"ann"}}, "ann", ""},
		{"not listed", api.Approval{ID: "a1", Agent: "bot", AgentVersion: "1", Approvers: []string{"ann"}}, "bob", "its approvers are ann"},
		{"the agent itself", api.Approval{ID: "a1", Agent: "bot", AgentVersion: "1"}, "agent:bot", "own action"},
		{"the agent's owner", api.Approval{ID: "a1", Agent: "bot", AgentVersion: "1"}, "olga", "owns agent bot"},
		{"the asker of a kernel act", api.Approval{ID: "a1", Agent: "ann", AgentVersion: store.KernelApproval}, "ann", "two-person rule"},
		{"a second person for a kernel act", api.Approval{ID: "a1", Agent: "ann", AgentVersion: store.KernelApproval}, "bob", ""},
		{"the subject of an access request", api.Approval{ID: "a1", Agent: "user:carol", Kind: api.ApprovalKindAccessRequest}, "carol", "subject of an access request"},
	} {
		err := CheckApprover(tc.a, tc.approver, owner)
		var na *NotApproverError
		switch {
		case tc.refused == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.refused != "" && (!errors.As(err, &na) || !strings.Contains(err.Error(), tc.refused)):
			t.Errorf("%s: %v, want a refusal saying %q", tc.name, err, tc.refused)
		}
	}
}
