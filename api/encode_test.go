package api

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"testing"
	"time"
)

// fuzzDecision builds a decision from fuzz inputs; the bits of shape choose
// which optional parts are absent, empty or set.
func fuzzDecision(effect, s1, s2, s3 string, version, revision uint64, limit int, budget float64, per int64, shape uint16) Decision {
	bit := func(i int) bool { return shape&(1<<i) != 0 }
	d := Decision{Decision: Effect(effect), Version: version, Revision: revision}
	reason := Reason{Effect: Effect(s3)}
	if bit(0) {
		reason.Policy, reason.Rule = s1, s2
	}
	if bit(1) {
		reason.Layer, reason.Message = s2, s1
	}
	switch {
	case bit(2):
		d.Reasons = []Reason{reason, {Effect: Deny, Message: s1}}
	case bit(3):
		d.Reasons = []Reason{}
	}
	if bit(4) {
		o := &Obligations{}
		if bit(5) {
			o.Audit = s1
		}
		if bit(6) {
			o.RateLimit = &RateLimit{Limit: limit, Per: Duration(per), Key: s2}
		}
		if bit(7) {
			o.Budget = &Budget{Limit: budget, Per: Duration(-per), Key: s3}
		}
		if bit(8) {
			o.Redact = []string{s1, s2}
		} else if bit(9) {
			o.Redact = []string{}
		}
		if bit(10) {
			o.Approvers = []string{s3}
		}
		d.Obligations = o
	}
	if bit(11) {
		d.Errors = []string{s1, s3}
	} else if bit(12) {
		d.Errors = []string{}
	}
	if bit(13) {
		d.Explain = []LayerOutcome{{Layer: s1, Outcome: s2}, {Layer: s2, Outcome: s3, Rules: []Reason{reason}}}
	} else if bit(14) {
		d.Explain = []LayerOutcome{}
	}
	if bit(15) {
		d.Error = &ErrorDetail{Code: s1, Message: s2}
		if bit(0) {
			d.Error.Details = []string{s3}
		}
	}
	return d
}

var encodeSeeds = []struct {
	effect, s1, s2, s3 string
	budget             float64
	per                int64
}{
	{"allow", "p1", "r1", "allow", 100, int64(time.Minute)},
	{"deny", "<script>&amp;</script>", "\"quoted\" \\ back/slash", "require_approval", 0.1, int64(1500 * time.Microsecond)},
	{"require_approval", "\x00\x01\x1f\x7f\b\f\n\r\t", "\u2028\u2029 ☃ 𝄞 é", "deny", 1e21, 0},
	{"\xff\xfe", "a\xc3(b", "\xed\xa0\x80", "\xe2\x82", 1e-7, -int64(time.Hour)},
	{"", "", "", "", -0.0, 1},
	{"x", "y", "z", "w", 123456789.125, math.MaxInt64},
	{"x", "y", "z", "w", math.Inf(1), math.MinInt64},
	{"x", "y", "z", "w", math.NaN(), 999},
	{"x", "y", "z", "w", 5e-324, 1e9},
	{"x", "y", "z", "w", math.MaxFloat64, 59999999999},
}

// FuzzAppendDecision: AppendDecision writes what json.Marshal writes, byte
// for byte, for any decision encoding/json can encode; AppendBatchCheckResponse
// likewise.
func FuzzAppendDecision(f *testing.F) {
	for i, s := range encodeSeeds {
		f.Add(s.effect, s.s1, s.s2, s.s3, uint64(i), uint64(1)<<63+uint64(i), 1000-i*300, s.budget, s.per, uint16(0xffff))
		f.Add(s.effect, s.s1, s.s2, s.s3, uint64(0), uint64(i), i, s.budget, s.per, uint16(i*0x1234))
	}
	f.Fuzz(func(t *testing.T, effect, s1, s2, s3 string, version, revision uint64, limit int, budget float64, per int64, shape uint16) {
		d := fuzzDecision(effect, s1, s2, s3, version, revision, limit, budget, per, shape)
		assertEncodesLikeJSON(t, d)
	})
}

func assertEncodesLikeJSON(t *testing.T, d Decision) {
	t.Helper()
	got := AppendDecision([]byte("prefix"), &d)
	if !bytes.HasPrefix(got, []byte("prefix")) {
		t.Fatalf("AppendDecision dropped what dst held: %q", got)
	}
	got = got[len("prefix"):]
	if !json.Valid(got) {
		t.Fatalf("AppendDecision wrote invalid JSON: %s", got)
	}
	batch := AppendBatchCheckResponse(nil, []Decision{d, d})
	want, err := json.Marshal(&d)
	if err != nil {
		// Only a NaN or infinite budget limit, which is written as null.
		if d.Obligations == nil || d.Obligations.Budget == nil {
			t.Fatalf("json.Marshal: %v", err)
		}
		var back Decision
		if err := json.Unmarshal(got, &back); err != nil || back.Obligations.Budget.Limit != 0 {
			t.Fatalf("a NaN or infinite limit: %s: %v", got, err)
		}
		return
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendDecision wrote\n%s\njson.Marshal writes\n%s", got, want)
	}
	wantBatch, err := json.Marshal(BatchCheckResponse{Results: []Decision{d, d}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(batch, wantBatch) {
		t.Fatalf("AppendBatchCheckResponse wrote\n%s\njson.Marshal writes\n%s", batch, wantBatch)
	}
	// The same, read back, both typed and untyped.
	var gotD, wantD Decision
	var gotV, wantV any
	if json.Unmarshal(got, &gotD) != nil || json.Unmarshal(want, &wantD) != nil ||
		json.Unmarshal(got, &gotV) != nil || json.Unmarshal(want, &wantV) != nil ||
		!reflect.DeepEqual(gotD, wantD) || !reflect.DeepEqual(gotV, wantV) {
		t.Fatalf("read back differently: %s and %s", got, want)
	}
}

func TestAppendDecision(t *testing.T) {
	for i, s := range encodeSeeds {
		for _, shape := range []uint16{0, 0xffff, 0x5555, 0xaaaa, 0x0f0f, 0xf0f0} {
			assertEncodesLikeJSON(t, fuzzDecision(s.effect, s.s1, s.s2, s.s3, uint64(i), uint64(i)*7, i-3, s.budget, s.per, shape))
		}
	}
	if got := AppendBatchCheckResponse(nil, nil); string(got) != `{"results":null}` {
		t.Errorf("nil results: %s", got)
	}
	if got := AppendBatchCheckResponse(nil, []Decision{}); string(got) != `{"results":[]}` {
		t.Errorf("no results: %s", got)
	}
}

func BenchmarkAppendDecision(b *testing.B) {
	d := Decision{Decision: Allow, Version: 3, Revision: 42,
		Reasons:     []Reason{{Policy: "p0417", Rule: "allow-readers", Layer: "tenant", Effect: Allow}},
		Obligations: &Obligations{Audit: "full", RateLimit: &RateLimit{Limit: 100, Per: Duration(time.Minute), Key: "subject.id"}}}
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = AppendDecision(buf[:0], &d)
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(&d); err != nil {
				b.Fatal(err)
			}
		}
	})
}
