package auth

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

// FuzzParseAuthorization: any header value either parses to a token68
// that appears in it after a case-insensitive "bearer", or is refused with
// one of the package's errors; it never panics.
func FuzzParseAuthorization(f *testing.F) {
	for _, s := range []string{"", "Bearer x", "bearer aibos_op_" + strings.Repeat("A", 43), "Basic a", "Bearer  a==", "BeArEr\tb", "Bearer a b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		cred, err := ParseAuthorization(h)
		if err != nil {
			if !errors.Is(err, ErrNoCredential) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("%q: unexpected error %v", h, err)
			}
			if cred != "" {
				t.Fatalf("%q: credential %q with error", h, cred)
			}
			return
		}
		if !strings.EqualFold(h[:6], "bearer") || !strings.Contains(h, cred) || !isToken68(cred) || len(cred) > maxCredential {
			t.Fatalf("%q parsed to %q", h, cred)
		}
	})
}

// FuzzDecodeToken: a token decodes to 32 bytes that encode back to it, or
// is not a kernel token, or is refused as malformed.
func FuzzDecodeToken(f *testing.F) {
	op, _, _ := NewOperatorToken(nil)
	for _, s := range []string{op, "aibos_" + op[len(OperatorPrefix):], "aibos_op_", "aibos_x", "jwt.x.y", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		kind, raw, err := DecodeToken(s)
		switch {
		case err != nil:
			if !errors.Is(err, ErrMalformed) || kind != TokenUnknown {
				t.Fatalf("%q: %v %v", s, kind, err)
			}
		case kind == TokenOperator:
			if OperatorPrefix+base64.RawURLEncoding.EncodeToString(raw) != s {
				t.Fatalf("%q does not round-trip", s)
			}
		case kind == TokenAgent:
			if AgentPrefix+base64.RawURLEncoding.EncodeToString(raw) != s {
				t.Fatalf("%q does not round-trip", s)
			}
		case kind == TokenOther:
			if strings.HasPrefix(s, AgentPrefix) {
				t.Fatalf("%q: kernel prefix taken as another credential", s)
			}
		default:
			t.Fatalf("%q: kind %v without error", s, kind)
		}
	})
}

// FuzzParseJWKS: any input is a set of public keys or an error; never a
// panic, never a private key.
func FuzzParseJWKS(f *testing.F) {
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","use":"sig"}]}`))
	f.Add([]byte(`{"keys":[]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := ParseJWKS(data)
		if err == nil && len(keys) == 0 {
			t.Fatal("no error and no keys")
		}
	})
}

// FuzzParseRoleMap: a role map either parses to built-in roles only or is
// refused.
func FuzzParseRoleMap(f *testing.F) {
	for _, s := range []string{"", "a=admin", "a=admin,auditor;b=pep", "=x", "a=", "a=root;;b=node"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseRoleMap(s)
		if err != nil {
			return
		}
		for g, roles := range m {
			for _, r := range roles {
				if !ValidRole(r) {
					t.Fatalf("%q gives %q the role %q", s, g, r)
				}
			}
		}
	})
}
