package engine

import (
	"math"
	"strings"
)

// Operators of the native evaluator: equality, ordering and membership with
// CEL's semantics on the values it handles.

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
