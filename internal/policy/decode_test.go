package policy

import (
	"errors"
	"testing"
)

func TestDecodeStrict(t *testing.T) {
	type item struct {
		Name string `json:"name"`
		N    int    `json:"n"`
	}
	type doc struct {
		Name  string `json:"name"`
		Items []item `json:"items"`
	}
	for _, tc := range []struct {
		name, src string
		want      Pos // zero: no error
		msg       string
	}{
		{name: "ok yaml", src: "name: a\nitems:\n  - {name: b, n: 1}\n"},
		{name: "ok json", src: `{"name": "a", "items": [{"name": "b", "n": 1}]}`},
		{name: "unknown field", src: "name: a\nitems:\n  - name: b\n    nn: 1\n", want: Pos{File: "f.yaml", Line: 4, Col: 5}, msg: `unknown field "nn"`},
		{name: "wrong type", src: "name: a\nitems:\n  - name: b\n    n: x\n", want: Pos{File: "f.yaml", Line: 4, Col: 8}, msg: `field "items.n" must be int, not a string`},
		{name: "syntax", src: "name: a\nitems: [\n", want: Pos{File: "f.yaml", Line: 3}},
		{name: "empty", src: "", want: Pos{File: "f.yaml"}, msg: "the file has no document"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d doc
			err := DecodeStrict("f.yaml", []byte(tc.src), &d)
			if tc.want == (Pos{}) {
				if err != nil || d.Name != "a" || len(d.Items) != 1 {
					t.Fatalf("err %v, doc %+v", err, d)
				}
				return
			}
			var pe Error
			if !errors.As(err, &pe) || pe.Pos != tc.want || (tc.msg != "" && pe.Msg != tc.msg) {
				t.Fatalf("err %v; want %s: %s", err, tc.want, tc.msg)
			}
		})
	}
}

func FuzzDecodeStrict(f *testing.F) {
	f.Add([]byte("name: a\nitems:\n  - {name: b, n: 1}\n"))
	f.Add([]byte("a: [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var v struct {
			Name  string           `json:"name"`
			Items []map[string]int `json:"items"`
		}
		_ = DecodeStrict("f", data, &v)
	})
}
