package jsonschema

import (
	"encoding/json"
	"strings"
	"testing"
)

type instance struct {
	json string
	errs []string // "path: message" substrings, in order; nil means valid
}

func TestKeywords(t *testing.T) {
	for _, tc := range []struct {
		name   string
		schema string
		cases  []instance
	}{
		{"type string", `{"type":"string"}`, []instance{
			{`"x"`, nil}, {`1`, []string{"(root): is 1, want string"}}, {`null`, []string{"is null, want string"}},
		}},
		{"type list", `{"type":["integer","null"]}`, []instance{
			{`null`, nil}, {`3`, nil}, {`3.0`, nil}, {`1e2`, nil}, {`-0`, nil},
			{`3.5`, []string{"is 3.5, want integer or null"}}, {`"3"`, []string{"is a string, want integer or null"}},
		}},
		{"type number accepts integers", `{"type":"number"}`, []instance{{`3`, nil}, {`3.25`, nil}, {`true`, []string{"is a boolean"}}}},
		{"type object, array, boolean", `{"type":["object","array","boolean"]}`, []instance{
			{`{}`, nil}, {`[]`, nil}, {`false`, nil}, {`"s"`, []string{"want object or array or boolean"}},
		}},
		{"big integers", `{"type":"integer","maximum":9007199254740992}`, []instance{
			{`9007199254740992`, nil},
			{`9007199254740993`, []string{"is 9007199254740993, want at most 9007199254740992"}},
			{`123456789012345678901234567890`, []string{"want at most"}},
			{`1e400`, []string{"want at most"}},
			{`1e-400`, []string{"want integer"}},
		}},
		{"enum", `{"enum":["EUR","USD",1,null,{"a":[1]}]}`, []instance{
			{`"EUR"`, nil}, {`1.0`, nil}, {`10e-1`, nil}, {`null`, nil}, {`{"a":[1.00]}`, nil},
			{`"GBP"`, []string{`is "GBP", want one of "EUR", "USD", 1, null, {"a":[1]}`}},
			{`{"a":[1],"b":1}`, []string{"want one of"}},
		}},
		{"const", `{"const":{"x":1,"y":[true]}}`, []instance{
			{`{"y":[true],"x":1.0}`, nil}, {`{"x":2,"y":[true]}`, []string{`is {"x":2,"y":[true]}, want {"x":1,"y":[true]}`}},
		}},
		{"minimum and maximum", `{"minimum":1,"maximum":1000}`, []instance{
			{`1`, nil}, {`1000`, nil}, {`1000.0`, nil}, {`"not a number"`, nil},
			{`1500`, []string{"is 1500, want at most 1000"}}, {`0.5`, []string{"is 0.5, want at least 1"}},
			{`1000.0000000000000001`, []string{"want at most 1000"}},
		}},
		{"exclusive bounds", `{"exclusiveMinimum":0,"exclusiveMaximum":1e2}`, []instance{
			{`0.0001`, nil}, {`99.99`, nil}, {`0`, []string{"is 0, want more than 0"}}, {`100`, []string{"is 100, want less than 1e2"}},
			{`-5`, []string{"want more than 0"}},
		}},
		{"negative bounds", `{"minimum":-10.5,"maximum":-0.25}`, []instance{
			{`-10.5`, nil}, {`-1`, nil}, {`-10.6`, []string{"want at least -10.5"}}, {`0`, []string{"want at most -0.25"}},
		}},
		{"string length in runes", `{"minLength":2,"maxLength":3}`, []instance{
			{`"ab"`, nil}, {`"€€€"`, nil}, {`"a"`, []string{"has 1 character, want at least 2"}},
			{`"abcd"`, []string{"has 4 characters, want at most 3"}}, {`5`, nil},
		}},
		{"pattern is unanchored", `{"pattern":"[0-9]{3}"}`, []instance{
			{`"ab123"`, nil}, {`"ab12"`, []string{"does not match the pattern [0-9]{3}"}},
		}},
		{"anchored pattern", `{"pattern":"^[a-z]+$"}`, []instance{{`"abc"`, nil}, {`"abc1"`, []string{"does not match"}}}},
		{"properties and required", `{"type":"object","properties":{"amount":{"type":"number","maximum":1000},"note":{"type":"string"}},"required":["amount","currency"]}`, []instance{
			{`{"amount":5,"currency":"EUR"}`, nil},
			{`{"amount":1500,"note":7}`, []string{`(root): missing required property "currency"`, "/amount: is 1500, want at most 1000", "/note: is 7, want string"}},
		}},
		{"additionalProperties false", `{"properties":{"a":{}},"additionalProperties":false}`, []instance{
			{`{"a":1}`, nil}, {`{"a":1,"b/c":2,"d~":3}`, []string{"/b~1c: is not an allowed property (allowed: a)", "/d~0: is not an allowed"}},
		}},
		{"additionalProperties schema", `{"properties":{"a":{}},"additionalProperties":{"type":"integer"}}`, []instance{
			{`{"a":"x","b":2}`, nil}, {`{"b":"x"}`, []string{"/b: is a string, want integer"}},
		}},
		{"min and max properties", `{"minProperties":1,"maxProperties":2}`, []instance{
			{`{"a":1}`, nil}, {`{}`, []string{"has 0 properties, want at least 1"}}, {`{"a":1,"b":2,"c":3}`, []string{"has 3 properties, want at most 2"}},
		}},
		{"items", `{"type":"array","items":{"type":"object","properties":{"amount":{"maximum":10}}}}`, []instance{
			{`[{"amount":1},{}]`, nil},
			{`[{"amount":1},{},{"amount":11}]`, []string{"/2/amount: is 11, want at most 10"}},
			{`[1]`, []string{"/0: is 1, want object"}},
		}},
		{"min and max items", `{"minItems":1,"maxItems":2}`, []instance{
			{`[1]`, nil}, {`[]`, []string{"has 0 items, want at least 1"}}, {`[1,2,3]`, []string{"has 3 items, want at most 2"}},
		}},
		{"uniqueItems", `{"uniqueItems":true}`, []instance{
			{`[1,"1",[1],{"a":1}]`, nil}, {`[1,2,1.0]`, []string{"items 0 and 2 are equal"}},
			{`[{"a":1,"b":2},{"b":2,"a":1}]`, []string{"items 0 and 1 are equal"}},
		}},
		{"allOf", `{"allOf":[{"minimum":1},{"maximum":5}]}`, []instance{
			{`3`, nil}, {`9`, []string{"is 9, want at most 5"}},
		}},
		{"anyOf", `{"anyOf":[{"type":"string"},{"minimum":10}]}`, []instance{
			{`"x"`, nil}, {`11`, nil}, {`5`, []string{"matches none of the anyOf schemas: [0] (root): is 5, want string; [1] (root): is 5, want at least 10"}},
		}},
		{"oneOf", `{"oneOf":[{"type":"integer"},{"minimum":10}]}`, []instance{
			{`5`, nil}, {`10.5`, nil}, {`20`, []string{"matches oneOf schemas 0 and 1, want exactly one"}}, {`1.5`, []string{"matches none of the oneOf schemas"}},
		}},
		{"not", `{"not":{"type":"null"}}`, []instance{{`1`, nil}, {`null`, []string{"matches the schema under not"}}}},
		{"boolean schemas", `{"properties":{"yes":true,"no":false}}`, []instance{
			{`{"yes":1}`, nil}, {`{"no":1}`, []string{"/no: is not allowed here"}},
		}},
		{"annotations are ignored", `{"$schema":"https://json-schema.org/draft/2020-12/schema","$id":"x","title":"t","description":"d","default":1,"examples":[1],"$comment":"c","type":"integer"}`, []instance{
			{`1`, nil},
		}},
		{"empty schema accepts anything", `{}`, []instance{{`[{"a":null}]`, nil}}},
		{"errors sort by path", `{"properties":{"b":{"type":"string"},"a":{"type":"string"}},"required":["c"]}`, []instance{
			{`{"a":1,"b":2}`, []string{`(root): missing required property "c"`, "/a: ", "/b: "}},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Compile([]byte(tc.schema))
			if err != nil {
				t.Fatal(err)
			}
			for _, in := range tc.cases {
				errs := s.ValidateJSON([]byte(in.json))
				if len(errs) != len(in.errs) {
					t.Errorf("%s: got %v, want %d errors %q", in.json, errs, len(in.errs), in.errs)
					continue
				}
				for i, e := range errs {
					if !strings.Contains(e.Error(), in.errs[i]) {
						t.Errorf("%s: error %d is %q, want it to contain %q", in.json, i, e.Error(), in.errs[i])
					}
				}
			}
		})
	}
}

// Values decoded without UseNumber (float64) and Go integers validate alike.
func TestValidateGoValues(t *testing.T) {
	s, err := Compile([]byte(`{"type":"object","properties":{"n":{"type":"integer","maximum":10},"f":{"enum":[1.5]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal([]byte(`{"n":3.0,"f":1.5}`), &v); err != nil {
		t.Fatal(err)
	}
	if errs := s.Validate(v); errs != nil {
		t.Fatalf("float64 values: %v", errs)
	}
	if errs := s.Validate(map[string]any{"n": int64(11), "f": float32(1.5)}); len(errs) != 1 || errs[0].Message != "is 11, want at most 10" {
		t.Fatalf("Go integers: %v", errs)
	}
	if errs := s.Validate(map[string]any{"n": struct{}{}}); len(errs) != 1 || !strings.Contains(errs[0].Message, "not a JSON value") {
		t.Fatalf("a Go struct: %v", errs)
	}
}

func TestValidateJSONRejectsBadInput(t *testing.T) {
	s, err := Compile([]byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{``, `{`, `{} {}`, `{"a":1,"a":2}`, `[1,]`, `{"a" 1}`} {
		errs := s.ValidateJSON([]byte(in))
		if len(errs) != 1 || !strings.Contains(errs[0].Message, "is not valid JSON") {
			t.Errorf("%q: got %v, want one 'not valid JSON' error", in, errs)
		}
	}
}

func BenchmarkValidateJSON(b *testing.B) {
	s, err := Compile([]byte(`{"type":"object","required":["amount","currency"],"additionalProperties":false,
		"properties":{"amount":{"type":"number","exclusiveMinimum":0,"maximum":10000},
		"currency":{"enum":["EUR","USD","GBP"]},"note":{"type":"string","maxLength":200},
		"tags":{"type":"array","items":{"type":"string","pattern":"^[a-z]+$"},"uniqueItems":true}}}`))
	if err != nil {
		b.Fatal(err)
	}
	in := []byte(`{"amount":1500.5,"currency":"EUR","note":"invoice 42","tags":["q3","urgent"]}`)
	b.ReportAllocs()
	for b.Loop() {
		if errs := s.ValidateJSON(in); len(errs) != 1 { // "q3" fails the pattern
			b.Fatal(errs)
		}
	}
}
