package jsonschema

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// typeSet is a bitmask of JSON types; 0 means any.
type typeSet uint8

const (
	tObject typeSet = 1 << iota
	tArray
	tString
	tNumber
	tInteger
	tBoolean
	tNull
)

type typeName struct {
	name string
	t    typeSet
}

var typeNames = []typeName{
	{"object", tObject}, {"array", tArray}, {"string", tString}, {"number", tNumber},
	{"integer", tInteger}, {"boolean", tBoolean}, {"null", tNull},
}

func (s typeSet) String() string {
	var names []string
	for _, tn := range typeNames {
		if s&tn.t != 0 {
			names = append(names, tn.name)
		}
	}
	return strings.Join(names, " or ")
}

// node is one compiled (sub)schema. Unset limits are -1 or nil.
type node struct {
	reject bool // the schema false
	types  typeSet

	props      map[string]*node
	propNames  []string // sorted
	required   []string
	additional *node
	minProps   int64
	maxProps   int64

	enum      []string // display, as compact JSON
	enumKeys  map[string]bool
	constKey  string
	constText string
	hasConst  bool

	minimum, maximum, exMinimum, exMaximum *decimal

	minLength, maxLength int64
	pattern              *regexp.Regexp

	items              *node
	minItems, maxItems int64
	unique             bool

	allOf, anyOf, oneOf []*node
	not                 *node
}

var supported = []string{
	"type", "enum", "const",
	"properties", "required", "additionalProperties", "minProperties", "maxProperties",
	"items", "minItems", "maxItems", "uniqueItems",
	"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
	"minLength", "maxLength", "pattern",
	"allOf", "anyOf", "oneOf", "not",
}

var annotations = []string{"title", "description", "$schema", "$id", "$comment", "default", "examples"}

type compiler struct {
	problems []Problem
}

func (c *compiler) problem(path, format string, args ...any) {
	c.problems = append(c.problems, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

// Compile checks a schema and compiles it for validation. The error, if any,
// is a *CompileError listing every problem. The caller bounds the schema's size.
func Compile(schema []byte) (*Schema, error) {
	v, err := decodeStrict(schema)
	if err != nil {
		return nil, &CompileError{Problems: []Problem{{Message: "not valid JSON: " + err.Error()}}}
	}
	c := &compiler{}
	root := c.node(v, "", 0)
	if len(c.problems) > 0 {
		sort.SliceStable(c.problems, func(i, j int) bool { return c.problems[i].Path < c.problems[j].Path })
		return nil, &CompileError{Problems: c.problems}
	}
	return &Schema{root: root}, nil
}

func join(path string, elem ...string) string {
	for _, e := range elem {
		if path == "" {
			path = e
		} else {
			path += "." + e
		}
	}
	return path
}

func (c *compiler) node(v any, path string, depth int) *node {
	n := &node{minProps: -1, maxProps: -1, minLength: -1, maxLength: -1, minItems: -1, maxItems: -1}
	if depth > MaxDepth {
		c.problem(path, "subschemas nested deeper than %d levels", MaxDepth)
		return n
	}
	switch s := v.(type) {
	case bool:
		n.reject = !s
		return n
	case map[string]any:
		keys := make([]string, 0, len(s))
		for k := range s {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			c.keyword(n, k, s[k], path, depth)
		}
		return n
	default:
		c.problem(path, "is %s, want a schema (an object or a boolean)", describeJSON(v))
		return n
	}
}

func (c *compiler) keyword(n *node, k string, v any, path string, depth int) {
	p := join(path, k)
	switch k {
	case "type":
		n.types = c.types(v, p)
	case "enum":
		arr, ok := v.([]any)
		if !ok || len(arr) == 0 {
			c.problem(p, "want a non-empty array of values")
			return
		}
		n.enumKeys = map[string]bool{}
		for _, e := range arr {
			n.enum = append(n.enum, compact(e))
			n.enumKeys[canonicalKey(e)] = true
		}
	case "const":
		n.hasConst, n.constKey, n.constText = true, canonicalKey(v), compact(v)
	case "properties":
		m, ok := v.(map[string]any)
		if !ok {
			c.problem(p, "want an object mapping property names to schemas")
			return
		}
		n.props = map[string]*node{}
		for name := range m {
			n.propNames = append(n.propNames, name)
		}
		sort.Strings(n.propNames)
		for _, name := range n.propNames {
			n.props[name] = c.node(m[name], join(p, name), depth+1)
		}
	case "required":
		arr, ok := v.([]any)
		if !ok {
			c.problem(p, "want an array of property names")
			return
		}
		for _, e := range arr {
			s, ok := e.(string)
			if !ok {
				c.problem(p, "want an array of property names, found %s", describeJSON(e))
				return
			}
			if slices.Contains(n.required, s) {
				c.problem(p, "lists %q twice", s)
				return
			}
			n.required = append(n.required, s)
		}
	case "additionalProperties":
		n.additional = c.node(v, p, depth+1)
	case "items":
		if _, ok := v.([]any); ok {
			c.problem(p, "the array (tuple) form is not supported, want one schema for every item")
			return
		}
		n.items = c.node(v, p, depth+1)
	case "not":
		n.not = c.node(v, p, depth+1)
	case "allOf", "anyOf", "oneOf":
		arr, ok := v.([]any)
		if !ok || len(arr) == 0 {
			c.problem(p, "want a non-empty array of schemas")
			return
		}
		list := make([]*node, len(arr))
		for i, e := range arr {
			list[i] = c.node(e, join(p, strconv.Itoa(i)), depth+1)
		}
		switch k {
		case "allOf":
			n.allOf = list
		case "anyOf":
			n.anyOf = list
		default:
			n.oneOf = list
		}
	case "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum":
		d, ok := toDecimal(v)
		if !ok {
			if _, isBool := v.(bool); isBool && strings.HasPrefix(k, "exclusive") {
				c.problem(p, "want a number (the draft-04 boolean form is not supported: write %q with the bound itself)", k)
			} else {
				c.problem(p, "want a number")
			}
			return
		}
		switch k {
		case "minimum":
			n.minimum = &d
		case "maximum":
			n.maximum = &d
		case "exclusiveMinimum":
			n.exMinimum = &d
		default:
			n.exMaximum = &d
		}
	case "minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties":
		i, ok := count(v)
		if !ok {
			c.problem(p, "want a non-negative integer")
			return
		}
		*map[string]*int64{
			"minLength": &n.minLength, "maxLength": &n.maxLength, "minItems": &n.minItems,
			"maxItems": &n.maxItems, "minProperties": &n.minProps, "maxProperties": &n.maxProps,
		}[k] = i
	case "uniqueItems":
		b, ok := v.(bool)
		if !ok {
			c.problem(p, "want a boolean")
			return
		}
		n.unique = b
	case "pattern":
		s, ok := v.(string)
		if !ok {
			c.problem(p, "want a string holding a regular expression")
			return
		}
		re, err := regexp.Compile(s)
		if err != nil {
			c.problem(p, "not a valid Go (RE2) regular expression: %v", err)
			return
		}
		n.pattern = re
	case "$ref":
		c.problem(p, "$ref is not supported: write the referenced schema inline")
	default:
		if slices.Contains(annotations, k) {
			return
		}
		c.problem(p, "unknown or unsupported keyword %q; supported: %s; ignored annotations: %s",
			k, strings.Join(supported, ", "), strings.Join(annotations, ", "))
	}
}

func (c *compiler) types(v any, p string) typeSet {
	var names []any
	switch t := v.(type) {
	case string:
		names = []any{t}
	case []any:
		names = t
	}
	if len(names) == 0 {
		c.problem(p, "want a type name or a non-empty array of them (object, array, string, number, integer, boolean, null)")
		return 0
	}
	var set typeSet
	for _, e := range names {
		s, _ := e.(string)
		i := slices.IndexFunc(typeNames, func(tn typeName) bool { return tn.name == s })
		if i < 0 {
			c.problem(p, "unknown type %s, want one of object, array, string, number, integer, boolean, null", compact(e))
			return 0
		}
		if set&typeNames[i].t != 0 {
			c.problem(p, "lists %q twice", s)
			return 0
		}
		set |= typeNames[i].t
	}
	return set
}

// count reads a non-negative integer limit; 5.0 counts, and an absurdly large
// one saturates.
func count(v any) (int64, bool) {
	d, ok := toDecimal(v)
	switch {
	case !ok || !d.isInteger() || d.sign() < 0:
		return 0, false
	case d.sign() == 0:
		return 0, true
	case d.exp > 18:
		return math.MaxInt64, true
	}
	i, err := strconv.ParseInt(d.digits+strings.Repeat("0", int(d.exp)-len(d.digits)), 10, 64)
	if err != nil {
		return math.MaxInt64, true
	}
	return i, true
}

// canonicalKey renders a JSON value so that equal values (numbers compared
// by value, objects regardless of member order) have equal keys.
func canonicalKey(v any) string {
	var b strings.Builder
	writeKey(&b, v)
	return b.String()
}

func writeKey(b *strings.Builder, v any) {
	switch t := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(t))
	case string:
		b.WriteString(strconv.Quote(t))
	case []any:
		b.WriteByte('[')
		for i, e := range t {
			if i > 0 {
				b.WriteByte(',')
			}
			writeKey(b, e)
		}
		b.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Quote(k))
			b.WriteByte(':')
			writeKey(b, t[k])
		}
		b.WriteByte('}')
	default:
		if d, ok := toDecimal(v); ok {
			b.WriteString(d.key())
		} else {
			fmt.Fprintf(b, "?%T", v)
		}
	}
}

// compact renders a value as short JSON for messages.
func compact(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%v", v)
	}
	const max = 80
	if len(b) > max {
		return string(b[:max]) + "…"
	}
	return string(b)
}

// describeJSON names a value's JSON type for messages: "a string", "the number 1.5".
func describeJSON(v any) string {
	switch t := v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	default:
		if d, ok := toDecimal(v); ok {
			return "the number " + d.String()
		}
		return fmt.Sprintf("a Go %T, not a JSON value", t)
	}
}
