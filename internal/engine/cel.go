package engine

import (
	"fmt"
	"slices"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/checker"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/ext"

	"github.com/aibos/kernel/api"
)

// Cost bounds of conditions. A condition's worst-case cost is estimated
// statically when a bundle is compiled, assuming every list, map and string
// that comes from the request has at most MaxInputSize elements (characters).
// A condition whose estimate exceeds DefaultMaxCost is rejected. The bound
// admits conditions that scan a few request collections linearly (a 1,000-role
// `exists` costs about 3,000) and rejects what is at least quadratic in the
// input (a comprehension nested in another over request data costs about
// 1,000,000), which is what can run away on a hostile request. Because every
// condition is bounded up front, decisions do not track cost at run time.
//
// api.DecodeCheckRequest rejects requests with larger lists and maps, so the
// bound holds for every request that comes through the API. Strings are
// bounded only by the request size (1 MiB); the string functions a
// condition can call (contains, startsWith, matches with RE2, ...) run in
// time linear in their input, so a long string costs a decision time in
// proportion, not more.
const (
	MaxInputSize   = api.MaxCollectionLen
	DefaultMaxCost = 100_000
)

// Parser limits: a condition is at most MaxConditionSize code points and
// nests at most 64 levels, so that parsing hostile source stays cheap.
const (
	MaxConditionSize  = 10_000
	maxParseRecursion = 64
)

// Request fields that conditions may select; a typo is a compile error.
var selectable = map[string][]string{
	"subject":  {"type", "id", "properties"},
	"resource": {"type", "id", "properties"},
	"action":   {"name", "properties"},
}

func newEnv() (*cel.Env, error) {
	dynMap := cel.MapType(cel.StringType, cel.DynType)
	return cel.NewEnv(
		cel.Variable("subject", dynMap),
		cel.Variable("action", dynMap),
		cel.Variable("resource", dynMap),
		cel.Variable("context", dynMap),
		cel.Variable("now", cel.TimestampType),
		ext.Strings(),
		ext.Sets(),
		cel.CrossTypeNumericComparisons(true),
		cel.ParserExpressionSizeLimit(MaxConditionSize),
		cel.ParserRecursionLimit(maxParseRecursion),
		cel.ParserErrorRecoveryLimit(4),
	)
}

// inputSizes tells the cost estimator how large request data may be.
type inputSizes struct{}

func (inputSizes) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	if n.ComputedSize() != nil {
		return nil
	}
	return &checker.SizeEstimate{Min: 0, Max: MaxInputSize}
}

func (inputSizes) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// condition is one compiled CEL condition, shared by every rule with the same
// text.
type condition struct {
	// id numbers the distinct conditions of a bundle, so that a decision
	// evaluates each at most once.
	id   int
	text string
	prg  cel.Program
	// native evaluates the condition without CEL when it can (see
	// native.go); nil when the condition is outside the native subset.
	native bnode
	cost   uint64
}

// compileCondition parses, type-checks, bounds and plans one condition. The
// returned problems are user-facing and carry the CEL location.
func compileCondition(env *cel.Env, nc *nativeCompiler, text string, maxCost uint64) (*condition, []string) {
	a, iss := env.Compile(text)
	if iss != nil && iss.Err() != nil {
		var msgs []string
		for _, e := range iss.Errors() {
			msgs = append(msgs, fmt.Sprintf("condition line %d, column %d: %s",
				e.Location.Line(), e.Location.Column()+1, e.Message))
		}
		return nil, msgs
	}
	if t := a.OutputType(); !t.IsExactType(cel.BoolType) && !t.IsExactType(cel.DynType) {
		return nil, []string{fmt.Sprintf("condition must be a bool, but its type is %s", t)}
	}
	if msgs := checkFields(a.NativeRep()); len(msgs) > 0 {
		return nil, msgs
	}
	est, err := env.EstimateCost(a, inputSizes{})
	if err != nil {
		return nil, []string{fmt.Sprintf("cannot bound the cost of the condition: %v", err)}
	}
	if est.Max > maxCost {
		return nil, []string{fmt.Sprintf("condition may cost up to %d, over the limit of %d (request collections are assumed to hold up to %d items): avoid nesting comprehensions over request data",
			est.Max, maxCost, MaxInputSize)}
	}
	prg, err := env.Program(a, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, []string{fmt.Sprintf("cannot plan the condition: %v", err)}
	}
	return &condition{text: text, prg: prg, native: nc.condition(a.NativeRep().Expr()), cost: est.Max}, nil
}

// checkFields rejects selections of fields that the request shapes do not
// have, such as subject.propertys.
func checkFields(a *celast.AST) []string {
	var msgs []string
	celast.PreOrderVisit(a.Expr(), celast.NewExprVisitor(func(e celast.Expr) {
		if e.Kind() != celast.SelectKind {
			return
		}
		sel := e.AsSelect()
		op := sel.Operand()
		if op.Kind() != celast.IdentKind {
			return
		}
		fields, ok := selectable[op.AsIdent()]
		if !ok || slices.Contains(fields, sel.FieldName()) {
			return
		}
		loc := a.SourceInfo().GetStartLocation(e.ID())
		msgs = append(msgs, fmt.Sprintf("condition line %d, column %d: %s has no field %q (it has %s)",
			loc.Line(), loc.Column()+1, op.AsIdent(), sel.FieldName(), strings.Join(fields, ", ")))
	}))
	return msgs
}
