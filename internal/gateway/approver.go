package gateway

import (
	"fmt"
	"slices"
	"strings"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/store"
)

// NotApproverError is the error of CheckApprover: the principal may not
// decide the approval (the answer is 403, whatever the entry point), and
// why.
type NotApproverError struct{ Reason string }

func (e *NotApproverError) Error() string { return e.Reason }

func notApprover(format string, args ...any) error {
	return &NotApproverError{Reason: fmt.Sprintf(format, args...)}
}

// CheckApprover says whether approver may decide approval a, under the
// rules of separation of duties every entry point shares: only a listed
// approver (when the approval lists any); never the principal who asked
// for a held kernel act (two-person rule); never the agent itself; never
// the owner of the agent whose action it is; never the subject of an
// access request. owner is the registered owner of an agent ("" if none
// or unknown).
func CheckApprover(a api.Approval, approver string, owner func(agent string) string) error {
	switch {
	case len(a.Approvers) > 0 && !slices.Contains(a.Approvers, approver):
		return notApprover("%q may not decide approval %s: its approvers are %s", approver, a.ID, strings.Join(a.Approvers, ", "))
	case a.AgentVersion == store.KernelApproval && approver == a.Agent:
		return notApprover("%q asked for this act and cannot approve it (two-person rule): a second, different principal must", approver)
	case approver == a.Agent || approver == "agent:"+a.Agent:
		return notApprover("an agent cannot approve its own action")
	case a.AgentVersion != store.KernelApproval && owner != nil && owner(a.Agent) != "" && owner(a.Agent) == approver:
		return notApprover("%q owns agent %s and cannot approve its action (separation of duties): another approver must", approver, a.Agent)
	}
	if _, subjectID, _ := strings.Cut(a.Agent, ":"); a.Kind == api.ApprovalKindAccessRequest && approver == subjectID {
		return notApprover("the subject of an access request cannot approve it: another person must")
	}
	return nil
}
