package api

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
)

func TestAppendCheckRequestIsMarshal(t *testing.T) {
	reqs := []CheckRequest{
		{},
		{Subject: Entity{Type: "user", ID: "u1", Properties: map[string]any{"tenant": "t1", "role": "ops"}},
			Action: Action{Name: "payments.refund"}, Resource: Entity{Type: "payment", ID: "p1"},
			Context: map[string]any{"env": "prod", "risk": 2.0, "amount": 120.5}},
		{Subject: Entity{Type: "a<b>&c", ID: "\u2028\x01\"\\é\xff"},
			Action:   Action{Name: "x.y", Properties: map[string]any{"z": nil, "a": []any{1.0, "s", true, nil, []any{}, map[string]any{}}}},
			Resource: Entity{Properties: map[string]any{}},
			Context: map[string]any{"big": 1e21, "small": 1e-7, "neg": -0.0, "int": 7, "i64": int64(-3), "n": json.Number("12.50"),
				"nested": map[string]any{"k2": "v", "k1": map[string]any{"deep": []any{2.5e-9}}}, "nilslice": []any(nil), "nilmap": map[string]any(nil),
				"typed": []string{"a", "b"}},
			MinRevision: 42, Explain: true},
	}
	many := map[string]any{}
	for _, k := range []string{"q", "w", "e", "r", "t", "y", "u", "i", "o", "p", "a", "s", "d", "f", "g", "h", "j", "k", "l", "z"} {
		many[k] = k
	}
	reqs = append(reqs, CheckRequest{Context: many})
	for i, req := range reqs {
		want, err := json.Marshal(&req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := AppendCheckRequest([]byte("prefix"), &req)
		if err != nil || !bytes.Equal(got[len("prefix"):], want) {
			t.Errorf("request %d:\n got %s (%v)\nwant %s", i, got, err, want)
		}
	}
	bad := CheckRequest{Context: map[string]any{"nan": math.NaN()}}
	if _, err := AppendCheckRequest(nil, &bad); err == nil {
		t.Error("a NaN was encoded; encoding/json refuses it")
	}
}

func FuzzAppendCheckRequest(f *testing.F) {
	f.Add([]byte(`{"subject":{"type":"user","id":"u1","properties":{"tenant":"t1","role":"ops"}},"action":{"name":"payments.refund"},"resource":{"type":"payment","id":"p1"},"context":{"env":"prod","risk":2,"amount":120}}`))
	f.Add([]byte(`{"subject":{"type":"a","id":"<\u2028>"},"action":{"name":"a.b","properties":{"x":[1e300,-0.0,{"k":null}]}},"resource":{"type":"t","id":"i"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := DecodeCheckRequest(data)
		if err != nil {
			return
		}
		want, merr := json.Marshal(req)
		got, err := AppendCheckRequest(nil, req)
		if (merr == nil) != (err == nil) || merr == nil && !bytes.Equal(got, want) {
			t.Fatalf("got %s (%v)\nwant %s (%v)", got, err, want, merr)
		}
	})
}
