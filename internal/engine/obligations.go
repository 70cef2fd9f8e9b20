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
	if rl := o.RateLimit; rl != nil && (m.rateLimit == nil || stricterRate(rl, m.rateLimit)) {
		m.rateLimit = rl
	}
	if bu := o.Budget; bu != nil && (m.budget == nil || stricterBudget(bu, m.budget)) {
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

// MergeObligations merges b into a, keeping the strictest of each by the
// rules the engine merges the obligations of rules with (DESIGN.md section
// 2, rule 4): the higher audit level, the stricter rate limit and budget (on
// a tie, the one in a), and the union of redactions and approvers, a's
// first. Neither a nor b is modified; the result may share a's or b's limits
// and lists, so it must not be modified in place either (appending to its
// lists is safe). A nil a or b merges as no obligations.
func MergeObligations(a, b *api.Obligations) api.Obligations {
	var o api.Obligations
	if a != nil {
		o = *a
	}
	if b == nil {
		return o
	}
	if policy.AuditRank(b.Audit) > policy.AuditRank(o.Audit) {
		o.Audit = b.Audit
	}
	if b.RateLimit != nil && (o.RateLimit == nil || stricterRate(b.RateLimit, o.RateLimit)) {
		o.RateLimit = b.RateLimit
	}
	if b.Budget != nil && (o.Budget == nil || stricterBudget(b.Budget, o.Budget)) {
		o.Budget = b.Budget
	}
	// Clipped, so that a union that grows copies rather than writing
	// into the spare capacity of a's lists.
	if len(b.Redact) > 0 {
		o.Redact = union(slices.Clip(o.Redact), b.Redact)
	}
	if len(b.Approvers) > 0 {
		o.Approvers = union(slices.Clip(o.Approvers), b.Approvers)
	}
	return o
}

// stricterRate reports whether rate limit a allows less than b.
func stricterRate(a, b *api.RateLimit) bool {
	return stricter(float64(a.Limit), a.Per, float64(b.Limit), b.Per)
}

// stricterBudget reports whether budget a allows less than b.
func stricterBudget(a, b *api.Budget) bool {
	return stricter(a.Limit, a.Per, b.Limit, b.Per)
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
