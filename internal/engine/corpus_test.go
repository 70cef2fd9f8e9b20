package engine

import (
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/aibos/kernel/internal/policy"
)

// corpusNow is the time of corpus cases that do not fix their own.
var corpusNow = time.Date(2026, 3, 4, 10, 30, 0, 0, time.UTC)

// TestDecisionCorpus runs every bundle of testdata/decisions: each file is
// a bundle whose Test documents state the expected decisions.
func TestDecisionCorpus(t *testing.T) {
	files, err := filepath.Glob("../../testdata/decisions/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus files in testdata/decisions (%v)", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b := loadBundle(t, f)
			results := b.RunTests(corpusNow)
			if len(results) == 0 {
				t.Fatal("the bundle has no test cases")
			}
			for _, r := range results {
				if !r.Passed {
					t.Errorf("%s: case %q: %s\n\treasons: %s\n\terrors: %q\n\texplain: %+v",
						r.Pos, r.Case, r.Problem, DescribeReasons(r.Decision.Reasons), r.Decision.Errors, r.Decision.Explain)
				}
			}
			checkExplainAgrees(t, b)
		})
	}
}

// checkExplainAgrees holds Decide to its promise that explaining a decision
// does not change it: same decision, reasons and obligations.
func checkExplainAgrees(t *testing.T, b *Bundle) {
	t.Helper()
	for _, ts := range b.Source().Tests {
		ents := NewMapEntities(ts.Entities)
		for _, tc := range ts.Cases {
			at := corpusNow
			if !tc.Now.IsZero() {
				at = tc.Now
			}
			req := tc.Request
			plain := b.Decide(&req, ents, at)
			req.Explain = true
			explained := b.Decide(&req, ents, at)
			if plain.Decision != explained.Decision ||
				!reflect.DeepEqual(plain.Reasons, explained.Reasons) ||
				!reflect.DeepEqual(plain.Obligations, explained.Obligations) {
				t.Errorf("%s: case %q: explain changes the decision:\n\tplain:     %s %s %+v\n\texplained: %s %s %+v",
					tc.Pos, tc.Name, plain.Decision, DescribeReasons(plain.Reasons), plain.Obligations,
					explained.Decision, DescribeReasons(explained.Reasons), explained.Obligations)
			}
			if len(explained.Explain) == 0 && len(plain.Reasons) > 0 && plain.Reasons[0].Rule != "" {
				t.Errorf("%s: case %q: explain reported no layer", tc.Pos, tc.Name)
			}
		}
	}
}

func loadBundle(t testing.TB, path string) *Bundle {
	t.Helper()
	files, err := policy.ReadPath(path)
	if err != nil {
		t.Fatal(err)
	}
	src, err := policy.Parse(files)
	if err != nil {
		t.Fatalf("parse %s:\n%v", path, err)
	}
	b, err := Compile(src, Options{Version: 7})
	if err != nil {
		t.Fatalf("compile %s:\n%v", path, err)
	}
	return b
}
