package jsonschema

import (
	"slices"
	"testing"
)

func FuzzValidate(f *testing.F) {
	f.Add([]byte(`{"type":"object","properties":{"a":{"type":"integer","maximum":10}},"required":["a"],"additionalProperties":false}`), []byte(`{"a":11,"b":1}`))
	f.Add([]byte(`{"anyOf":[{"type":"string","pattern":"^x"},{"items":{"enum":[1,"a"]},"uniqueItems":true}]}`), []byte(`[1,1.0,"a"]`))
	f.Add([]byte(`{"oneOf":[{"minLength":2},{"not":{"const":"ab"}}],"maxLength":3}`), []byte(`"ab"`))
	f.Add([]byte(`{"exclusiveMinimum":-1e3,"multipleOf":2}`), []byte(`-1e3`))
	f.Add([]byte(`true`), []byte(`null`))
	f.Fuzz(func(t *testing.T, schema, instance []byte) {
		s, err := Compile(schema)
		if err != nil {
			return
		}
		errs := s.ValidateJSON(instance)
		if !slices.IsSortedFunc(errs, func(a, b Error) int {
			switch {
			case a.Path < b.Path:
				return -1
			case a.Path > b.Path:
				return 1
			}
			return 0
		}) {
			t.Fatalf("errors not sorted by path: %v", errs)
		}
		for _, e := range errs {
			if e.Message == "" {
				t.Fatalf("empty message in %v", errs)
			}
		}
		again := s.ValidateJSON(instance)
		if !slices.Equal(errs, again) {
			t.Fatalf("not deterministic: %v then %v", errs, again)
		}
	})
}
