package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"unsafe"
)

// The differential tests of the fast decoders: whatever the fast path
// accepts, the encoding/json path accepts too, with the same value.

const validCheck = `{"subject": {"type": "agent", "id": "a1", "properties": {"roles": ["reader", "admin"], "tier": "pro"}},
  "action": {"name": "data.query", "properties": {"rows": 10}},
  "resource": {"type": "table", "id": "t1", "properties": {"region": "eu-west", "tags": {}, "owners": []}},
  "context": {"region": "eu-west", "amount": 2.5, "ok": true, "no": false, "none": null, "n": -0, "big": 1e308},
  "min_revision": 7, "explain": true}`

// checkSeeds are check requests for the tests and the fuzzers: what agents
// send, and what a strict decoder must be careful about.
var checkSeeds = []string{
	validCheck,
	`{"action":{"name":"x"}}`,
	`  {"action" : {"name" : "x"} }  ` + "\n",
	`{"action":{"name":"x"},"context":{}}`,
	`{"action":{"name":"x"},"subject":{"properties":{}},"resource":{"properties":{"a":[]}}}`,
	`{"action":{"name":"x","properties":{"a":{"b":{"c":[1,[2,[3]]]}}}}}`,
	// Escapes and Unicode.
	`{"action":{"name":"x\"y\\z\/\b\f\n\r\t"}}`,
	`{"action":{"name":"\u00e9t\u00E9 \u0000 \u2028"}}`,
	`{"action":{"name":"été ☃ 𝄞"},"context":{"k\u00e9y":"v\nw"}}`,
	`{"action":{"name":"\ud834\udd1e"}}`,
	`{"action":{"name":"\ud834x"}}`,
	`{"action":{"name":"\udd1e"}}`,
	"{\"action\":{\"name\":\"a\xffb\"}}",
	"{\"action\":{\"name\":\"a\xed\xa0\x80b\"}}",
	"{\"action\":{\"name\":\"x\"},\"context\":{\"a\tb\":1}}",
	"{\"action\":{\"name\":\"x\x7f\"}}",
	`{"action":{"name":"\x"}}`,
	`{"action":{"name":"\u12"}}`,
	// Numbers.
	`{"action":{"name":"x"},"context":{"a":1e308,"b":-0,"c":1E+2,"d":-1.5e-7,"e":0.1,"f":123456789012345678901234567890}}`,
	`{"action":{"name":"x"},"context":{"a":1e309}}`,
	`{"action":{"name":"x"},"context":{"a":-1e400}}`,
	`{"action":{"name":"x"},"context":{"a":1e-400}}`,
	`{"action":{"name":"x"},"context":{"a":9007199254740993}}`,
	`{"action":{"name":"x"},"context":{"a":999999999999999}}`,
	`{"action":{"name":"x"},"context":{"a":4.9e-324}}`,
	`{"action":{"name":"x"},"context":{"a":01}}`,
	`{"action":{"name":"x"},"context":{"a":1.}}`,
	`{"action":{"name":"x"},"context":{"a":.5}}`,
	`{"action":{"name":"x"},"context":{"a":+1}}`,
	`{"action":{"name":"x"},"context":{"a":1e}}`,
	`{"action":{"name":"x"},"context":{"a":0x10}}`,
	`{"action":{"name":"x"},"context":{"a":NaN}}`,
	`{"action":{"name":"x"},"min_revision":0}`,
	`{"action":{"name":"x"},"min_revision":18446744073709551615}`,
	`{"action":{"name":"x"},"min_revision":18446744073709551616}`,
	`{"action":{"name":"x"},"min_revision":-0}`,
	`{"action":{"name":"x"},"min_revision":1.0}`,
	`{"action":{"name":"x"},"min_revision":1e2}`,
	`{"action":{"name":"x"},"min_revision":"7"}`,
	`{"action":{"name":"x"},"min_revision":null}`,
	`{"action":{"name":"x"},"explain":false}`,
	`{"action":{"name":"x"},"explain":1}`,
	// Duplicates, case variants, null.
	`{"action":{"name":"x"},"context":{"a":1,"a":2}}`,
	`{"action":{"name":"x"},"action":{"name":"y"}}`,
	`{"action":{"name":"x"},"subject":{"type":"a"},"subject":{"id":"b"}}`,
	`{"action":{"name":"x","name":"y"}}`,
	`{"Action":{"name":"x"}}`,
	`{"action":{"NAME":"x"}}`,
	`{"action":{"name":"x"},"Subject":{"type":"a"}}`,
	`{"action":{"name":"x"},"ſubject":{"type":"a"}}`,
	`{"action":{"name":"x"},"subj\u0065ct":{"type":"a"}}`,
	`{"action":{"name":"x"},"subject":null}`,
	`{"action":{"name":"x"},"context":null}`,
	`{"action":{"name":"x"},"subject":{"properties":null}}`,
	`{"action":{"name":"x","properties":[1]}}`,
	`{"action":{"name":null}}`,
	// Errors.
	``,
	` `,
	`null`,
	`[]`,
	`"x"`,
	`{`,
	`{"action":{"name":"x"}`,
	`{"action":{"name":"x"}} {}`,
	`{"action":{"name":"x"}}]`,
	`{"action":{"name":"x",}}`,
	`{"action":{"name":"x"},}`,
	`{,"action":{"name":"x"}}`,
	`{"action":{"name":"x"} "explain":true}`,
	`{"action":{"name":""}}`,
	`{"action":{}}`,
	`{}`,
	`{"bogus":1,"action":{"name":"x"}}`,
	`{"action":{"name":"x"},"context":{"a":tru}}`,
	`{"action":{"name":"x"},"context":{"a":nul}}`,
	`{"action":{"name":"x"},"context":{"a":[1,]}}`,
	`{"action":{"name":"x"},"context":{"a":[,1]}}`,
	`{"action":{"name":"x"},"context":{1:2}}`,
	`{"action":{"name":"` + strings.Repeat("a", MaxActionNameLen) + `"}}`,
	`{"action":{"name":"` + strings.Repeat("a", MaxActionNameLen+1) + `"}}`,
	`{"action":{"name":"x"},"context":` + strings.Repeat(`{"a":`, MaxNestingDepth) + `1` + strings.Repeat(`}`, MaxNestingDepth) + `}`,
	`{"action":{"name":"x"},"context":` + strings.Repeat(`{"a":`, MaxNestingDepth-1) + `1` + strings.Repeat(`}`, MaxNestingDepth-1) + `}`,
	`{"action":{"name":"x"},"context":{"a":` + strings.Repeat(`[`, MaxNestingDepth-1) + strings.Repeat(`]`, MaxNestingDepth-1) + `}}`,
	`{"action":{"name":"x"},"context":{"a":` + strings.Repeat(`[`, MaxNestingDepth) + strings.Repeat(`]`, MaxNestingDepth) + `}}`,
	`{"action":{"name":"x"},"context":{"l":[` + strings.Repeat("1,", MaxCollectionLen-1) + `1]}}`,
	`{"action":{"name":"x"},"context":{"l":[` + strings.Repeat("1,", MaxCollectionLen) + `1]}}`,
	`{"action":{"name":"x"},"context":{` + manyKeys(MaxCollectionLen) + `}}`,
	`{"action":{"name":"x"},"context":{` + manyKeys(MaxCollectionLen+1) + `}}`,
	`{"action":{"name":"x"},"context":{"a":1,` + manyKeys(MaxCollectionLen) + `}}`,
}

func manyKeys(n int) string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf(`"k%d":%d`, i, i)
	}
	return strings.Join(keys, ",")
}

// mustFast are seeds the fast path must decode itself: the shapes agents
// send every day.
var mustFast = map[string]bool{
	validCheck:                true,
	`{"action":{"name":"x"}}`: true,
	checkSeeds[2]:             true,
	checkSeeds[6]:             true,
	checkSeeds[7]:             true,
	checkSeeds[8]:             true,
	`{"action":{"name":"x"},"context":{"a":1,"a":2}}`: true,
}

func TestDecodeCheckRequestFastMatchesSlow(t *testing.T) {
	for i, s := range checkSeeds {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			fast, ok := decodeCheckFast([]byte(s))
			if mustFast[s] && !ok {
				t.Errorf("the fast path gave up on %.200s", s)
			}
			assertSameCheck(t, []byte(s), fast, ok)
		})
	}
}

// assertSameCheck fails if the fast path accepted data (ok) but the
// encoding/json path rejects it or decodes another value; and it checks that
// the public decoder gives the slow path's result.
func assertSameCheck(t *testing.T, data []byte, fast *CheckRequest, ok bool) {
	t.Helper()
	slow, slowErr := decodeCheckSlow(source{body: data}, data)
	pub, pubErr := DecodeCheckRequest(data)
	if len(data) > MaxCheckRequestSize {
		if !errors.Is(pubErr, ErrRequestTooLarge) {
			t.Fatalf("oversized input: %v", pubErr)
		}
		return
	}
	if ok {
		if slowErr != nil {
			t.Fatalf("fast path accepted %q; encoding/json says %v", data, slowErr)
		}
		if !sameCheck(fast, slow) {
			t.Fatalf("decoding %q:\nfast %#v\nslow %#v", data, fast, slow)
		}
	}
	if (pubErr == nil) != (slowErr == nil) || pubErr != nil && !sameErrorKind(pubErr, slowErr) {
		t.Fatalf("decoding %q: DecodeCheckRequest says %v, the slow path %v", data, pubErr, slowErr)
	}
	if pubErr == nil && !sameCheck(pub, slow) {
		t.Fatalf("decoding %q:\npublic %#v\nslow %#v", data, pub, slow)
	}
	if pubErr != nil && !errors.Is(pubErr, ErrInvalidRequest) && !errors.Is(pubErr, ErrRequestTooLarge) {
		t.Fatalf("decoding %q: error %v wraps neither sentinel", data, pubErr)
	}
}

// sameErrorKind compares errors of the two paths. Their messages may differ
// only where checkValue reports the first of several violations it finds in
// map order.
func sameErrorKind(a, b error) bool {
	return errors.Is(a, ErrInvalidRequest) == errors.Is(b, ErrInvalidRequest) &&
		errors.Is(a, ErrRequestTooLarge) == errors.Is(b, ErrRequestTooLarge)
}

func TestDecodeBatchCheckRequestFastMatchesSlow(t *testing.T) {
	for i, s := range batchSeeds() {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			fast, _, ok := decodeBatchFast([]byte(s), false)
			if i < 2 && !ok {
				t.Errorf("the fast path gave up on %.200s", s)
			}
			assertSameBatch(t, []byte(s), fast, ok)
		})
	}
}

func batchSeeds() []string {
	seeds := []string{
		`{"checks":[{"action":{"name":"a"}},` + validCheck + `]}`,
		`{"checks":[{"action":{"name":"a"}}, {"action":{"name":"b"},"min_revision":3}]}`,
		`{"checks":[]}`,
		`{"checks":null}`,
		`{}`,
		` { "checks" : [ ] } `,
		`{"Checks":[{"action":{"name":"a"}}]}`,
		`{"checks":[{"action":{"name":"a"}}],"checks":[{"action":{"name":"b"}}]}`,
		`{"checks":[{"action":{"name":"a"}},{"action":{}}]}`,
		`{"checks":[{"action":{"name":"a"}},1]}`,
		`{"checks":{}}`,
		`{"checks":[{"action":{"name":"a"}}],"x":1}`,
		`{"checks":[{"action":{"name":"a"}},]}`,
		`{"checks":[{"action":{"name":"a"}}]}{}`,
		`[]`,
		`null`,
		``,
	}
	seeds = append(seeds, `{"checks":[`+strings.Repeat(`{"action":{"name":"a"}},`, MaxBatch-1)+`{"action":{"name":"a"}}]}`)
	seeds = append(seeds, `{"checks":[`+strings.Repeat(`{"action":{"name":"a"}},`, MaxBatch)+`{"action":{"name":"a"}}]}`)
	for _, c := range checkSeeds {
		if len(c) < 2000 {
			seeds = append(seeds, `{"checks":[{"action":{"name":"a"}},`+c+`]}`)
		}
	}
	return seeds
}

func assertSameBatch(t *testing.T, data []byte, fast *BatchCheckRequest, ok bool) {
	t.Helper()
	slow, slowErr := decodeBatchSlow(data)
	pub, pubErr := DecodeBatchCheckRequest(data)
	if len(data) > MaxBatchCheckRequestSize {
		if !errors.Is(pubErr, ErrRequestTooLarge) {
			t.Fatalf("oversized input: %v", pubErr)
		}
		return
	}
	if ok {
		if slowErr != nil {
			t.Fatalf("fast path accepted %.500q; encoding/json says %v", data, slowErr)
		}
		if !sameBatch(fast, slow) {
			t.Fatalf("decoding %.500q:\nfast %#v\nslow %#v", data, fast, slow)
		}
	}
	if (pubErr == nil) != (slowErr == nil) || pubErr != nil && !sameErrorKind(pubErr, slowErr) {
		t.Fatalf("decoding %.500q: DecodeBatchCheckRequest says %v, the slow path %v", data, pubErr, slowErr)
	}
	if pubErr == nil && !sameBatch(pub, slow) {
		t.Fatalf("decoding %.500q:\npublic %#v\nslow %#v", data, pub, slow)
	}
	if pubErr != nil && !errors.Is(pubErr, ErrInvalidRequest) && !errors.Is(pubErr, ErrRequestTooLarge) {
		t.Fatalf("decoding %.500q: error %v wraps neither sentinel", data, pubErr)
	}
}

func sameBatch(a, b *BatchCheckRequest) bool {
	if (a.Checks == nil) != (b.Checks == nil) || len(a.Checks) != len(b.Checks) {
		return false
	}
	for i := range a.Checks {
		if !sameCheck(&a.Checks[i], &b.Checks[i]) {
			return false
		}
	}
	return true
}

// sameCheck is reflect.DeepEqual, with floats compared bit for bit (-0 is
// not 0).
func sameCheck(a, b *CheckRequest) bool {
	return reflect.DeepEqual(a, b) &&
		sameValue(a.Subject.Properties, b.Subject.Properties) &&
		sameValue(a.Action.Properties, b.Action.Properties) &&
		sameValue(a.Resource.Properties, b.Resource.Properties) &&
		sameValue(a.Context, b.Context)
}

func sameValue(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || (a == nil) != (b == nil) || len(a) != len(b) {
			return false
		}
		for k, v := range a {
			if w, ok := b[k]; !ok || !sameValue(v, w) {
				return false
			}
		}
		return true
	case []any:
		b, ok := b.([]any)
		if !ok || (a == nil) != (b == nil) || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !sameValue(a[i], b[i]) {
				return false
			}
		}
		return true
	case float64:
		b, ok := b.(float64)
		return ok && math.Float64bits(a) == math.Float64bits(b)
	}
	return a == b
}

func TestDecodeBatchCheckRequest(t *testing.T) {
	tests := []struct {
		name, body string
		err        error
		msg        string // substring of the error
		n          int
	}{
		{"ok", `{"checks": [{"action": {"name": "a"}}, ` + validCheck + `]}`, nil, "", 2},
		{"empty", `{"checks": []}`, nil, "", 0},
		{"no checks", `{}`, nil, "", 0},
		{"case", `{"CHECKS": [{"action": {"name": "a"}}]}`, nil, "", 1},
		{"item missing name", `{"checks": [{"action": {"name": "a"}}, {"action": {}}, {"action": {"name": "c"}}]}`, ErrInvalidRequest, "checks[1].action.name is missing", 0},
		{"item wrong type", "{\"checks\": [\n{\"action\": {\"name\": \"a\"}},\n {\"action\": {\"name\": \"b\"}, \"subject\": {\"id\": 5}}]}", ErrInvalidRequest, "line 3, column 40: checks[1].subject.id must be a string, not a number", 0},
		{"item unknown field", "{\"checks\": [{\"action\": {\"name\": \"a\"}, \"bogus\": 1}]}", ErrInvalidRequest, `line 1, column 39: checks[0]: unknown field "bogus"`, 0},
		{"item not an object", `{"checks": [{"action": {"name": "a"}}, 7]}`, ErrInvalidRequest, "line 1, column 40: checks[1] must be an object, not a number", 0},
		{"item too deep", `{"checks": [{"action": {"name": "a"}, "context": ` + strings.Repeat(`{"a": `, MaxNestingDepth+1) + `1` + strings.Repeat(`}`, MaxNestingDepth+1) + `}]}`, ErrInvalidRequest, "checks[0].context.a.a", 0},
		{"item too many", `{"checks": [{"action": {"name": "a"}, "context": {"l": [` + strings.Repeat("1,", MaxCollectionLen) + `1]}}]}`, ErrInvalidRequest, "checks[0].context.l has 1001 items", 0},
		{"item too large", `{"checks": [{"action": {"name": "a"}, "context": {"s": "` + strings.Repeat("a", MaxCheckRequestSize) + `"}}]}`, ErrRequestTooLarge, "checks[0] is 1048623 bytes", 0},
		{"too many checks", `{"checks": [` + strings.Repeat(`{"action": {"name": "a"}},`, MaxBatch) + `{"action": {"name": "a"}}]}`, ErrRequestTooLarge, "more than 10000 checks", 0},
		{"too large", `{"checks": [{"action": {"name": "a"}, "context": {"s": "` + strings.Repeat("a", MaxBatchCheckRequestSize) + `"}}]}`, ErrRequestTooLarge, "at most 16777216", 0},
		{"not an object", `[{"action": {"name": "a"}}]`, ErrInvalidRequest, "line 1, column 1: the batch must be a JSON object", 0},
		{"checks not an array", `{"checks": {"action": {"name": "a"}}}`, ErrInvalidRequest, "line 1, column 2: checks must be an array of check requests, not an object", 0},
		{"unknown field", `{"checks": [], "check": []}`, ErrInvalidRequest, `line 1, column 16: unknown field "check"`, 0},
		{"malformed", `{"checks": [{"action": {"name": "a"}},]}`, ErrInvalidRequest, "line 1, column 39: malformed JSON", 0},
		{"truncated", `{"checks": [{"action": {"name": "a"}}`, ErrInvalidRequest, "the JSON ends before the batch object does", 0},
		{"trailing", `{"checks": []} []`, ErrInvalidRequest, "unexpected data after the batch object", 0},
		{"body empty", ``, ErrInvalidRequest, "the body is empty", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := DecodeBatchCheckRequest([]byte(tt.body))
			if tt.err == nil {
				if err != nil {
					t.Fatal(err)
				}
				if len(req.Checks) != tt.n {
					t.Errorf("decoded %d checks, want %d", len(req.Checks), tt.n)
				}
				return
			}
			if req != nil || !errors.Is(err, tt.err) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("got %v, %.300v\nwant an error wrapping %q containing %q", req, err, tt.err, tt.msg)
			}
		})
	}
}

// FuzzDecodeCheckRequestFast: whatever the fast path accepts, encoding/json
// accepts, with the same value; DecodeCheckRequest never panics and always
// answers what the encoding/json path answers.
func FuzzDecodeCheckRequestFast(f *testing.F) {
	for _, s := range checkSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ok := decodeCheckFast(data)
		assertSameCheck(t, data, fast, ok)
		// Most mutations of a request are not a request any more; as a value
		// and as the text of a string inside a valid one, they exercise what
		// the fast path accepts.
		for _, wrapped := range [][]byte{
			fmt.Appendf(nil, `{"action":{"name":"x"},"context":{"v":%s}}`, data),
			fmt.Appendf(nil, `{"action":{"name":"x"},"subject":{"id":"%s","properties":{"%s":1}}}`, data, data),
		} {
			fast, ok := decodeCheckFast(wrapped)
			assertSameCheck(t, wrapped, fast, ok)
		}
	})
}

// FuzzDecodeBatchCheckRequestFast is FuzzDecodeCheckRequestFast for batches.
func FuzzDecodeBatchCheckRequestFast(f *testing.F) {
	for _, s := range batchSeeds() {
		if len(s) < 4096 {
			f.Add([]byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, _, ok := decodeBatchFast(data, false)
		assertSameBatch(t, data, fast, ok)
		// As a check of a valid batch, and as a value in one.
		for _, wrapped := range [][]byte{
			fmt.Appendf(nil, `{"checks":[{"action":{"name":"a"},"context":{"v":1}},%s]}`, data),
			fmt.Appendf(nil, `{"checks":[{"action":{"name":"a"},"context":{"v":1}},{"action":{"name":"b"},"context":{"v":%s}}]}`, data),
		} {
			fast, _, ok := decodeBatchFast(wrapped, false)
			assertSameBatch(t, wrapped, fast, ok)
		}
	})
}

func BenchmarkDecodeCheckRequest(b *testing.B) {
	data := []byte(benchCheck)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := DecodeCheckRequest(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The body of the single-check load test against peer PDPs
	// (bench/vs-peers/check.json).
	peers := []byte(peersCheck)
	b.Run("fast-peers", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(peers)))
		for b.Loop() {
			if _, err := DecodeCheckRequest(peers); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := decodeCheckSlow(source{body: data}, data); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkDecodeBatchCheckRequest(b *testing.B) {
	data := []byte(`{"checks":[` + strings.TrimSuffix(strings.Repeat(benchCheck+",", 500), ",") + `]}`)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := DecodeBatchCheckRequest(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := decodeBatchSlow(data); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// peersCheck is bench/vs-peers/check.json.
const peersCheck = `{"subject":{"type":"user","id":"u1","properties":{"tenant":"t1","role":"ops"}},"action":{"name":"payments.refund"},"resource":{"type":"payment","id":"p1","properties":{"tenant":"t1"}},"context":{"env":"prod","risk":2,"amount":120}}`

// benchCheck is the request of the server's benchmarks, as json.Marshal
// writes it.
var benchCheck = func() string {
	b, err := json.Marshal(CheckRequest{
		Subject: Entity{Type: "agent", ID: "agent-42", Properties: map[string]any{
			"roles": []any{"reader", "role-3", "admin"}, "tenant": "t1", "tier": "pro",
		}},
		Action: Action{Name: "ns03.v017"},
		Resource: Entity{Type: "table", ID: "orders", Properties: map[string]any{
			"region": "eu-west", "classification": "internal", "tenant": "t1",
		}},
		Context: map[string]any{"region": "eu-west", "amount": 250.0},
	})
	if err != nil {
		panic(err)
	}
	return string(bytes.TrimSpace(b))
}()

func TestSmallNumber(t *testing.T) {
	for _, f := range []float64{0, 1, 2, 120, 1023} {
		v, ok := smallNumber(f)
		if g, isFloat := v.(float64); !ok || !isFloat || g != f {
			t.Errorf("smallNumber(%v) = %#v, %v", f, v, ok)
		}
	}
	for _, f := range []float64{math.Copysign(0, -1), -1, 0.5, 1023.5, 1024, 1e300, math.NaN(), math.Inf(1)} {
		if v, ok := smallNumber(f); ok {
			t.Errorf("smallNumber(%v) = %#v, want none", f, v)
		}
	}
}

func TestBoxString(t *testing.T) {
	s := string([]byte("tenant-7"))
	for range 3 {
		if v := boxString(s); v != s {
			t.Fatalf("boxString(%q) = %#v", s, v)
		}
	}
	// Seen twice in a row, s is shared, as a copy that does not keep the
	// request it came from alive, and costs no allocation.
	v := boxString(s).(string)
	if unsafe.StringData(v) == unsafe.StringData(s) {
		t.Error("the shared box holds the caller's string, not a copy")
	}
	if n := testing.AllocsPerRun(100, func() { _ = boxString(s) }); n != 0 {
		t.Errorf("boxString of a shared string: %v allocations, want 0", n)
	}
	long := strings.Repeat("x", strBoxMaxLen+1)
	for range 3 {
		if v := boxString(long); v != long {
			t.Fatalf("boxString(%q) = %#v", long, v)
		}
	}
}
