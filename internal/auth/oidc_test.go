package auth

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aibos/kernel/internal/auth/authtest"
)

const testIssuer = "https://login.example.test/realm"

func oidcVerifierFor(t *testing.T, is *authtest.Issuer, mod func(*OIDCConfig)) *Verifier {
	t.Helper()
	cfg := OIDCConfig{
		Issuer: is.URL, Audience: "aibos", JWKSFile: is.JWKSFile,
		PrincipalClaim: "email", RoleMap: map[string][]string{"platform": {RoleAdmin}, "devs": {RolePolicyAuthor, RoleAuditor}},
		TenantClaim: "tenants",
	}
	if mod != nil {
		mod(&cfg)
	}
	st := oneToken{}
	v, err := NewVerifier(VerifierConfig{Tokens: st, Agents: st, OIDC: cfg})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestOIDCMapsClaimsToPrincipal(t *testing.T) {
	is := authtest.NewIssuer(t, testIssuer, "aibos")
	v := oidcVerifierFor(t, is, nil)
	tok := is.Token(t, "u-123", time.Hour, map[string]any{"email": "ana@example.test", "groups": []string{"devs", "platform", "unmapped"}, "tenants": []string{"t2", "t1"}})
	p, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "ana@example.test" || p.Kind != KindOperator || !strings.HasPrefix(p.Accessor, "oidc-") {
		t.Fatalf("principal %+v", p)
	}
	if !slices.Equal(p.Roles, []string{RoleAdmin, RoleAuditor, RolePolicyAuthor}) || !slices.Equal(p.Tenants, []string{"t1", "t2"}) {
		t.Fatalf("roles %v tenants %v", p.Roles, p.Tenants)
	}
	if time.Until(p.ExpiresAt) < 50*time.Minute {
		t.Fatalf("expiry %v", p.ExpiresAt)
	}
	// Another grant for the same subject is another accessor (decisions
	// are remembered per accessor).
	p2, err := v.Verify(is.Token(t, "u-123", time.Hour, map[string]any{"email": "ana@example.test", "groups": "devs"}))
	if err != nil {
		t.Fatal(err)
	}
	if p2.Accessor == p.Accessor || !slices.Equal(p2.Roles, []string{RoleAuditor, RolePolicyAuthor}) || p2.Tenants != nil {
		t.Fatalf("second principal %+v (first %s)", p2, p.Accessor)
	}
	// Without a role map, a group that names a built-in role is that role.
	v = oidcVerifierFor(t, is, func(c *OIDCConfig) { c.RoleMap, c.PrincipalClaim = nil, "" })
	p, err = v.Verify(is.Token(t, "u-9", time.Hour, map[string]any{"groups": []string{"auditor", "devs"}}))
	if err != nil || p.Name != "u-9" || !slices.Equal(p.Roles, []string{RoleAuditor}) {
		t.Fatalf("%+v %v", p, err)
	}
}

func TestOIDCRefusalsSayWhichCheckFailed(t *testing.T) {
	is := authtest.NewIssuer(t, testIssuer, "aibos")
	other := authtest.NewIssuer(t, testIssuer, "aibos") // same name, another key
	v := oidcVerifierFor(t, is, nil)
	claims := map[string]any{"email": "ana@example.test"}
	for _, c := range []struct {
		name, tok, want string
		is              error
	}{
		{"expired", is.Token(t, "u", -time.Minute, claims), "expired", ErrExpired},
		{"audience", is.Token(t, "u", time.Hour, map[string]any{"email": "a", "aud": "someone-else"}), "wrong audience", ErrUnknown},
		{"issuer", is.Token(t, "u", time.Hour, map[string]any{"email": "a", "iss": "https://evil.example.test"}), "wrong issuer", ErrUnknown},
		{"signature", other.Token(t, "u", time.Hour, claims), "signature", ErrUnknown},
		{"tampered", tamper(is.Token(t, "u", time.Hour, claims)), "signature", ErrUnknown},
		{"no principal", is.Token(t, "u", time.Hour, nil), `principal claim "email"`, ErrMalformed},
		{"bad groups", is.Token(t, "u", time.Hour, map[string]any{"email": "a", "groups": 7}), `claim "groups"`, ErrMalformed},
		{"not a jwt", "hello", "nor a JWT", ErrMalformed},
		{"garbage jwt", "a.b.c", "malformed", ErrMalformed},
	} {
		_, err := v.Verify(c.tok)
		if err == nil || !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want %v saying %q", c.name, err, c.is, c.want)
		}
	}
	// Without OIDC configured, a JWT is not a credential at all.
	st := oneToken{}
	plain, _ := NewVerifier(VerifierConfig{Tokens: st, Agents: st})
	if _, err := plain.Verify(is.Token(t, "u", time.Hour, claims)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("without OIDC: %v", err)
	}
}

// tamper changes the payload of a JWT and keeps its signature.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	b := []byte(parts[1])
	if b[5] == 'A' {
		b[5] = 'B'
	} else {
		b[5] = 'A'
	}
	parts[1] = string(b)
	return strings.Join(parts, ".")
}

func TestOIDCConfigErrors(t *testing.T) {
	st := oneToken{}
	_, err := NewVerifier(VerifierConfig{Tokens: st, Agents: st, OIDC: OIDCConfig{Issuer: testIssuer, JWKSFile: "a", JWKSURL: "b", RoleMap: map[string][]string{"g": {"root"}}}})
	for _, want := range []string{"audience", "not both", `"root"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("config error %v; want it to mention %s", err, want)
		}
	}
	bad := filepath.Join(t.TempDir(), "jwks.json")
	os.WriteFile(bad, []byte(`{"keys":[]}`), 0o600)
	_, err = NewVerifier(VerifierConfig{Tokens: st, Agents: st, OIDC: OIDCConfig{Issuer: testIssuer, Audience: "a", JWKSFile: bad}})
	if err == nil || !strings.Contains(err.Error(), "no public signing key") || !strings.Contains(err.Error(), bad) {
		t.Fatalf("empty key set: %v", err)
	}
	if _, err := ParseRoleMap("platform=admin;devs=policy-author, auditor"); err != nil {
		t.Fatal(err)
	}
	_, err = ParseRoleMap("platform=root;=admin;devs=")
	for _, want := range []string{`entry 1`, `"root" is not a built-in role`, `entry 2`, `entry 3`, "empty role"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("role map error %v; want %s", err, want)
		}
	}
}

// FuzzOIDCVerify: no credential but one the issuer signed authenticates,
// and none panics the verifier.
func FuzzOIDCVerify(f *testing.F) {
	is := authtest.NewIssuer(f, testIssuer, "aibos")
	good := is.Token(f, "u", time.Hour, map[string]any{"email": "a"})
	f.Add(good)
	f.Add(tamper(good))
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1In0.")
	st := oneToken{}
	v, err := NewVerifier(VerifierConfig{Tokens: st, Agents: st, OIDC: OIDCConfig{Issuer: is.URL, Audience: "aibos", JWKSFile: is.JWKSFile, PrincipalClaim: "email"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, cred string) {
		p, err := v.Verify(cred)
		// Base64's spare bits let a few spellings of the good token
		// decode to it; anything that passes must carry its claims.
		if err == nil && p.Name != "a" {
			t.Fatalf("%q authenticated as %+v", cred, p)
		}
	})
}

// BenchmarkOIDCVerify is what an ID token costs per request: the first
// time, the JWT's parse, its ES256 signature, the claims and the role map;
// again, the remembered principal.
//
//	go test -run '^$' -bench OIDCVerify -benchmem ./internal/auth/
func BenchmarkOIDCVerify(b *testing.B) {
	is := authtest.NewIssuer(b, testIssuer, "aibos")
	st := oneToken{}
	v, err := NewVerifier(VerifierConfig{Tokens: st, Agents: st, OIDC: OIDCConfig{Issuer: is.URL, Audience: "aibos", JWKSFile: is.JWKSFile, RoleMap: map[string][]string{"g": {RolePEP}}}})
	if err != nil {
		b.Fatal(err)
	}
	tok := is.Token(b, "u", time.Hour, map[string]any{"groups": []string{"g"}})
	for _, name := range []string{"first", "again"} {
		first := name == "first"
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if first {
					v.oidc.mu.Lock()
					clear(v.oidc.verified)
					v.oidc.mu.Unlock()
				}
				if _, err := v.Verify(tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A remembered token still expires when its exp passes.
func TestOIDCRememberedTokenExpires(t *testing.T) {
	is := authtest.NewIssuer(t, testIssuer, "aibos")
	now := time.Now()
	st := oneToken{}
	v, err := NewVerifier(VerifierConfig{Tokens: st, Agents: st, Now: func() time.Time { return now },
		OIDC: OIDCConfig{Issuer: is.URL, Audience: "aibos", JWKSFile: is.JWKSFile}})
	if err != nil {
		t.Fatal(err)
	}
	tok := is.Token(t, "u", 10*time.Minute, nil)
	for range 2 {
		if _, err := v.Verify(tok); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(11 * time.Minute)
	if _, err := v.Verify(tok); !errors.Is(err, ErrExpired) {
		t.Fatalf("after exp: %v", err)
	}
}

// TestOIDCAccessToken: an access token of the trusted issuer names its
// user (sub) and client (client_id, else azp); one without a client, or
// failing a check of the ID token's, is refused with the reason; with no
// issuer trusted, none is accepted.
func TestOIDCAccessToken(t *testing.T) {
	is := authtest.NewIssuer(t, testIssuer, "aibos")
	v := oidcVerifierFor(t, is, nil)
	ctx := context.Background()
	for _, c := range []struct {
		name   string
		claims map[string]any
		client string
		err    string
	}{
		{"client_id", map[string]any{"client_id": "bot", "azp": "other"}, "bot", ""},
		{"azp", map[string]any{"azp": "bot"}, "bot", ""},
		{"no client", nil, "", "no client_id or azp"},
		{"client not a string", map[string]any{"client_id": 7}, "", "no client_id or azp"},
		{"audience", map[string]any{"client_id": "bot", "aud": "else"}, "", "wrong audience"},
	} {
		at, err := v.VerifyAccessToken(ctx, is.Token(t, "ana", time.Hour, c.claims))
		switch {
		case c.err == "" && (err != nil || at.ClientID != c.client || at.Subject != "ana" || at.Issuer != testIssuer || at.ExpiresAt.IsZero()):
			t.Errorf("%s: %+v %v", c.name, at, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: want %q, got %+v %v", c.name, c.err, at, err)
		}
	}
	if _, err := v.VerifyAccessToken(ctx, is.Token(t, "ana", -time.Second, map[string]any{"client_id": "bot"})); !errors.Is(err, ErrExpired) {
		t.Errorf("expired: %v", err)
	}
	if _, err := v.VerifyAccessToken(ctx, "aibos_not-a-jwt"); !errors.Is(err, ErrMalformed) {
		t.Errorf("not a JWT: %v", err)
	}
	none, err := NewVerifier(VerifierConfig{Tokens: oneToken{}, Agents: oneToken{}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := none.VerifyAccessToken(ctx, is.Token(t, "ana", time.Hour, map[string]any{"client_id": "bot"})); !errors.Is(err, ErrNoIssuer) {
		t.Errorf("no issuer trusted: %v", err)
	}
}

// FuzzOIDCAccessToken: no credential but one the issuer signed is an
// access token, and none panics the verifier.
func FuzzOIDCAccessToken(f *testing.F) {
	is := authtest.NewIssuer(f, testIssuer, "aibos")
	good := is.Token(f, "u", time.Hour, map[string]any{"client_id": "bot"})
	for _, s := range []string{good, tamper(good), "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1IiwiY2xpZW50X2lkIjoiYm90In0."} {
		f.Add(s)
	}
	st := oneToken{}
	v, err := NewVerifier(VerifierConfig{Tokens: st, Agents: st, OIDC: OIDCConfig{Issuer: is.URL, Audience: "aibos", JWKSFile: is.JWKSFile}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, cred string) {
		at, err := v.VerifyAccessToken(context.Background(), cred)
		if err == nil && (at.Subject != "u" || at.ClientID != "bot") {
			t.Fatalf("%q verified as %+v", cred, at)
		}
	})
}
