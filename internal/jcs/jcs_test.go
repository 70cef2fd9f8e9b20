package jcs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
)

// The IEEE 754 test values of RFC 8785 Appendix B.
func TestNumbersRFC8785AppendixB(t *testing.T) {
	for _, tc := range []struct{ bits, want string }{
		{"0000000000000000", "0"},
		{"8000000000000000", "0"},
		{"0000000000000001", "5e-324"},
		{"8000000000000001", "-5e-324"},
		{"7fefffffffffffff", "1.7976931348623157e+308"},
		{"ffefffffffffffff", "-1.7976931348623157e+308"},
		{"4340000000000000", "9007199254740992"},
		{"c340000000000000", "-9007199254740992"},
		{"4430000000000000", "295147905179352830000"},
		{"44b52d02c7e14af5", "9.999999999999997e+22"},
		{"44b52d02c7e14af6", "1e+23"},
		{"44b52d02c7e14af7", "1.0000000000000001e+23"},
		{"444b1ae4d6e2ef4e", "999999999999999700000"},
		{"444b1ae4d6e2ef4f", "999999999999999900000"},
		{"444b1ae4d6e2ef50", "1e+21"},
		{"3eb0c6f7a0b5ed8c", "9.999999999999997e-7"},
		{"3eb0c6f7a0b5ed8d", "0.000001"},
		{"41b3de4355555553", "333333333.3333332"},
		{"41b3de4355555554", "333333333.33333325"},
		{"41b3de4355555555", "333333333.3333333"},
		{"41b3de4355555556", "333333333.3333334"},
		{"41b3de4355555557", "333333333.33333343"},
		{"becbf647612f3696", "-0.0000033333333333333333"},
		{"43143ff3c1cb0959", "1424953923781206.2"},
	} {
		u, err := strconv.ParseUint(tc.bits, 16, 64)
		if err != nil {
			t.Fatal(err)
		}
		f := math.Float64frombits(u)
		if got := string(appendNumber(nil, f)); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.bits, got, tc.want)
		}
		// The same value written as JSON text canonicalizes the same way.
		text := strconv.FormatFloat(f, 'g', -1, 64)
		if got, err := Canonicalize([]byte(text)); err != nil || string(got) != tc.want {
			t.Errorf("Canonicalize(%s) = %s, %v; want %s", text, got, err, tc.want)
		}
	}
}

func TestNumbers(t *testing.T) {
	for in, want := range map[string]string{
		"1e30": "1e+30", "4.5": "4.5", "4.50": "4.5", "0.002": "0.002", "2e-3": "0.002",
		"0.000001": "0.000001", "1e-7": "1e-7", "-0": "0", "-0.0": "0", "1E+2": "100",
		"333333333.33333329": "333333333.3333333", "1e21": "1e+21", "1e20": "100000000000000000000",
		"123456789012345678901234567890": "1.2345678901234568e+29", "0.1": "0.1", "-1.5e-9": "-1.5e-9",
		"1e-400": "0", "100": "100", "12.34e1": "123.4",
	} {
		got, err := Canonicalize([]byte(in))
		if err != nil || string(got) != want {
			t.Errorf("%s: got %s, %v; want %s", in, got, err, want)
		}
	}
}

// The example of RFC 8785 §3.2.2 (whitespace, number and string forms).
func TestRFC8785Example(t *testing.T) {
	in := `{
  "numbers": [333333333.33333329, 1E30, 4.50,
              2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}`
	want := `{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`
	got, err := Canonicalize([]byte(in))
	if err != nil || string(got) != want {
		t.Fatalf("got %s, %v\nwant %s", got, err, want)
	}
}

// The sorting example of RFC 8785 §3.2.3: names sort by UTF-16 code units, so
// U+1F600 (a surrogate pair starting 0xD83D) sorts before U+FB33.
func TestRFC8785Sorting(t *testing.T) {
	in := `{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}`
	want := "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u0080\":\"Control\",\"ö\":\"Latin Small Letter O With Diaeresis\",\"€\":\"Euro Sign\",\"😀\":\"Emoji: Grinning Face\",\"\ufb33\":\"Hebrew Letter Dalet With Dagesh\"}"
	got, err := Canonicalize([]byte(in))
	if err != nil || string(got) != want {
		t.Fatalf("got %s, %v\nwant %s", got, err, want)
	}
}

func TestCanonicalize(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"nested", ` { "b" : [ 1 , { "d":true, "c":null } ], "a":"x" } `, `{"a":"x","b":[1,{"c":null,"d":true}]}`},
		{"empty containers", `[{},[],""]`, `[{},[],""]`},
		{"controls", `"\u0000\u001f\b\t"`, `"\u0000\u001f\b\t"`},
		{"U+2028 and slash stay literal", `"\u2028\/"`, "\"\u2028/\""},
		{"literals", `[true,false,null]`, `[true,false,null]`},
		{"escaped names sort by value", `{"\u0062":1,"a":2}`, `{"a":2,"b":1}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Canonicalize([]byte(tc.in))
			if err != nil || string(got) != tc.want {
				t.Fatalf("got %s, %v; want %s", got, err, tc.want)
			}
		})
	}
}

func TestCanonicalizeRejects(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		offset   int
		msg      string
	}{
		{"empty", "", 0, "empty input"},
		{"space only", "  ", 2, "empty input"},
		{"duplicate", `{"a":1, "a":2}`, 8, `duplicate member name "a"`},
		{"duplicate after unescaping", `{"a":1,"\u0061":2}`, 7, "duplicate member name"},
		{"trailing", `{} x`, 3, "after the JSON value"},
		{"two values", `1 2`, 2, "after the JSON value"},
		{"trailing comma", `[1,]`, 3, "want a JSON value"},
		{"leading zero", `01`, 0, "leading zero"},
		{"overflow", `1e400`, 0, "does not fit"},
		{"lone high surrogate", `"\ud800"`, 1, "lone UTF-16 surrogate"},
		{"lone low surrogate", `"\udc00x"`, 1, "lone UTF-16 surrogate"},
		{"invalid utf-8", "\"\xff\"", 1, "invalid UTF-8"},
		{"raw control", "\"\n\"", 1, "control character"},
		{"bad escape", `"\x"`, 1, "invalid escape"},
		{"NaN", `NaN`, 0, "want a JSON value"},
		{"unterminated", `{"a":"b`, 7, "unterminated string"},
		{"missing colon", `{"a" 1}`, 5, "want ':'"},
		{"single quotes", `{'a':1}`, 1, "want a member name"},
		{"bare dot", `1.`, 2, "after '.'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Canonicalize([]byte(tc.in))
			var se *SyntaxError
			if !errors.As(err, &se) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want a *SyntaxError", err)
			}
			if se.Offset != tc.offset || !strings.Contains(se.Msg, tc.msg) {
				t.Fatalf("got %v, want offset %d and %q", err, tc.offset, tc.msg)
			}
		})
	}
}

func TestDigest(t *testing.T) {
	a, err := Digest([]byte(`{"b": 2, "a": 1.0}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Digest([]byte(`{"a":1,"b":2}`))
	sum := sha256.Sum256([]byte(`{"a":1,"b":2}`))
	if want := "sha256:" + hex.EncodeToString(sum[:]); a != want || b != want {
		t.Fatalf("got %s and %s, want %s", a, b, want)
	}
	if _, err := Digest(nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Digest(nil) = %v, want ErrInvalid", err)
	}
}

func TestDepthLimit(t *testing.T) {
	deep := strings.Repeat("[", maxDepth+2) + strings.Repeat("]", maxDepth+2)
	if _, err := Canonicalize([]byte(deep)); err == nil || !strings.Contains(err.Error(), "nested deeper") {
		t.Fatalf("got %v, want a depth error", err)
	}
	ok := strings.Repeat("[", 100) + strings.Repeat("]", 100)
	if _, err := Canonicalize([]byte(ok)); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkCanonicalize(b *testing.B) {
	in := []byte(`{"amount": 1500.00, "currency": "EUR", "customer": {"id": "c-42", "tags": ["a", "b"]}, "note": "pay \u20ac"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Canonicalize(in); err != nil {
			b.Fatal(err)
		}
	}
}
