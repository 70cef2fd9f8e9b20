package engine

import (
	"strconv"

	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
)

// Request paths of the native evaluator: resolving subject.properties.x and
// friends on the request's Go values, once per decision.

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
