package engine

import (
	"slices"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/policy"
)

// TestResult is the outcome of one case of a bundle's Test documents.
type TestResult struct {
	Suite    string           `json:"suite"`
	Case     string           `json:"case"`
	Pos      policy.Pos       `json:"pos"`
	Passed   bool             `json:"passed"`
	Expect   api.Effect       `json:"expect"`
	Request  api.CheckRequest `json:"request"`
	Decision api.Decision     `json:"decision"`
	// Problem says why a failed case failed.
	Problem string `json:"problem,omitempty"`
}

// MapEntities is an EntityLookup over a fixed set of entities, such as the
// entities of a Test document.
type MapEntities map[[2]string]map[string]any

// NewMapEntities indexes entities by type and id; a later entity with the
// same type and id replaces an earlier one.
func NewMapEntities(ents []api.Entity) MapEntities {
	m := make(MapEntities, len(ents))
	for _, e := range ents {
		m[[2]string{e.Type, e.ID}] = e.Properties
	}
	return m
}

// Entity implements EntityLookup.
func (m MapEntities) Entity(typ, id string) (map[string]any, bool) {
	p, ok := m[[2]string{typ, id}]
	return p, ok
}

// RunTests runs every case of the bundle's Test documents, each with the
// entities of its own document. now is used for cases that do not fix it.
func (b *Bundle) RunTests(now time.Time) []TestResult {
	var out []TestResult
	for _, ts := range b.src.Tests {
		ents := NewMapEntities(ts.Entities)
		for _, tc := range ts.Cases {
			at := now
			if !tc.Now.IsZero() {
				at = tc.Now
			}
			req := tc.Request
			req.Explain = true
			d := b.Decide(&req, ents, at)
			r := TestResult{Suite: ts.Name, Case: tc.Name, Pos: tc.Pos, Expect: tc.Expect, Request: tc.Request, Decision: d}
			switch {
			case d.Decision != tc.Expect:
				r.Problem = "expected " + string(tc.Expect) + ", got " + string(d.Decision)
			case tc.ExpectRules != nil && !sameRules(tc.ExpectRules, d.Reasons):
				r.Problem = "determining rules differ from expect_rules"
			default:
				r.Passed = true
			}
			out = append(out, r)
		}
	}
	return out
}

func sameRules(want []string, reasons []api.Reason) bool {
	var got []string
	for _, r := range reasons {
		if r.Rule != "" {
			got = append(got, r.Policy+"/"+r.Rule)
		}
	}
	w := slices.Clone(want)
	slices.Sort(w)
	slices.Sort(got)
	return slices.Equal(w, got)
}

// Failed returns the failed results.
func Failed(results []TestResult) []TestResult {
	var f []TestResult
	for _, r := range results {
		if !r.Passed {
			f = append(f, r)
		}
	}
	return f
}
