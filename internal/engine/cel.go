package engine

import (
	"fmt"
	"regexp/syntax"
	"slices"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/checker"
	"cel.dev/cel-go/common"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/overloads"
	"cel.dev/cel-go/common/types"
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
// proportion, not more. That holds for matches only because its pattern is
// a literal of bounded size (see checkRegexes): compiling a pattern costs
// time and memory in proportion to its RE2 program, which a pattern from
// the request could make as large as it likes.
const (
	MaxInputSize   = api.MaxCollectionLen
	DefaultMaxCost = 100_000
)

// Bounds of a matches pattern, which must be a string literal: at most
// MaxRegexSize bytes, compiling to at most MaxRegexProgram RE2
// instructions. Ordinary patterns are far smaller ("^agent-[0-9]+$" is 15
// instructions; [a-z]{1,64} about 130); the program bound refuses repeat
// counts in the thousands, which cost milliseconds to compile and memory at
// every match.
const (
	MaxRegexSize    = 1_000
	MaxRegexProgram = 10_000
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
	if msgs := checkRegexes(a.NativeRep()); len(msgs) > 0 {
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

// checkRegexes requires the pattern of every matches call to be a string
// literal within MaxRegexSize and MaxRegexProgram. CEL compiles a literal
// pattern once, when the condition is planned; any other pattern would be
// compiled at every decision, at a cost the request chooses (a 33 KB
// pattern took a second and hundreds of megabytes).
func checkRegexes(a *celast.AST) []string {
	var msgs []string
	celast.PreOrderVisit(a.Expr(), celast.NewExprVisitor(func(e celast.Expr) {
		if e.Kind() != celast.CallKind || e.AsCall().FunctionName() != overloads.Matches {
			return
		}
		args := e.AsCall().Args()
		if len(args) == 0 {
			return
		}
		pat := args[len(args)-1] // s.matches(p) and matches(s, p)
		loc := startOf(a, pat)
		at := fmt.Sprintf("condition line %d, column %d: ", loc.Line(), loc.Column()+1)
		if pat.Kind() != celast.LiteralKind {
			msgs = append(msgs, at+"the pattern of matches must be a string literal: a pattern computed from the request would be compiled at every decision, at a cost the request chooses; write the pattern in the condition, e.g. subject.id.matches(\"^agent-[0-9]+$\")")
			return
		}
		str, ok := pat.AsLiteral().(types.String)
		if !ok {
			return // not a string: the type checker has said so
		}
		lit := string(str)
		if len(lit) > MaxRegexSize {
			msgs = append(msgs, fmt.Sprintf("%sthe pattern of matches is %d bytes; at most %d are allowed: shorten it, or test with startsWith, endsWith or in",
				at, len(lit), MaxRegexSize))
			return
		}
		re, err := syntax.Parse(lit, syntax.Perl)
		if err != nil {
			msgs = append(msgs, fmt.Sprintf("%sthe pattern of matches is not a valid RE2 expression: %v", at, err))
			return
		}
		prog, err := syntax.Compile(re.Simplify())
		if err != nil {
			msgs = append(msgs, fmt.Sprintf("%sthe pattern of matches is not a valid RE2 expression: %v", at, err))
			return
		}
		if n := len(prog.Inst); n > MaxRegexProgram {
			msgs = append(msgs, fmt.Sprintf("%sthe pattern of matches compiles to %d RE2 instructions; at most %d are allowed: use smaller repeat counts (such as {1,64} rather than {1,5000}) or fewer of them",
				at, n, MaxRegexProgram))
		}
	}))
	return msgs
}

// startOf is where the source of e begins: the least offset of its nodes
// (CEL places an operator's node at the operator, "context.re" at the dot).
func startOf(a *celast.AST, e celast.Expr) common.Location {
	info := a.SourceInfo()
	start := int32(-1)
	celast.PreOrderVisit(e, celast.NewExprVisitor(func(n celast.Expr) {
		if r, ok := info.GetOffsetRange(n.ID()); ok && (start < 0 || r.Start < start) {
			start = r.Start
		}
	}))
	if start < 0 {
		return info.GetStartLocation(e.ID())
	}
	return info.GetLocationByOffset(start)
}
