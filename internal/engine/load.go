package engine

import (
	"fmt"
	"strings"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/policy"
)

// TestsFailedError rejects a bundle whose own tests fail.
type TestsFailedError struct {
	Failed []TestResult
}

func (e *TestsFailedError) Error() string {
	return fmt.Sprintf("%d bundle test case(s) failed:\n  %s", len(e.Failed), strings.Join(e.Details(), "\n  "))
}

// Details describes each failed case on one line.
func (e *TestsFailedError) Details() []string {
	out := make([]string, len(e.Failed))
	for i, r := range e.Failed {
		out[i] = fmt.Sprintf("%s: test %q case %q: %s (rules: %s)", r.Pos, r.Suite, r.Case, r.Problem, DescribeReasons(r.Decision.Reasons))
	}
	return out
}

// Prepare parses, compiles and tests a bundle's source: what must hold before
// a bundle may be published. It returns a policy.ErrorList for bad source
// and a *TestsFailedError when the bundle's own tests fail.
func Prepare(files []api.File, opts Options, now time.Time) (*Bundle, error) {
	src, err := policy.Parse(files)
	if err != nil {
		return nil, err
	}
	b, err := Compile(src, opts)
	if err != nil {
		return nil, err
	}
	if failed := Failed(b.RunTests(now)); len(failed) > 0 {
		return nil, &TestsFailedError{Failed: failed}
	}
	return b, nil
}

// DescribeReasons renders reasons as "policy/rule (effect)" or the message.
func DescribeReasons(rs []api.Reason) string {
	if len(rs) == 0 {
		return "none"
	}
	parts := make([]string, len(rs))
	for i, r := range rs {
		if r.Rule != "" {
			parts[i] = fmt.Sprintf("%s/%s [%s, %s]", r.Policy, r.Rule, r.Layer, r.Effect)
		} else {
			parts[i] = r.Message
		}
	}
	return strings.Join(parts, "; ")
}
