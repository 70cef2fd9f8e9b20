package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
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
	out, _ := b.RunTestsContext(context.Background(), now)
	return out
}

// RunTestsContext is RunTests that gives up, with ctx's error and no
// results, when ctx is done.
func (b *Bundle) RunTestsContext(ctx context.Context, now time.Time) ([]TestResult, error) {
	var out []TestResult
	for _, ts := range b.src.Tests {
		ents := NewMapEntities(ts.Entities)
		for i, tc := range ts.Cases {
			if i%64 == 0 {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
			}
			at := now
			if !tc.Now.IsZero() {
				at = tc.Now
			}
			// Decide as in production (explain changes which rules are
			// evaluated, so which errors are reported); explain a failure.
			req := tc.Request
			req.Explain = false
			d := b.Decide(&req, ents, at)
			r := TestResult{Suite: ts.Name, Case: tc.Name, Pos: tc.Pos, Expect: tc.Expect, Request: tc.Request, Decision: d}
			r.Problem = check(tc, &d)
			r.Passed = r.Problem == ""
			if !r.Passed {
				req.Explain = true
				r.Decision.Explain = b.Decide(&req, ents, at).Explain
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// check compares a decision with a case's expectations and says what
// differs, or returns "".
func check(tc *policy.TestCase, d *api.Decision) string {
	if d.Decision != tc.Expect {
		return "expected " + string(tc.Expect) + ", got " + string(d.Decision)
	}
	if tc.ExpectRules != nil {
		if got := ruleNames(d.Reasons); !sameSet(tc.ExpectRules, got) {
			return fmt.Sprintf("expect_rules %v, but the determining rules are %v", tc.ExpectRules, got)
		}
	}
	if tc.ExpectObligations != nil {
		got := d.Obligations
		if got == nil {
			got = &api.Obligations{}
		}
		if !sameObligations(tc.ExpectObligations, got) {
			return "expect_obligations " + obligationsString(tc.ExpectObligations) + ", got " + obligationsString(got)
		}
	}
	if tc.ExpectErrors != nil {
		ok := len(tc.ExpectErrors) == len(d.Errors)
		for i := 0; ok && i < len(d.Errors); i++ {
			ok = strings.Contains(d.Errors[i], tc.ExpectErrors[i])
		}
		if !ok {
			return fmt.Sprintf("expect_errors %q, got %q", tc.ExpectErrors, d.Errors)
		}
	}
	return ""
}

// ruleNames lists the "policy/rule" names of reasons that name a rule.
func ruleNames(reasons []api.Reason) []string {
	got := []string{}
	for _, r := range reasons {
		if r.Rule != "" {
			got = append(got, r.Policy+"/"+r.Rule)
		}
	}
	return got
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

func sameObligations(a, b *api.Obligations) bool {
	return a.Audit == b.Audit &&
		equalPtr(a.RateLimit, b.RateLimit) && equalPtr(a.Budget, b.Budget) &&
		sameSet(a.Redact, b.Redact) && sameSet(a.Approvers, b.Approvers)
}

func equalPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func obligationsString(o *api.Obligations) string {
	b, _ := json.Marshal(o)
	return string(b)
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
