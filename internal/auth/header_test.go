package auth

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestParseAuthorization(t *testing.T) {
	tok := "aibos_op_" + strings.Repeat("A", 43)
	for _, tc := range []struct {
		name, h, want string
		err           error
	}{
		{"canonical", "Bearer " + tok, tok, nil},
		{"lower case scheme (RFC 9110: case-insensitive)", "bearer " + tok, tok, nil},
		{"upper case scheme", "BEARER " + tok, tok, nil},
		{"several spaces", "Bearer   " + tok, tok, nil},
		{"trailing space", "Bearer " + tok + " ", tok, nil},
		{"padding", "Bearer abc==", "abc==", nil},
		{"empty", "", "", ErrNoCredential},
		{"scheme only", "Bearer", "", ErrMalformed},
		{"scheme and space", "Bearer ", "", ErrMalformed},
		{"basic", "Basic dXNlcjpwYXNz", "", ErrMalformed},
		{"no scheme", tok, "", ErrMalformed},
		{"two credentials", "Bearer a b", "", ErrMalformed},
		{"bad characters", "Bearer a\"b", "", ErrMalformed},
		{"padding inside", "Bearer a=b", "", ErrMalformed},
		{"tab separator", "Bearer\t" + tok, "", ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAuthorization(tc.h)
			if got != tc.want || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("ParseAuthorization(%q) = %q, %v; want %q, %v", tc.h, got, err, tc.want, tc.err)
			}
		})
	}
}

func TestCredentialRefusesTwoHeaders(t *testing.T) {
	r, _ := http.NewRequest("GET", "/", nil)
	r.Header.Add("Authorization", "Bearer a")
	r.Header.Add("Authorization", "Bearer b")
	if _, err := Credential(r); !errors.Is(err, ErrMalformed) {
		t.Fatalf("two headers: %v", err)
	}
}

func TestDecodeToken(t *testing.T) {
	op, acc, err := NewOperatorToken(nil)
	if err != nil || !ValidAccessor(acc) {
		t.Fatal(op, acc, err)
	}
	agent := "aibos_" + op[len(OperatorPrefix):]
	for _, tc := range []struct {
		s    string
		kind TokenKind
		bad  bool
	}{
		{op, TokenOperator, false},
		{agent, TokenAgent, false},
		{"aibos_op_short", TokenUnknown, true},
		{"aibos_" + strings.Repeat("!", 43), TokenUnknown, true},
		{"eyJhbGciOi.x.y", TokenOther, false},
	} {
		kind, raw, err := DecodeToken(tc.s)
		if kind != tc.kind || (err != nil) != tc.bad || (kind == TokenOperator || kind == TokenAgent) && len(raw) != 32 {
			t.Errorf("DecodeToken(%q) = %v, %d bytes, %v", tc.s, kind, len(raw), err)
		}
	}
}
