package engine

import (
	"slices"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/policy"
)

// Obligations of the rules that held are merged into the decision keeping
// the strictest of each (DESIGN.md section 2, rule 4): the highest audit
// level (none < digest < full), the lowest rate limit and budget (compared
// as amount per unit of time, then by the smaller limit), and the union of
// redactions and approvers in the order first seen.

// merger merges the obligations of the rules that held in one decision.
// It keeps pointers to the rules' own limits and copies them out once.
type merger struct {
	any       bool
	audit     int // an index in policy.AuditLevels; -1 for none
	rateLimit *api.RateLimit
	budget    *api.Budget
	redact    []string
	approvers []string
}

// reset empties m, keeping the capacity of its lists.
func (m *merger) reset() {
	*m = merger{audit: -1, redact: m.redact[:0], approvers: m.approvers[:0]}
}

// merge folds in the obligations of a rule that held.
func (m *merger) merge(r *rule) {
	o := r.obligations
	if o == nil {
		return
	}
	m.any = true
	if r.auditRank > m.audit {
		m.audit = r.auditRank
	}
	if rl := o.RateLimit; rl != nil && (m.rateLimit == nil ||
		stricter(float64(rl.Limit), rl.Per, float64(m.rateLimit.Limit), m.rateLimit.Per)) {
		m.rateLimit = rl
	}
	if bu := o.Budget; bu != nil && (m.budget == nil ||
		stricter(bu.Limit, bu.Per, m.budget.Limit, m.budget.Per)) {
		m.budget = bu
	}
	if len(o.Redact) > 0 {
		m.redact = union(m.redact, o.Redact)
	}
	if len(o.Approvers) > 0 {
		m.approvers = union(m.approvers, o.Approvers)
	}
}

// obligations copies the merged obligations out, in one allocation for the
// struct and its limits (plus the lists, if any); nil if no rule that held
// had obligations.
func (m *merger) obligations() *api.Obligations {
	if !m.any {
		return nil
	}
	blk := &struct {
		o  api.Obligations
		rl api.RateLimit
		bu api.Budget
	}{}
	if m.audit >= 0 {
		blk.o.Audit = policy.AuditLevels[m.audit]
	}
	if m.rateLimit != nil {
		blk.rl = *m.rateLimit
		blk.o.RateLimit = &blk.rl
	}
	if m.budget != nil {
		blk.bu = *m.budget
		blk.o.Budget = &blk.bu
	}
	if len(m.redact) > 0 {
		blk.o.Redact = slices.Clone(m.redact)
	}
	if len(m.approvers) > 0 {
		blk.o.Approvers = slices.Clone(m.approvers)
	}
	return &blk.o
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
