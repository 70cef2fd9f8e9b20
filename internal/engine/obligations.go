package engine

import (
	"slices"

	"github.com/aibos/kernel/api"
)

// Obligations of the rules that held are merged into the decision keeping
// the strictest of each (DESIGN.md section 2, rule 4): the highest audit
// level (none < digest < full), the lowest rate limit and budget (compared
// as amount per unit of time, then by the smaller limit), and the union of
// redactions and approvers in the order first seen. The merge is done by
// evaluator.merge; these are its comparisons.

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
