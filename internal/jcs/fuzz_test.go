package jcs

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"testing"
)

func FuzzCanonicalize(f *testing.F) {
	for _, s := range []string{
		`{"b":[1,2.50,{"y":null,"x":true}],"a":"\u20ac\n"}`, `1e30`, `-0`, `"\ud83d\ude00"`,
		`{"a":1,"a":2}`, `[1,]`, `333333333.33333329`, `0.000001`, `{"\u0080":1,"\ufb33":2,"\ud83d\ude00":3}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := Canonicalize(in)
		if err != nil {
			return
		}
		if !json.Valid(in) {
			t.Fatalf("accepted invalid JSON %q", in)
		}
		if !json.Valid(out) {
			t.Fatalf("%q canonicalized to invalid JSON %q", in, out)
		}
		again, err := Canonicalize(out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", in, out, again, err)
		}
		a, b := decode(t, in), decode(t, out)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("%q means %#v but its canonical form %q means %#v", in, a, out, b)
		}
	})
}

// decode reads JSON with every number turned into the double it denotes, so
// that 1.0 and 1 compare equal.
func decode(t *testing.T, b []byte) any {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("decode %q: %v", b, err)
	}
	return numbersToFloats(t, v)
}

func numbersToFloats(t *testing.T, v any) any {
	switch v := v.(type) {
	case json.Number:
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil {
			t.Fatalf("number %s: %v", v, err)
		}
		return f
	case []any:
		for i := range v {
			v[i] = numbersToFloats(t, v[i])
		}
	case map[string]any:
		for k := range v {
			v[k] = numbersToFloats(t, v[k])
		}
	}
	return v
}
