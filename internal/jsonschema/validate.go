package jsonschema

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Validate checks v, a value as encoding/json decodes it into an any (with
// or without UseNumber: json.Number and float64 are both numbers, as are Go's
// integer types), and returns what is wrong with it sorted by path; nil means
// valid.
func (s *Schema) Validate(v any) []Error {
	var errs []Error
	s.root.validate(v, "", &errs)
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Path < errs[j].Path })
	return errs
}

// ValidateJSON decodes b (numbers as json.Number; duplicate member names and
// trailing data rejected) and validates it.
func (s *Schema) ValidateJSON(b []byte) []Error {
	v, err := decodeStrict(b)
	if err != nil {
		return []Error{{Message: "is not valid JSON: " + err.Error()}}
	}
	return s.Validate(v)
}

func pointer(path, elem string) string {
	elem = strings.ReplaceAll(elem, "~", "~0")
	return path + "/" + strings.ReplaceAll(elem, "/", "~1")
}

func add(errs *[]Error, path, format string, args ...any) {
	*errs = append(*errs, Error{Path: path, Message: fmt.Sprintf(format, args...)})
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// kind describes an instance for messages: "is a string", "is 1.5".
func kind(v any) string {
	if d, ok := toDecimal(v); ok {
		return "is " + d.String()
	}
	return "is " + describeJSON(v)
}

func (n *node) validate(v any, path string, errs *[]Error) {
	if n.reject {
		add(errs, path, "is not allowed here")
		return
	}
	if n.types != 0 && !n.hasType(v) {
		add(errs, path, "%s, want %s", kind(v), n.types)
		return // the other keywords would only repeat the mismatch
	}
	if n.enumKeys != nil && !n.enumKeys[canonicalKey(v)] {
		add(errs, path, "is %s, want one of %s", compact(v), strings.Join(n.enum, ", "))
	}
	if n.hasConst && canonicalKey(v) != n.constKey {
		add(errs, path, "is %s, want %s", compact(v), n.constText)
	}
	switch t := v.(type) {
	case string:
		n.validateString(t, path, errs)
	case []any:
		n.validateArray(t, path, errs)
	case map[string]any:
		n.validateObject(t, path, errs)
	default:
		if d, ok := toDecimal(v); ok {
			n.validateNumber(d, path, errs)
		} else if v != nil && !isBool(v) {
			add(errs, path, "is a Go %T, not a JSON value", v)
		}
	}
	for _, sub := range n.allOf {
		sub.validate(v, path, errs)
	}
	if len(n.anyOf) > 0 {
		var firsts []string
		matched := false
		for i, sub := range n.anyOf {
			e := sub.check(v, path)
			if len(e) == 0 {
				matched = true
				break
			}
			firsts = append(firsts, fmt.Sprintf("[%d] %s", i, e[0]))
		}
		if !matched {
			add(errs, path, "matches none of the anyOf schemas: %s", strings.Join(firsts, "; "))
		}
	}
	if len(n.oneOf) > 0 {
		var firsts []string
		var matches []string
		for i, sub := range n.oneOf {
			if e := sub.check(v, path); len(e) == 0 {
				matches = append(matches, strconv.Itoa(i))
			} else {
				firsts = append(firsts, fmt.Sprintf("[%d] %s", i, e[0]))
			}
		}
		switch len(matches) {
		case 0:
			add(errs, path, "matches none of the oneOf schemas: %s", strings.Join(firsts, "; "))
		case 1:
		default:
			add(errs, path, "matches oneOf schemas %s, want exactly one", strings.Join(matches, " and "))
		}
	}
	if n.not != nil && len(n.not.check(v, path)) == 0 {
		add(errs, path, "matches the schema under not, want it not to")
	}
}

// check validates into a fresh list, for the combinators.
func (n *node) check(v any, path string) []Error {
	var errs []Error
	n.validate(v, path, &errs)
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Path < errs[j].Path })
	return errs
}

func isBool(v any) bool { _, ok := v.(bool); return ok }

func (n *node) hasType(v any) bool {
	switch v.(type) {
	case nil:
		return n.types&tNull != 0
	case bool:
		return n.types&tBoolean != 0
	case string:
		return n.types&tString != 0
	case []any:
		return n.types&tArray != 0
	case map[string]any:
		return n.types&tObject != 0
	}
	d, ok := toDecimal(v)
	if !ok {
		return false
	}
	return n.types&tNumber != 0 || n.types&tInteger != 0 && d.isInteger()
}

func (n *node) validateNumber(d decimal, path string, errs *[]Error) {
	if n.minimum != nil && d.cmp(*n.minimum) < 0 {
		add(errs, path, "is %s, want at least %s", d, n.minimum)
	}
	if n.maximum != nil && d.cmp(*n.maximum) > 0 {
		add(errs, path, "is %s, want at most %s", d, n.maximum)
	}
	if n.exMinimum != nil && d.cmp(*n.exMinimum) <= 0 {
		add(errs, path, "is %s, want more than %s", d, n.exMinimum)
	}
	if n.exMaximum != nil && d.cmp(*n.exMaximum) >= 0 {
		add(errs, path, "is %s, want less than %s", d, n.exMaximum)
	}
}

func (n *node) validateString(s string, path string, errs *[]Error) {
	if n.minLength >= 0 || n.maxLength >= 0 {
		l := int64(utf8.RuneCountInString(s))
		if n.minLength >= 0 && l < n.minLength {
			add(errs, path, "has %s, want at least %d", plural(int(l), "character", "characters"), n.minLength)
		}
		if n.maxLength >= 0 && l > n.maxLength {
			add(errs, path, "has %s, want at most %d", plural(int(l), "character", "characters"), n.maxLength)
		}
	}
	if n.pattern != nil && !n.pattern.MatchString(s) {
		add(errs, path, "does not match the pattern %s", n.pattern)
	}
}

func (n *node) validateArray(a []any, path string, errs *[]Error) {
	l := int64(len(a))
	if n.minItems >= 0 && l < n.minItems {
		add(errs, path, "has %s, want at least %d", plural(len(a), "item", "items"), n.minItems)
	}
	if n.maxItems >= 0 && l > n.maxItems {
		add(errs, path, "has %s, want at most %d", plural(len(a), "item", "items"), n.maxItems)
	}
	if n.unique {
		seen := make(map[string]int, len(a))
		for i, e := range a {
			k := canonicalKey(e)
			if j, dup := seen[k]; dup {
				add(errs, path, "items %d and %d are equal, want unique items", j, i)
				break
			}
			seen[k] = i
		}
	}
	if n.items != nil {
		for i, e := range a {
			n.items.validate(e, path+"/"+strconv.Itoa(i), errs)
		}
	}
}

func (n *node) validateObject(m map[string]any, path string, errs *[]Error) {
	l := int64(len(m))
	if n.minProps >= 0 && l < n.minProps {
		add(errs, path, "has %s, want at least %d", plural(len(m), "property", "properties"), n.minProps)
	}
	if n.maxProps >= 0 && l > n.maxProps {
		add(errs, path, "has %s, want at most %d", plural(len(m), "property", "properties"), n.maxProps)
	}
	for _, r := range n.required {
		if _, ok := m[r]; !ok {
			add(errs, path, "missing required property %q", r)
		}
	}
	for _, name := range n.propNames {
		if v, ok := m[name]; ok {
			n.props[name].validate(v, pointer(path, name), errs)
		}
	}
	if n.additional == nil {
		return
	}
	var extra []string
	for k := range m {
		if _, declared := n.props[k]; !declared {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	for _, k := range extra {
		if n.additional.reject {
			if len(n.propNames) == 0 {
				add(errs, pointer(path, k), "is not an allowed property (the schema allows none)")
			} else {
				add(errs, pointer(path, k), "is not an allowed property (allowed: %s)", strings.Join(n.propNames, ", "))
			}
			continue
		}
		n.additional.validate(m[k], pointer(path, k), errs)
	}
}
