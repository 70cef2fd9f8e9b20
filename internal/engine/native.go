package engine

import (
	"math"
	"strconv"
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

// pathNode is a compiled selection from a request variable. Each distinct
// path of a bundle has one slot, so it is resolved at most once per decision
// however many conditions read it.
type pathNode struct {
	slot    int
	resolve func(*evaluator, *nvalue) bool
}

// read returns the value of a path in the current decision, nil if CEL
// must decide.
func (ev *evaluator) read(p *pathNode) *nvalue {
	s := &ev.slots[p.slot]
	if s.gen != ev.gen {
		s.gen = ev.gen
		s.ok = p.resolve(ev, &s.v)
	}
	if !s.ok {
		return nil
	}
	return &s.v
}

func (nc *nativeCompiler) pathNode(e celast.Expr) *pathNode {
	root, fields, ok := splitPath(e)
	if !ok {
		return nil
	}
	resolve := resolver(root, fields)
	if resolve == nil {
		return nil
	}
	key := root
	for _, f := range fields {
		key += "\x00" + strconv.Itoa(len(f)) + ":" + f
	}
	slot, seen := nc.paths[key]
	if !seen {
		slot = nc.newSlot()
		nc.paths[key] = slot
	}
	return &pathNode{slot: slot, resolve: resolve}
}

func (nc *nativeCompiler) path(e celast.Expr) vnode {
	p := nc.pathNode(e)
	if p == nil {
		return nil
	}
	return func(ev *evaluator) *nvalue { return ev.read(p) }
}

// operand is a compiled value read by an operator: a literal or a request
// path, read directly (the common cases), or any other value node.
type operand struct {
	lit  *nvalue
	path *pathNode
	fn   vnode
}

func (o *operand) get(ev *evaluator) *nvalue {
	switch {
	case o.lit != nil:
		return o.lit
	case o.path != nil:
		return ev.read(o.path)
	}
	return o.fn(ev)
}

// operand compiles e for an operator; ok is false when e is outside the
// native subset.
func (nc *nativeCompiler) operand(e celast.Expr) (operand, bool) {
	switch e.Kind() {
	case celast.LiteralKind:
		v, ok := literal(e)
		return operand{lit: &v}, ok
	case celast.IdentKind:
		p := nc.pathNode(e)
		return operand{path: p}, p != nil
	case celast.SelectKind:
		if !e.AsSelect().IsTestOnly() {
			p := nc.pathNode(e)
			return operand{path: p}, p != nil
		}
	case celast.CallKind:
		if e.AsCall().FunctionName() == operators.Index {
			p := nc.pathNode(e)
			return operand{path: p}, p != nil
		}
	}
	f := nc.value(e)
	return operand{fn: f}, f != nil
}

// resolver resolves root.fields on a request, or is nil when the path is
// not one the fast path knows.
func resolver(root string, fields []string) func(*evaluator, *nvalue) bool {
	switch root {
	case "subject", "resource":
		who := 0
		if root == "resource" {
			who = 1
		}
		if len(fields) == 0 {
			return nil
		}
		switch fields[0] {
		case "type":
			if len(fields) > 1 {
				return nil
			}
			return func(ev *evaluator, out *nvalue) bool {
				*out = nvalue{k: nString, s: ev.entity(who).Type}
				return true
			}
		case "id":
			if len(fields) > 1 {
				return nil
			}
			return func(ev *evaluator, out *nvalue) bool {
				*out = nvalue{k: nString, s: ev.entity(who).ID}
				return true
			}
		case "properties":
			if len(fields) == 1 {
				return func(ev *evaluator, out *nvalue) bool {
					*out = nvalue{k: nProps, i: int64(who)}
					return true
				}
			}
			key, rest := fields[1], fields[2:]
			if len(rest) == 0 {
				return func(ev *evaluator, out *nvalue) bool {
					x, found := ev.prop(who, key)
					if found {
						*out = native(x)
					}
					return found
				}
			}
			return func(ev *evaluator, out *nvalue) bool {
				x, found := ev.prop(who, key)
				return found && walk(x, rest, out)
			}
		}
		return nil
	case "action":
		if len(fields) == 0 {
			return nil
		}
		switch fields[0] {
		case "name":
			if len(fields) > 1 {
				return nil
			}
			return func(ev *evaluator, out *nvalue) bool {
				*out = nvalue{k: nString, s: ev.req.Action.Name}
				return true
			}
		case "properties":
			rest := fields[1:]
			return func(ev *evaluator, out *nvalue) bool { return walkMap(ev.req.Action.Properties, rest, out) }
		}
		return nil
	case "context":
		return func(ev *evaluator, out *nvalue) bool { return walkMap(ev.req.Context, fields, out) }
	}
	return nil
}

// walkMap selects fields from m; a nil m is the empty map.
func walkMap(m map[string]any, fields []string, out *nvalue) bool {
	if len(fields) == 0 {
		*out = nvalue{k: nMap, x: m}
		return true
	}
	x, found := m[fields[0]]
	return found && walk(x, fields[1:], out)
}

func walk(x any, fields []string, out *nvalue) bool {
	for _, f := range fields {
		m, isMap := x.(map[string]any)
		if !isMap {
			return false
		}
		var found bool
		if x, found = m[f]; !found {
			return false
		}
	}
	*out = native(x)
	return true
}

// native classifies a Go value the way CEL's type adapter would. Lists
// and maps keep x itself: boxing the slice again would allocate.
func native(x any) nvalue {
	switch t := x.(type) {
	case string:
		return nvalue{k: nString, s: t}
	case float64:
		return nvalue{k: nDouble, f: t}
	case bool:
		return nvalue{k: nBool, b: t}
	case []any, []string:
		return nvalue{k: nList, x: x}
	case map[string]any:
		return nvalue{k: nMap, x: x}
	case nil:
		return nvalue{k: nNull}
	case int:
		return nvalue{k: nInt, i: int64(t)}
	case int64:
		return nvalue{k: nInt, i: t}
	case int32:
		return nvalue{k: nInt, i: int64(t)}
	}
	return nvalue{k: nOther}
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

// logical evaluates && (or ||) the way CEL does when no operand errs: the
// first false (true) operand decides. An operand that is not a plain bool
// hands the whole condition to CEL, whose error absorption rules then apply.
func logical(args []bnode, or bool) bnode {
	if len(args) == 2 {
		l, r := args[0], args[1]
		return func(ev *evaluator) (bool, bool) {
			v, ok := l(ev)
			if !ok {
				return false, false
			}
			if v == or {
				return v, true
			}
			return r(ev)
		}
	}
	return func(ev *evaluator) (bool, bool) {
		for _, a := range args {
			v, ok := a(ev)
			if !ok {
				return false, false
			}
			if v == or {
				return v, true
			}
		}
		return !or, true
	}
}

// equal is CEL's heterogeneous equality on scalars: numbers compare by
// value across int and double, other kinds are equal only to their own
// kind. Lists, maps and unknown kinds are left to CEL.
func equal(a, b *nvalue) (eq, ok bool) {
	switch {
	case a.k > nString || b.k > nString || a.k == nOther || b.k == nOther:
		return false, false
	case isNum(a) && isNum(b):
		return cmpNum(a, b) == 0 && !isNaN(a) && !isNaN(b), true
	case a.k != b.k:
		return false, true
	}
	switch a.k {
	case nString:
		return a.s == b.s, true
	case nBool:
		return a.b == b.b, true
	default: // nNull
		return true, true
	}
}

// compare orders numbers (across int and double), strings and bools, as
// CEL does; anything else, and NaN, is left to CEL.
func compare(a, b *nvalue) (int, bool) {
	switch {
	case isNum(a) && isNum(b):
		if isNaN(a) || isNaN(b) {
			return 0, false
		}
		return cmpNum(a, b), true
	case a.k != b.k:
		return 0, false
	case a.k == nString:
		return strings.Compare(a.s, b.s), true
	case a.k == nBool:
		switch {
		case a.b == b.b:
			return 0, true
		case !a.b:
			return -1, true
		}
		return 1, true
	}
	return 0, false
}

func isNum(v *nvalue) bool { return v.k == nInt || v.k == nDouble }

func isNaN(v *nvalue) bool { return v.k == nDouble && math.IsNaN(v.f) }

// cmpNum compares two numbers exactly as CEL's compareDoubleInt does.
func cmpNum(a, b *nvalue) int {
	switch {
	case a.k == nInt && b.k == nInt:
		return cmp3(a.i, b.i)
	case a.k == nDouble && b.k == nDouble:
		return cmp3(a.f, b.f)
	case a.k == nDouble:
		return cmpDoubleInt(a.f, b.i)
	default:
		return -cmpDoubleInt(b.f, a.i)
	}
}

func cmpDoubleInt(d float64, i int64) int {
	switch {
	case d < math.MinInt64:
		return -1
	case d > math.MaxInt64:
		return 1
	}
	return cmp3(d, float64(i))
}

func cmp3[T int64 | float64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// contains is CEL's `elem in coll` for lists of scalars, string-keyed maps
// and the merged entity properties.
func contains(ev *evaluator, coll, elem *nvalue) (in, ok bool) {
	switch coll.k {
	case nList:
		switch l := coll.x.(type) {
		case []string:
			if elem.k != nString {
				// A string list holds no scalar of another kind: CEL's
				// heterogeneous equality says false, not an error.
				return false, elem.k != nOther && elem.k <= nString
			}
			for _, s := range l {
				if s == elem.s {
					return true, true
				}
			}
			return false, true
		case []any:
			if elem.k == nString {
				// The common case: a string in a list of strings.
				for _, x := range l {
					switch s := x.(type) {
					case string:
						if s == elem.s {
							return true, true
						}
					case float64, bool, nil, int, int64, int32:
					default:
						return false, false
					}
				}
				return false, true
			}
			for _, x := range l {
				v := native(x)
				eq, ok := equal(&v, elem)
				if !ok {
					return false, false
				}
				if eq {
					return true, true
				}
			}
			return false, true
		case []nvalue:
			for i := range l {
				eq, ok := equal(&l[i], elem)
				if !ok {
					return false, false
				}
				if eq {
					return true, true
				}
			}
			return false, true
		}
	case nMap:
		if elem.k != nString {
			return false, false
		}
		_, found := coll.x.(map[string]any)[elem.s]
		return found, true
	case nProps:
		if elem.k != nString {
			return false, false
		}
		_, found := ev.prop(int(coll.i), elem.s)
		return found, true
	}
	return false, false
}

func listLen(x any) int {
	switch l := x.(type) {
	case []any:
		return len(l)
	case []string:
		return len(l)
	case []nvalue:
		return len(l)
	}
	return 0
}
