package engine

import (
	"slices"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/policy"
)

// mergeObligations folds o into acc, keeping the strictest of each
// obligation: the highest audit level, the lowest rate and budget (compared
// as amount per unit of time, then by the smaller limit), the union of
// redactions and approvers. acc is owned by the decision; o belongs to a
// compiled rule and is never modified.
func mergeObligations(acc, o *api.Obligations) *api.Obligations {
	if o == nil {
		return acc
	}
	if acc == nil {
		acc = &api.Obligations{}
	}
	if policy.AuditRank(o.Audit) > policy.AuditRank(acc.Audit) {
		acc.Audit = o.Audit
	}
	if o.RateLimit != nil && (acc.RateLimit == nil || stricter(float64(o.RateLimit.Limit), o.RateLimit.Per, float64(acc.RateLimit.Limit), acc.RateLimit.Per)) {
		rl := *o.RateLimit
		acc.RateLimit = &rl
	}
	if o.Budget != nil && (acc.Budget == nil || stricter(o.Budget.Limit, o.Budget.Per, acc.Budget.Limit, acc.Budget.Per)) {
		b := *o.Budget
		acc.Budget = &b
	}
	acc.Redact = union(acc.Redact, o.Redact)
	acc.Approvers = union(acc.Approvers, o.Approvers)
	return acc
}

// stricter reports whether limit a per pa allows less than limit b per pb.
func stricter(a float64, pa api.Duration, b float64, pb api.Duration) bool {
	ra, rb := a/float64(pa), b/float64(pb)
	if ra != rb {
		return ra < rb
	}
	return a < b
}

func union(acc, add []string) []string {
	for _, s := range add {
		if !slices.Contains(acc, s) {
			acc = append(acc, s)
		}
	}
	return acc
}
