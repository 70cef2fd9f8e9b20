package auth

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

// OIDCConfig lets operators sign in with ID tokens (JWTs) of an OpenID
// Connect issuer instead of kernel tokens. A token is verified against the
// issuer's keys on the node, without a call to the issuer per request: its
// signature, issuer, audience and expiry. Its claims name the principal and,
// through RoleMap, its roles.
type OIDCConfig struct {
	// Issuer is the exact "iss" the tokens carry.
	Issuer string
	// Audience is the "aud" the tokens must hold (the client id).
	Audience string
	// JWKSFile is a JSON Web Key Set file of the issuer's public keys:
	// verification is then fully offline. Empty: JWKSURL.
	JWKSFile string
	// JWKSURL is where the issuer publishes its keys; they are fetched on
	// the first token and again only when a token names an unknown key.
	// Empty with JWKSFile empty: the issuer's discovery document's jwks_uri.
	JWKSURL string
	// PrincipalClaim names the principal; empty: "sub".
	PrincipalClaim string
	// RoleClaim holds the groups (a string or a list of strings) that
	// RoleMap maps to roles; empty: "groups".
	RoleClaim string
	// RoleMap maps a value of RoleClaim to built-in roles. A value not in
	// it grants nothing. Nil: a value that names a built-in role is that
	// role.
	RoleMap map[string][]string
	// TenantClaim, if set, holds the tenants the principal is limited to
	// (a string or a list); absent or empty in a token: no limit, as an
	// operator token without tenants.
	TenantClaim string
}

// Enabled reports whether c configures OIDC at all.
func (c OIDCConfig) Enabled() bool { return c.Issuer != "" }

// Check reports every problem of c in one error.
func (c OIDCConfig) Check() error {
	var errs []string
	if c.Issuer == "" {
		errs = append(errs, "the issuer (--oidc-issuer) is required")
	}
	if c.Audience == "" {
		errs = append(errs, "the audience (--oidc-audience, the client id tokens are issued to) is required")
	}
	if c.JWKSFile != "" && c.JWKSURL != "" {
		errs = append(errs, "give the issuer's keys as a file (--oidc-jwks-file) or a URL (--oidc-jwks-url), not both")
	}
	for group, roles := range c.RoleMap {
		for _, r := range roles {
			if !ValidRole(r) {
				errs = append(errs, fmt.Sprintf("the role map gives %q the role %q, which is not a built-in role (%s)", group, r, strings.Join(Roles(), ", ")))
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	sort.Strings(errs)
	return fmt.Errorf("oidc: %s", strings.Join(errs, "; "))
}

// ParseRoleMap reads a role map of the form
// "group=role[,role…][;group=role…]", as --oidc-role-map takes it.
func ParseRoleMap(s string) (map[string][]string, error) {
	m := map[string][]string{}
	if strings.TrimSpace(s) == "" {
		return m, nil
	}
	var errs []string
	for i, entry := range strings.Split(s, ";") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		group, roles, ok := strings.Cut(entry, "=")
		group = strings.TrimSpace(group)
		if !ok || group == "" {
			errs = append(errs, fmt.Sprintf("entry %d %q: want group=role[,role…]", i+1, entry))
			continue
		}
		for _, r := range strings.Split(roles, ",") {
			r = strings.TrimSpace(r)
			switch {
			case r == "":
				errs = append(errs, fmt.Sprintf("entry %d %q: an empty role", i+1, entry))
			case !ValidRole(r):
				errs = append(errs, fmt.Sprintf("entry %d %q: %q is not a built-in role (%s)", i+1, entry, r, strings.Join(Roles(), ", ")))
			case !slices.Contains(m[group], r):
				m[group] = append(m[group], r)
			}
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("oidc role map: %s", strings.Join(errs, "; "))
	}
	return m, nil
}

// ParseJWKS reads a JSON Web Key Set of public signing keys.
func ParseJWKS(data []byte) ([]crypto.PublicKey, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("oidc keys: not a JSON Web Key Set: %v", err)
	}
	var keys []crypto.PublicKey
	for i, k := range set.Keys {
		if !k.Valid() {
			return nil, fmt.Errorf("oidc keys: key %d (kid %q) is not a valid key", i, k.KeyID)
		}
		if !k.IsPublic() {
			return nil, fmt.Errorf("oidc keys: key %d (kid %q) is a private key; give the issuer's public keys only", i, k.KeyID)
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		keys = append(keys, k.Key)
	}
	if len(keys) == 0 {
		return nil, errors.New("oidc keys: the set has no public signing key")
	}
	return keys, nil
}

// signingAlgs are the algorithms a token may be signed with: asymmetric
// only (a shared secret would let anyone who verifies also sign).
var signingAlgs = []string{
	oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.ES512,
	oidc.PS256, oidc.PS384, oidc.PS512, oidc.EdDSA,
}

// oidcVerifier verifies ID tokens of one issuer.
type oidcVerifier struct {
	cfg OIDCConfig
	v   *oidc.IDTokenVerifier
	now func() time.Time

	// verified remembers the principals of tokens whose signature and
	// claims checked out, by the token's SHA-256, until they expire: a
	// signature check is ~200 µs, a hit a hash. Bounded by maxVerified;
	// when full it is emptied.
	mu       sync.Mutex
	verified map[[32]byte]Principal
	access   map[[32]byte]AccessToken // the same for access tokens; guarded by mu
}

const maxVerified = 4096

// newOIDCVerifier loads the issuer's keys as cfg says. Only discovery
// (neither a file nor a URL) calls the issuer here; ctx bounds it.
func newOIDCVerifier(ctx context.Context, cfg OIDCConfig, now func() time.Time) (*oidcVerifier, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if cfg.PrincipalClaim == "" {
		cfg.PrincipalClaim = "sub"
	}
	if cfg.RoleClaim == "" {
		cfg.RoleClaim = "groups"
	}
	var keys oidc.KeySet
	switch {
	case cfg.JWKSFile != "":
		data, err := os.ReadFile(cfg.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("oidc keys: %v", err)
		}
		pub, err := ParseJWKS(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.JWKSFile, err)
		}
		keys = &oidc.StaticKeySet{PublicKeys: pub}
	case cfg.JWKSURL != "":
		keys = oidc.NewRemoteKeySet(context.WithoutCancel(ctx), cfg.JWKSURL)
	default:
		p, err := oidc.NewProvider(ctx, cfg.Issuer)
		if err != nil {
			return nil, fmt.Errorf("oidc: discovering %s (give --oidc-jwks-file to verify without the issuer): %v", cfg.Issuer, err)
		}
		var meta struct {
			JWKS string `json:"jwks_uri"`
		}
		if err := p.Claims(&meta); err != nil || meta.JWKS == "" {
			return nil, fmt.Errorf("oidc: the discovery document of %s names no jwks_uri", cfg.Issuer)
		}
		keys = oidc.NewRemoteKeySet(context.WithoutCancel(ctx), meta.JWKS)
	}
	v := oidc.NewVerifier(cfg.Issuer, keys, &oidc.Config{
		ClientID:             cfg.Audience,
		SupportedSigningAlgs: signingAlgs,
		Now:                  now,
	})
	return &oidcVerifier{cfg: cfg, v: v, now: now, verified: map[[32]byte]Principal{}, access: map[[32]byte]AccessToken{}}, nil
}

// verify checks the token and maps its claims to a Principal. The error
// says which check failed.
func (o *oidcVerifier) verify(ctx context.Context, raw string) (Principal, error) {
	if strings.Count(raw, ".") != 2 {
		_, _, err := o.jwt(ctx, raw) // the same refusal, without hashing
		return Principal{}, err
	}
	sum := sha256.Sum256([]byte(raw))
	o.mu.Lock()
	p, ok := o.verified[sum]
	o.mu.Unlock()
	if ok {
		if o.now().Before(p.ExpiresAt) {
			return p, nil
		}
		o.mu.Lock()
		delete(o.verified, sum)
		o.mu.Unlock()
	}
	p, err := o.check(ctx, raw)
	if err != nil {
		return Principal{}, err
	}
	o.mu.Lock()
	if len(o.verified) >= maxVerified {
		clear(o.verified)
	}
	o.verified[sum] = p
	o.mu.Unlock()
	return p, nil
}

// jwt verifies a token with go-oidc (signature, issuer, audience,
// expiry) and returns it with its claims: the one check of an issuer's
// tokens, for operators' ID tokens and agents' access tokens alike.
func (o *oidcVerifier) jwt(ctx context.Context, raw string) (*oidc.IDToken, map[string]any, error) {
	if strings.Count(raw, ".") != 2 {
		return nil, nil, fmt.Errorf("%w: the credential is not a kernel token (aibos_op_… for operators, aibos_… for agents) nor a JWT", ErrMalformed)
	}
	tok, err := o.v.Verify(ctx, raw)
	if err != nil {
		return nil, nil, o.refusal(err)
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return nil, nil, fmt.Errorf("%w: OIDC token: claims: %v", ErrMalformed, err)
	}
	return tok, claims, nil
}

// check verifies the token with go-oidc and maps its claims.
func (o *oidcVerifier) check(ctx context.Context, raw string) (Principal, error) {
	tok, claims, err := o.jwt(ctx, raw)
	if err != nil {
		return Principal{}, err
	}
	name, _ := claims[o.cfg.PrincipalClaim].(string)
	if name == "" {
		return Principal{}, fmt.Errorf("%w: OIDC token: the principal claim %q is missing or not a string", ErrMalformed, o.cfg.PrincipalClaim)
	}
	groups, err := strClaim(claims, o.cfg.RoleClaim)
	if err != nil {
		return Principal{}, err
	}
	var roles []string
	for _, g := range groups {
		mapped := o.cfg.RoleMap[g]
		if o.cfg.RoleMap == nil && ValidRole(g) {
			mapped = []string{g}
		}
		for _, r := range mapped {
			if !slices.Contains(roles, r) {
				roles = append(roles, r)
			}
		}
	}
	sort.Strings(roles)
	var tenants []string
	if o.cfg.TenantClaim != "" {
		if tenants, err = strClaim(claims, o.cfg.TenantClaim); err != nil {
			return Principal{}, err
		}
		sort.Strings(tenants)
	}
	// The accessor names this sign-in's grant: subject, roles and tenants
	// (decisions are remembered per accessor, so a token with other roles
	// is another accessor).
	h := sha256.New()
	for _, part := range [][]string{{tok.Issuer, tok.Subject}, roles, tenants} {
		for _, s := range part {
			h.Write([]byte(s))
			h.Write([]byte{0})
		}
		h.Write([]byte{1})
	}
	accessor := "oidc-" + hex.EncodeToString(h.Sum(nil)[:8])
	return Principal{Name: name, Kind: KindOperator, Accessor: accessor, Roles: roles, Tenants: tenants, ExpiresAt: tok.Expiry}, nil
}

// refusal turns go-oidc's error into the check that failed.
func (o *oidcVerifier) refusal(err error) error {
	var exp *oidc.TokenExpiredError
	msg := err.Error()
	switch {
	case errors.As(err, &exp):
		return fmt.Errorf("%w: OIDC token expired at %s; sign in again", ErrExpired, exp.Expiry.UTC().Format(time.RFC3339))
	case strings.Contains(msg, "audience"):
		return fmt.Errorf("%w: OIDC token refused: wrong audience, this kernel accepts %q only (%s)", ErrUnknown, o.cfg.Audience, msg)
	case strings.Contains(msg, "issued by a different provider"):
		return fmt.Errorf("%w: OIDC token refused: wrong issuer, this kernel accepts %q only (%s)", ErrUnknown, o.cfg.Issuer, msg)
	case strings.Contains(msg, "signature") || strings.Contains(msg, "signing") || strings.Contains(msg, "keys"):
		return fmt.Errorf("%w: OIDC token refused: its signature does not verify with the issuer's keys (%s)", ErrUnknown, msg)
	case strings.Contains(msg, "malformed"):
		return fmt.Errorf("%w: OIDC token: %s", ErrMalformed, msg)
	default:
		return fmt.Errorf("%w: OIDC token refused: %s", ErrUnknown, msg)
	}
}

// strClaim reads a claim that is a string or a list of strings; absent is
// none.
func strClaim(claims map[string]any, name string) ([]string, error) {
	switch v := claims[name].(type) {
	case nil:
		return nil, nil
	case string:
		return []string{v}, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("%w: OIDC token: the claim %q holds a %T; want strings", ErrMalformed, name, e)
			}
			out = append(out, s)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("%w: OIDC token: the claim %q is a %T; want a string or a list of strings", ErrMalformed, name, v)
	}
}

// AccessToken is a verified OAuth access token of the trusted issuer that
// an agent presents on behalf of a user (COAZ-MCP): the subject is the
// user, the client the agent.
type AccessToken struct {
	Issuer    string
	Subject   string // sub: the user
	ClientID  string // client_id, else azp: the agent
	ExpiresAt time.Time
	// Claims are all of the token's claims (COAZ-MCP's $token); shared:
	// read them, never modify them.
	Claims map[string]any
}

// accessToken verifies raw as an access token: the same checks as an ID
// token (one issuer, one audience, its keys), then a non-empty sub and a
// client_id (or azp). Verified tokens are remembered as ID tokens are.
func (o *oidcVerifier) accessToken(ctx context.Context, raw string) (AccessToken, error) {
	sum := sha256.Sum256([]byte(raw))
	o.mu.Lock()
	at, ok := o.access[sum]
	o.mu.Unlock()
	if ok && o.now().Before(at.ExpiresAt) {
		return at, nil
	}
	tok, claims, err := o.jwt(ctx, raw)
	if err != nil {
		return AccessToken{}, err
	}
	client, _ := claims["client_id"].(string)
	if client == "" {
		client, _ = claims["azp"].(string)
	}
	switch {
	case tok.Subject == "":
		return AccessToken{}, fmt.Errorf("%w: OIDC access token: no sub (the user the agent acts for)", ErrMalformed)
	case client == "":
		return AccessToken{}, fmt.Errorf("%w: OIDC access token: no client_id or azp (the agent's id at the issuer)", ErrMalformed)
	}
	at = AccessToken{Issuer: tok.Issuer, Subject: tok.Subject, ClientID: client, ExpiresAt: tok.Expiry, Claims: claims}
	o.mu.Lock()
	if len(o.access) >= maxVerified {
		clear(o.access)
	}
	o.access[sum] = at
	o.mu.Unlock()
	return at, nil
}
