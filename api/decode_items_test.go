package api

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestDecodeBatchCheckItems(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		bad        []int  // slots with an error
		batchErr   string // an error of the whole batch
	}{
		{name: "all valid", body: `{"checks":[{"action":{"name":"a"}},{"action":{"name":"b"}}]}`},
		{name: "missing name", body: `{"checks":[{"action":{"name":"a"}},{"action":{}},{"action":{"name":"c"}}]}`, bad: []int{1}},
		{name: "first and last", body: `{"checks":[1,{"action":{"name":"b"}},{"action":{"name":"c"},"x":1}]}`, bad: []int{0, 2}},
		{name: "wrong type", body: `{"checks":[{"action":{"name":5}},{"action":{"name":"b"}}]}`, bad: []int{0}},
		{name: "all bad", body: `{"checks":[{},null,"x"]}`, bad: []int{0, 1, 2}},
		{name: "malformed JSON", body: `{"checks":[{"action":{"name":"a"}},{]}`, batchErr: "malformed JSON"},
		{name: "not an array", body: `{"checks":{}}`, batchErr: "must be an array"},
		{name: "unknown field", body: `{"checks":[],"x":1}`, batchErr: "unknown field"},
		{name: "checks twice, last counts", body: `{"checks":[{}],"checks":[{"action":{"name":"b"}}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, errs, err := DecodeBatchCheckItems([]byte(tc.body))
			if tc.batchErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.batchErr) {
					t.Fatalf("got %v, want a batch error with %q", err, tc.batchErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(tc.bad) == 0 {
				if errs != nil {
					t.Fatalf("errors %v for a valid batch", errs)
				}
				return
			}
			if len(errs) != len(req.Checks) {
				t.Fatalf("%d errors for %d checks", len(errs), len(req.Checks))
			}
			for i := range errs {
				want := false
				for _, b := range tc.bad {
					want = want || b == i
				}
				if (errs[i] != nil) != want {
					t.Fatalf("slot %d: error %v", i, errs[i])
				}
				if want && (!errors.Is(errs[i], ErrInvalidRequest) || !strings.Contains(errs[i].Error(), "checks[")) {
					t.Fatalf("slot %d: %v does not say which check", i, errs[i])
				}
				if want && !reflect.DeepEqual(req.Checks[i], CheckRequest{}) {
					t.Fatalf("slot %d holds %+v", i, req.Checks[i])
				}
			}
		})
	}
}

// TestDecodeBatchCheckItemsRaw: a batch the fast path reads gives each
// check's bytes, as sent, whitespace inside a check included.
func TestDecodeBatchCheckItemsRaw(t *testing.T) {
	a, b := `{"action":{"name":"a"}}`, `{ "action" : {"name":"b"}, "min_revision":3 }`
	body := []byte(" {\"checks\": [ " + a + " ,\n" + b + "]} ")
	req, raw, errs, err := DecodeBatchCheckItemsRaw(body)
	if err != nil || errs != nil || len(raw) != 2 || string(raw[0]) != a || string(raw[1]) != b {
		t.Fatalf("%q %v %v", raw, errs, err)
	}
	assertRaw(t, body, req, errs, err)
	// One check not valid: the per-item path, no raw.
	body = []byte(`{"checks":[` + a + `,{"action":{}}]}`)
	req, raw, errs, err = DecodeBatchCheckItemsRaw(body)
	if err != nil || errs == nil || raw != nil {
		t.Fatalf("%q %v %v", raw, errs, err)
	}
	assertRaw(t, body, req, errs, err)
}

// assertRaw: DecodeBatchCheckItemsRaw answers as DecodeBatchCheckItems
// did (req, errs, err), and each check's raw JSON, where it gives it, is
// a piece of data that decodes to that check.
func assertRaw(t *testing.T, data []byte, req *BatchCheckRequest, errs []error, err error) {
	t.Helper()
	rreq, raw, rerrs, rerr := DecodeBatchCheckItemsRaw(data)
	if !reflect.DeepEqual(rreq, req) || fmt.Sprint(rerrs) != fmt.Sprint(errs) || fmt.Sprint(rerr) != fmt.Sprint(err) {
		t.Fatalf("with raw %.300q decodes otherwise: %v %v", data, rerrs, rerr)
	}
	if raw == nil {
		return
	}
	if len(raw) != len(req.Checks) || errs != nil {
		t.Fatalf("%d raw checks for %d checks (errors %v)", len(raw), len(req.Checks), errs)
	}
	for i, r := range raw {
		if !bytes.Contains(data, r) {
			t.Fatalf("raw %d %q is not in the body", i, r)
		}
		c, err := DecodeCheckRequest(r)
		if err != nil || !reflect.DeepEqual(*c, req.Checks[i]) {
			t.Fatalf("raw %d %q decodes to %+v %v, not %+v", i, r, c, err, req.Checks[i])
		}
	}
}

// FuzzDecodeBatchCheckItems: the per-item decoder never panics; when the
// strict decoder accepts a batch, it answers the same with no item errors;
// otherwise every valid slot holds what DecodeCheckRequest makes of that
// check, and every error slot an error about that check.
func FuzzDecodeBatchCheckItems(f *testing.F) {
	for _, s := range batchSeeds() {
		if len(s) < 4096 {
			f.Add([]byte(s))
		}
	}
	// A bad check in a "checks" given twice: the last one counts.
	f.Add([]byte(`{"checks":[{}],"checks":[{"action":{"name":"b"}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		strict, strictErr := DecodeBatchCheckRequest(data)
		req, errs, err := DecodeBatchCheckItems(data)
		assertRaw(t, data, req, errs, err)
		switch {
		case strictErr == nil:
			if err != nil || errs != nil || !reflect.DeepEqual(req, strict) {
				t.Fatalf("strict decoder accepts %.300q; per item: %v %v", data, err, errs)
			}
			return
		case err != nil:
			return
		case errs != nil && len(errs) != len(req.Checks):
			t.Fatalf("%d errors for %d checks", len(errs), len(req.Checks))
		}
		for i, e := range errs {
			if e == nil {
				continue
			}
			if !errors.Is(e, ErrInvalidRequest) && !errors.Is(e, ErrRequestTooLarge) {
				t.Fatalf("slot %d: %v wraps no sentinel", i, e)
			}
		}
	})
}
