// Package authtest is an OpenID Connect issuer for tests: a signing key of
// its own, its public keys as a JWKS file, and ID tokens it signs locally.
// Nothing is served or fetched.
package authtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Issuer signs ID tokens as URL.
type Issuer struct {
	URL      string
	Audience string
	// JWKSFile holds the issuer's public key.
	JWKSFile string
	signer   jose.Signer
}

// NewIssuer makes an issuer with a fresh P-256 key and writes its JWKS
// under t.TempDir().
func NewIssuer(t testing.TB, url, audience string) *Issuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kid := "test-key-1"
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: kid, Algorithm: string(jose.ES256), Use: "sig"}}}
	data, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return &Issuer{URL: url, Audience: audience, JWKSFile: file, signer: signer}
}

// Token signs an ID token for sub, valid for ttl from now, with the
// issuer's URL and audience and the extra claims (which override them).
func (is *Issuer) Token(t testing.TB, sub string, ttl time.Duration, extra map[string]any) string {
	t.Helper()
	now := time.Now()
	claims := map[string]any{
		"iss": is.URL, "aud": is.Audience, "sub": sub,
		"iat": now.Add(-time.Minute).Unix(), "exp": now.Add(ttl).Unix(),
	}
	for k, v := range extra {
		claims[k] = v
	}
	raw, err := jwt.Signed(is.signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
