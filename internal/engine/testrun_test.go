package engine

import (
	"errors"
	"strings"
	"testing"

	"github.com/aibos/kernel/api"
)

// TestRunTestsReportsMismatches makes sure a bundle's Test expectations
// can fail, and say why: the corpus would pass vacuously otherwise.
func TestRunTestsReportsMismatches(t *testing.T) {
	const bundle = `
kind: Policy
name: p
layer: tenant
rules:
  - name: r
    effect: allow
    actions: [data.query]
    when: subject.properties.level > 1
    obligations: {audit: full}
---
kind: Test
name: wrong
entities: [{type: agent, id: a1, properties: {level: 5}}]
cases:
  - name: right
    request: {subject: {type: agent, id: a1}, action: {name: data.query}, resource: {type: t, id: r}}
    expect: allow
    expect_rules: [p/r]
    expect_obligations: {audit: full}
    expect_errors: []
  - name: wrong decision
    request: {subject: {type: agent, id: a1}, action: {name: data.query}, resource: {type: t, id: r}}
    expect: deny
  - name: wrong rules
    request: {subject: {type: agent, id: a1}, action: {name: data.query}, resource: {type: t, id: r}}
    expect: allow
    expect_rules: [p/other]
  - name: wrong obligations
    request: {subject: {type: agent, id: a1}, action: {name: data.query}, resource: {type: t, id: r}}
    expect: allow
    expect_obligations: {audit: digest}
  - name: missing error
    request: {subject: {type: agent, id: a1}, action: {name: data.query}, resource: {type: t, id: r}}
    expect: allow
    expect_errors: ["no such key"]
  - name: unexpected error
    request: {subject: {type: agent, id: a2}, action: {name: data.query}, resource: {type: t, id: r}}
    expect: deny
    expect_errors: []
`
	_, err := Prepare([]api.File{{Name: "b.yaml", Data: []byte(bundle)}}, Options{}, corpusNow)
	var tf *TestsFailedError
	if !errors.As(err, &tf) {
		t.Fatalf("want *TestsFailedError, got %v", err)
	}
	want := map[string]string{
		"wrong decision":    "expected deny, got allow",
		"wrong rules":       "expect_rules [p/other], but the determining rules are [p/r]",
		"wrong obligations": `expect_obligations {"audit":"digest"}, got {"audit":"full"}`,
		"missing error":     `expect_errors ["no such key"], got []`,
		"unexpected error":  `expect_errors [], got ["p/r: no such key: level (counted as false)"]`,
	}
	if len(tf.Failed) != len(want) {
		t.Errorf("%d failed cases, want %d:\n%v", len(tf.Failed), len(want), err)
	}
	for _, r := range tf.Failed {
		if w, ok := want[r.Case]; !ok || r.Problem != w {
			t.Errorf("case %q: problem %q, want %q", r.Case, r.Problem, w)
		}
		if r.Decision.Explain == nil {
			t.Errorf("case %q: a failed case should be explained", r.Case)
		}
	}
	if msg := err.Error(); !strings.Contains(msg, `b.yaml:22:5: test "wrong" case "wrong decision": expected deny, got allow (rules: p/r [tenant, allow])`) {
		t.Errorf("error message:\n%s", msg)
	}
}
