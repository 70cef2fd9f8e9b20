package jsonschema

import (
	"errors"
	"strings"
	"testing"
)

func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct{ name, schema, want string }{
		{"not JSON", `{`, "(root): not valid JSON"},
		{"duplicate keyword", `{"maximum":1,"maximum":1e9}`, `duplicate member name "maximum"`},
		{"not a schema", `[1]`, "(root): is an array, want a schema"},
		{"bad minimum", `{"properties":{"amount":{"minimum":"5"}}}`, "properties.amount.minimum: want a number"},
		{"draft-04 exclusive", `{"exclusiveMaximum":true}`, "exclusiveMaximum: want a number (the draft-04 boolean form"},
		{"unknown keyword", `{"format":"email"}`, `format: unknown or unsupported keyword "format"; supported: type, enum`},
		{"typo", `{"propreties":{}}`, `unknown or unsupported keyword "propreties"`},
		{"ref", `{"anyOf":[{"$ref":"#/$defs/x"}]}`, "anyOf.0.$ref: $ref is not supported"},
		{"unknown type", `{"type":"float"}`, `type: unknown type "float"`},
		{"duplicate type", `{"type":["string","string"]}`, `type: lists "string" twice`},
		{"empty type list", `{"type":[]}`, "type: want a type name"},
		{"negative length", `{"minLength":-1}`, "minLength: want a non-negative integer"},
		{"fractional length", `{"maxItems":1.5}`, "maxItems: want a non-negative integer"},
		{"bad pattern", `{"pattern":"(?<=a)b"}`, "pattern: not a valid Go (RE2) regular expression"},
		{"empty enum", `{"enum":[]}`, "enum: want a non-empty array"},
		{"required not strings", `{"required":[1]}`, "required: want an array of property names"},
		{"required twice", `{"required":["a","a"]}`, `required: lists "a" twice`},
		{"empty anyOf", `{"anyOf":[]}`, "anyOf: want a non-empty array of schemas"},
		{"tuple items", `{"items":[{}]}`, "items: the array (tuple) form is not supported"},
		{"bad uniqueItems", `{"uniqueItems":1}`, "uniqueItems: want a boolean"},
		{"bad subschema", `{"not":3}`, "not: is the number 3, want a schema"},
		{"properties not object", `{"properties":[]}`, "properties: want an object"},
		{"too deep", strings.Repeat(`{"not":`, MaxDepth+1) + `{}` + strings.Repeat(`}`, MaxDepth+1), "subschemas nested deeper than 32 levels"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile([]byte(tc.schema))
			var ce *CompileError
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a *CompileError", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestCompileListsEveryProblemSorted(t *testing.T) {
	_, err := Compile([]byte(`{"type":"strin","properties":{"b":{"minimum":"x"},"a":{"maxLength":-2}}}`))
	var ce *CompileError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v", err)
	}
	var paths []string
	for _, p := range ce.Problems {
		paths = append(paths, p.Path)
	}
	if got := strings.Join(paths, ","); got != "properties.a.maxLength,properties.b.minimum,type" {
		t.Fatalf("problems at %s", got)
	}
}

func TestCompileAcceptsDepthLimit(t *testing.T) {
	s := strings.Repeat(`{"not":`, MaxDepth) + `{}` + strings.Repeat(`}`, MaxDepth)
	if _, err := Compile([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

func TestNumbersCompareExactly(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"1", "1.0", 0}, {"1e2", "100", 0}, {"0.1", "1e-1", 0}, {"-0", "0", 0}, {"0.0", "-0e5", 0},
		{"9007199254740993", "9007199254740992", 1}, {"-2", "-10", 1}, {"1e-400", "0", 1},
		{"-1e-400", "0", -1}, {"123.456", "123.4560001", -1}, {"1e99999999999999999999", "1e400", 1},
	} {
		a, ok1 := parseDecimal(tc.a)
		b, ok2 := parseDecimal(tc.b)
		if !ok1 || !ok2 {
			t.Fatalf("parse %s %s", tc.a, tc.b)
		}
		if got := a.cmp(b); got != tc.want {
			t.Errorf("cmp(%s, %s) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := b.cmp(a); got != -tc.want {
			t.Errorf("cmp(%s, %s) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
		if (a.key() == b.key()) != (tc.want == 0) {
			t.Errorf("keys %s and %s", a.key(), b.key())
		}
	}
	for _, s := range []string{"", "-", "1.", ".5", "1e", "1x", "0x10", "+"} {
		if _, ok := parseDecimal(s); ok {
			t.Errorf("parsed %q", s)
		}
	}
}
