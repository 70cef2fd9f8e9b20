package engine

import (
	"context"
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
	return LoadContext(context.Background(), files, opts)
}

// LoadContext is Load that gives up, with ctx's error, when ctx is done.
func LoadContext(ctx context.Context, files []api.File, opts Options) (*Bundle, error) {
	src, err := policy.ParsePartialContext(ctx, files, policy.WithLimits(opts.Limits))
	if err != nil {
		var perrs policy.ErrorList
		if !errors.As(err, &perrs) || src == nil {
			return nil, err
		}
		if _, cerr := compileRules(ctx, src, opts, true); cerr != nil {
			var cerrs policy.ErrorList
			if !errors.As(cerr, &cerrs) {
				return nil, cerr
			}
			perrs = append(slices.Clone(perrs), cerrs...)
		}
		return nil, perrs.Err()
	}
	return CompileContext(ctx, src, opts)
}

// Prepare loads a bundle and runs its own tests: what must hold before a
// bundle may be published. Bad source is a policy.ErrorList (see Load);
// failing tests are a *TestsFailedError.
func Prepare(files []api.File, opts Options, now time.Time) (*Bundle, error) {
	return PrepareContext(context.Background(), files, opts, now)
}

// PrepareContext is Prepare that gives up, with ctx's error, when ctx is
// done: a publish whose request was cancelled stops compiling and testing.
func PrepareContext(ctx context.Context, files []api.File, opts Options, now time.Time) (*Bundle, error) {
	b, err := LoadContext(ctx, files, opts)
	if err != nil {
		return nil, err
	}
	results, err := b.RunTestsContext(ctx, now)
	if err != nil {
		return nil, err
	}
	if failed := Failed(results); len(failed) > 0 {
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

// DeterminingRule names what determined a decision: "policy/rule" of its
// first reason, or, for implicit and default denials, the layer and the
// message. It is the one name of a decision's rule: the decision log
// stores it, simulation reports and rollout flip counters show it.
func DeterminingRule(rs []api.Reason) string {
	if len(rs) == 0 {
		return ""
	}
	r := rs[0]
	switch {
	case r.Rule != "":
		return r.Policy + "/" + r.Rule
	case r.Layer != "":
		return r.Layer + ": " + r.Message
	default:
		return r.Message
	}
}
