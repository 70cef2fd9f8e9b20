package engine

import (
	"errors"
	"fmt"
	"slices"
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

// Load parses and compiles a bundle's source. For bad source it returns a
// policy.ErrorList with every problem at once, the parser's and the
// conditions'.
func Load(files []api.File, opts Options) (*Bundle, error) {
	src, err := policy.ParsePartial(files)
	if err != nil {
		var perrs policy.ErrorList
		if !errors.As(err, &perrs) || src == nil {
			return nil, err
		}
		if _, cerr := compileRules(src, opts, true); cerr != nil {
			var cerrs policy.ErrorList
			if errors.As(cerr, &cerrs) {
				perrs = append(slices.Clone(perrs), cerrs...)
			}
		}
		return nil, perrs.Err()
	}
	return Compile(src, opts)
}

// Prepare loads a bundle and runs its own tests: what must hold before a
// bundle may be published. Bad source is a policy.ErrorList (see Load);
// failing tests are a *TestsFailedError.
func Prepare(files []api.File, opts Options, now time.Time) (*Bundle, error) {
	b, err := Load(files, opts)
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
