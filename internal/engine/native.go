package engine

import (
	"strings"
	"unicode/utf8"

	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/overloads"
	"cel.dev/cel-go/common/types"
)

// The native evaluator runs the common shapes of conditions — comparisons,
// membership, string prefixes, size, has() and boolean logic over request
// fields and literals — directly on the request's Go values, without
// building CEL values. It is a fast path, not a second semantics: it answers
// only when every value it meets has a type the operator expects and the CEL
// result is certain. In every other case (a missing key, a type mismatch,
// NaN, a function it does not know) it reports !ok and CEL evaluates the
// condition, producing the exact result or error. A differential test and a
// fuzz test hold the two to the same answers.
//
// Value nodes return a pointer to their value, nil meaning "ask CEL": the
// value lives in a per-decision slot of the evaluator (request paths and
// computed values, each resolved at most once per decision) or, for
// literals, in the compiled node. Boolean nodes return (result, ok). Nothing
// on this path allocates.

// nkind is the kind of a native value.
type nkind uint8

const (
	nOther  nkind = iota // a value the fast path does not handle
	nNull                // JSON null
	nBool                // bool
	nInt                 // CEL int
	nDouble              // CEL double
	nString              // string
	nList                // []any, []string or []nvalue (a literal)
	nMap                 // map[string]any
	nProps               // the merged properties of subject (i=0) or resource (i=1)
)

// nvalue is a value met by the native evaluator.
type nvalue struct {
	k nkind
	b bool
	i int64
	f float64
	s string
	x any
}

// vnode evaluates an expression to a value; nil means CEL must decide.
type vnode func(ev *evaluator) *nvalue

// bnode evaluates a boolean expression; ok is false when CEL must decide.
type bnode func(ev *evaluator) (v, ok bool)

// nativeCompiler compiles the conditions of one bundle and numbers the
// value slots they use.
type nativeCompiler struct {
	// paths numbers the distinct request paths; other computed values get
	// a slot each, counted by slots.
	paths map[string]int
	slots int
}

func newNativeCompiler() *nativeCompiler { return &nativeCompiler{paths: map[string]int{}} }

// valueSlot caches one value for the current decision.
type valueSlot struct {
	gen uint32
	ok  bool
	v   nvalue
}

func (nc *nativeCompiler) newSlot() int {
	nc.slots++
	return nc.slots - 1
}

// cached wraps the computation of a value in a per-decision slot.
func (nc *nativeCompiler) cached(compute func(ev *evaluator, out *nvalue) bool) vnode {
	slot := nc.newSlot()
	return func(ev *evaluator) *nvalue {
		s := &ev.slots[slot]
		if s.gen != ev.gen {
			s.gen = ev.gen
			s.ok = compute(ev, &s.v)
		}
		if !s.ok {
			return nil
		}
		return &s.v
	}
}

// condition compiles a checked condition into a native evaluator, or
// returns nil when the condition uses something the fast path does not
// cover (it is then always evaluated by CEL).
func (nc *nativeCompiler) condition(e celast.Expr) bnode {
	return nc.boolean(e)
}

// boolean compiles an expression expected to yield a bool.
func (nc *nativeCompiler) boolean(e celast.Expr) bnode {
	if e.Kind() == celast.SelectKind && e.AsSelect().IsTestOnly() {
		return nc.has(e.AsSelect())
	}
	if e.Kind() == celast.CallKind {
		if f := nc.boolCall(e.AsCall()); f != nil {
			return f
		}
		if !nc.isValueCall(e.AsCall()) {
			return nil
		}
	}
	v := nc.value(e)
	if v == nil {
		return nil
	}
	return func(ev *evaluator) (bool, bool) {
		x := v(ev)
		if x == nil || x.k != nBool {
			return false, false
		}
		return x.b, true
	}
}

func (nc *nativeCompiler) isValueCall(c celast.CallExpr) bool {
	switch c.FunctionName() {
	case operators.Index, operators.Conditional, overloads.Size:
		return true
	}
	return false
}

// value compiles an expression to a value node.
func (nc *nativeCompiler) value(e celast.Expr) vnode {
	switch e.Kind() {
	case celast.LiteralKind:
		v, ok := literal(e)
		if !ok {
			return nil
		}
		return func(*evaluator) *nvalue { return &v }
	case celast.ListKind:
		l := e.AsList()
		if len(l.OptionalIndices()) > 0 {
			return nil
		}
		elems := make([]nvalue, 0, len(l.Elements()))
		for _, el := range l.Elements() {
			if el.Kind() != celast.LiteralKind {
				return nil
			}
			v, ok := literal(el)
			if !ok {
				return nil
			}
			elems = append(elems, v)
		}
		v := nvalue{k: nList, x: elems}
		return func(*evaluator) *nvalue { return &v }
	case celast.SelectKind, celast.IdentKind:
		if e.Kind() == celast.SelectKind && e.AsSelect().IsTestOnly() {
			return nc.boolValue(nc.has(e.AsSelect()))
		}
		return nc.path(e)
	case celast.CallKind:
		c := e.AsCall()
		switch name := c.FunctionName(); {
		case name == operators.Index:
			return nc.path(e)
		case name == operators.Conditional && len(c.Args()) == 3:
			cond := nc.boolean(c.Args()[0])
			yes, no := nc.value(c.Args()[1]), nc.value(c.Args()[2])
			if cond == nil || yes == nil || no == nil {
				return nil
			}
			return func(ev *evaluator) *nvalue {
				v, ok := cond(ev)
				switch {
				case !ok:
					return nil
				case v:
					return yes(ev)
				}
				return no(ev)
			}
		case name == overloads.Size:
			var arg celast.Expr
			switch {
			case c.IsMemberFunction() && len(c.Args()) == 0:
				arg = c.Target()
			case !c.IsMemberFunction() && len(c.Args()) == 1:
				arg = c.Args()[0]
			default:
				return nil
			}
			a := nc.value(arg)
			if a == nil {
				return nil
			}
			return nc.cached(func(ev *evaluator, out *nvalue) bool {
				v := a(ev)
				if v == nil {
					return false
				}
				switch v.k {
				case nString:
					*out = nvalue{k: nInt, i: int64(utf8.RuneCountInString(v.s))}
				case nList:
					*out = nvalue{k: nInt, i: int64(listLen(v.x))}
				case nMap:
					*out = nvalue{k: nInt, i: int64(len(v.x.(map[string]any)))}
				default:
					return false
				}
				return true
			})
		}
		return nc.boolValue(nc.boolCall(c))
	}
	return nil
}

// boolValue turns a boolean node into a value node.
func (nc *nativeCompiler) boolValue(b bnode) vnode {
	if b == nil {
		return nil
	}
	return nc.cached(func(ev *evaluator, out *nvalue) bool {
		v, ok := b(ev)
		*out = nvalue{k: nBool, b: v}
		return ok
	})
}

func literal(e celast.Expr) (nvalue, bool) {
	switch v := e.AsLiteral().(type) {
	case types.String:
		return nvalue{k: nString, s: string(v)}, true
	case types.Int:
		return nvalue{k: nInt, i: int64(v)}, true
	case types.Double:
		return nvalue{k: nDouble, f: float64(v)}, true
	case types.Bool:
		return nvalue{k: nBool, b: bool(v)}, true
	case types.Null:
		return nvalue{k: nNull}, true
	}
	return nvalue{}, false
}

// splitPath splits subject.properties["x"].y into its root and field names.
func splitPath(e celast.Expr) (root string, fields []string, ok bool) {
	for {
		switch e.Kind() {
		case celast.IdentKind:
			// Fields were collected from the outside in.
			for i, j := 0, len(fields)-1; i < j; i, j = i+1, j-1 {
				fields[i], fields[j] = fields[j], fields[i]
			}
			return e.AsIdent(), fields, true
		case celast.SelectKind:
			s := e.AsSelect()
			if s.IsTestOnly() {
				return "", nil, false
			}
			fields = append(fields, s.FieldName())
			e = s.Operand()
		case celast.CallKind:
			c := e.AsCall()
			if c.FunctionName() != operators.Index || len(c.Args()) != 2 || c.Args()[1].Kind() != celast.LiteralKind {
				return "", nil, false
			}
			key, isStr := c.Args()[1].AsLiteral().(types.String)
			if !isStr {
				return "", nil, false
			}
			fields = append(fields, string(key))
			e = c.Args()[0]
		default:
			return "", nil, false
		}
	}
}

// has compiles has(x.f).
func (nc *nativeCompiler) has(s celast.SelectExpr) bnode {
	field := s.FieldName()
	op := s.Operand()
	if op.Kind() == celast.IdentKind {
		switch op.AsIdent() {
		case "subject", "resource":
			v := field == "type" || field == "id" || field == "properties"
			return func(*evaluator) (bool, bool) { return v, true }
		case "action":
			v := field == "name" || field == "properties"
			return func(*evaluator) (bool, bool) { return v, true }
		}
	}
	f, ok := nc.operand(op)
	if !ok {
		return nil
	}
	return func(ev *evaluator) (bool, bool) {
		v := f.get(ev)
		if v == nil {
			return false, false
		}
		switch v.k {
		case nMap:
			_, found := v.x.(map[string]any)[field]
			return found, true
		case nProps:
			_, found := ev.prop(int(v.i), field)
			return found, true
		}
		return false, false
	}
}

// boolCall compiles the calls that yield a bool.
func (nc *nativeCompiler) boolCall(c celast.CallExpr) bnode {
	name := c.FunctionName()
	args := c.Args()
	switch {
	case (name == operators.LogicalAnd || name == operators.LogicalOr) && !c.IsMemberFunction():
		var bs []bnode
		for _, a := range args {
			b := nc.boolean(a)
			if b == nil {
				return nil
			}
			bs = append(bs, b)
		}
		return logical(bs, name == operators.LogicalOr)
	case name == operators.LogicalNot && len(args) == 1:
		a := nc.boolean(args[0])
		if a == nil {
			return nil
		}
		return func(ev *evaluator) (bool, bool) {
			v, ok := a(ev)
			return !v, ok
		}
	case name == operators.Conditional && len(args) == 3:
		cond, yes, no := nc.boolean(args[0]), nc.boolean(args[1]), nc.boolean(args[2])
		if cond == nil || yes == nil || no == nil {
			return nil
		}
		return func(ev *evaluator) (bool, bool) {
			v, ok := cond(ev)
			switch {
			case !ok:
				return false, false
			case v:
				return yes(ev)
			}
			return no(ev)
		}
	case (name == operators.Equals || name == operators.NotEquals) && len(args) == 2:
		return nc.equality(args[0], args[1], name == operators.NotEquals)
	case len(args) == 2 && (name == operators.Less || name == operators.LessEquals ||
		name == operators.Greater || name == operators.GreaterEquals):
		l, lok := nc.operand(args[0])
		r, rok := nc.operand(args[1])
		if !lok || !rok {
			return nil
		}
		var lt, eq, gt bool
		switch name {
		case operators.Less:
			lt = true
		case operators.LessEquals:
			lt, eq = true, true
		case operators.Greater:
			gt = true
		default:
			gt, eq = true, true
		}
		return func(ev *evaluator) (bool, bool) {
			a := l.get(ev)
			if a == nil {
				return false, false
			}
			b := r.get(ev)
			if b == nil {
				return false, false
			}
			c, ok := compare(a, b)
			return c < 0 && lt || c == 0 && eq || c > 0 && gt, ok
		}
	case (name == operators.In || name == operators.OldIn) && len(args) == 2:
		l, lok := nc.operand(args[0])
		r, rok := nc.operand(args[1])
		if !lok || !rok {
			return nil
		}
		return func(ev *evaluator) (bool, bool) {
			a := l.get(ev)
			if a == nil {
				return false, false
			}
			b := r.get(ev)
			if b == nil {
				return false, false
			}
			return contains(ev, b, a)
		}
	case c.IsMemberFunction() && len(args) == 1 &&
		(name == overloads.StartsWith || name == overloads.EndsWith || name == overloads.Contains):
		s, sok := nc.operand(c.Target())
		sub, subok := nc.operand(args[0])
		if !sok || !subok {
			return nil
		}
		var test func(string, string) bool
		switch name {
		case overloads.StartsWith:
			test = strings.HasPrefix
		case overloads.EndsWith:
			test = strings.HasSuffix
		default:
			test = strings.Contains
		}
		return func(ev *evaluator) (bool, bool) {
			a := s.get(ev)
			if a == nil || a.k != nString {
				return false, false
			}
			b := sub.get(ev)
			if b == nil || b.k != nString {
				return false, false
			}
			return test(a.s, b.s), true
		}
	}
	return nil
}

// equality compiles == and !=, with a fast case for a comparison with a
// string literal, the most common condition of all.
func (nc *nativeCompiler) equality(le, re celast.Expr, negate bool) bnode {
	if le.Kind() == celast.LiteralKind && re.Kind() != celast.LiteralKind {
		le, re = re, le
	}
	l, ok := nc.operand(le)
	if !ok {
		return nil
	}
	if re.Kind() == celast.LiteralKind {
		if s, isStr := re.AsLiteral().(types.String); isStr {
			lit := string(s)
			return func(ev *evaluator) (bool, bool) {
				a := l.get(ev)
				switch {
				case a == nil:
					return false, false
				case a.k == nString:
					return (a.s == lit) != negate, true
				case a.k == nOther || a.k > nString:
					return false, false
				}
				// Another scalar kind is never equal to a string.
				return negate, true
			}
		}
	}
	r, ok := nc.operand(re)
	if !ok {
		return nil
	}
	return func(ev *evaluator) (bool, bool) {
		a := l.get(ev)
		if a == nil {
			return false, false
		}
		b := r.get(ev)
		if b == nil {
			return false, false
		}
		eq, ok := equal(a, b)
		return eq != negate, ok
	}
}
