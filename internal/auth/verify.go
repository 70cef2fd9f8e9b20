package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/aibos/kernel/api"
)

// TokenStore is what verification needs of the replicated operator
// tokens: the live (not revoked) token whose secret's SHA-256 is sum.
type TokenStore interface {
	TokenBySum(sum [32]byte) (tok api.Token, ok bool)
}

// AgentStore is what verification needs of the agent registry: the active
// agent whose credential is token.
type AgentStore interface {
	AgentByToken(token string) (api.Agent, bool)
}

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	Tokens TokenStore
	Agents AgentStore
	// Now is the clock expiry is checked against; nil: time.Now.
	Now func() time.Time
	// OIDC, if its Issuer is set, accepts the issuer's ID tokens too.
	OIDC OIDCConfig
}

// Verifier turns a request's credential into a Principal.
type Verifier struct {
	cfg  VerifierConfig
	oidc *oidcVerifier // nil: no OIDC issuer is trusted
}

// NewVerifier checks cfg and returns a Verifier.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.Tokens == nil || cfg.Agents == nil {
		return nil, fmt.Errorf("auth: Tokens and Agents are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	v := &Verifier{cfg: cfg}
	if cfg.OIDC.Enabled() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		var err error
		if v.oidc, err = newOIDCVerifier(ctx, cfg.OIDC, cfg.Now); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// Authenticate verifies the Bearer credential of r.
func (v *Verifier) Authenticate(r *http.Request) (Principal, error) {
	cred, err := Credential(r)
	if err != nil {
		return Principal{}, err
	}
	return v.Verify(cred)
}

// Verify verifies one credential. The lookup is by the secret's SHA-256:
// no comparison runs on the secret, and what the lookup's timing could
// tell is about a hash, from which no secret follows.
func (v *Verifier) Verify(cred string) (Principal, error) {
	kind, err := tokenKind(cred)
	if err != nil {
		return Principal{}, err
	}
	switch kind {
	case TokenOperator:
		var buf [64]byte // the token on the stack: no allocation
		sum := sha256.Sum256(append(buf[:0], cred...))
		tok, ok := v.cfg.Tokens.TokenBySum(sum)
		if !ok || !tok.RevokedAt.IsZero() {
			return Principal{}, fmt.Errorf("%w: no live operator token has this secret (revoked, or never issued by this cluster)", ErrUnknown)
		}
		if !tok.ExpiresAt.IsZero() && !v.cfg.Now().Before(tok.ExpiresAt) {
			return Principal{}, fmt.Errorf("%w: token %s expired at %s; ask an admin for a new one", ErrExpired, tok.Accessor, tok.ExpiresAt.UTC().Format(time.RFC3339))
		}
		return Principal{Name: tok.Principal, Kind: KindOperator, Accessor: tok.Accessor, Roles: tok.Roles, Tenants: tok.Tenants, ExpiresAt: tok.ExpiresAt}, nil
	case TokenAgent:
		a, ok := v.cfg.Agents.AgentByToken(cred)
		if !ok {
			return Principal{}, fmt.Errorf("%w: no active agent has this token (rotated, revoked, or the agent retired)", ErrUnknown)
		}
		return Principal{Name: a.ID, Kind: KindAgent, Accessor: a.ID, Tenants: []string{a.Tenant}}, nil
	default:
		if v.oidc != nil {
			return v.oidc.verify(context.Background(), cred)
		}
		return Principal{}, fmt.Errorf("%w: the credential is not a kernel token (aibos_op_… for operators, aibos_… for agents)", ErrMalformed)
	}
}

// ErrNoIssuer is an access token presented to a kernel that trusts no
// OIDC issuer.
var ErrNoIssuer = errors.New("no OIDC issuer is trusted")

// VerifyAccessToken verifies an OIDC access token of the trusted issuer
// (signature, issuer, audience, expiry: the checks of operators' ID
// tokens, with the same configuration) and returns its user (sub) and
// client (client_id, else azp). For agents that act for a user (the MCP
// endpoint).
func (v *Verifier) VerifyAccessToken(ctx context.Context, raw string) (AccessToken, error) {
	if v.oidc == nil {
		return AccessToken{}, fmt.Errorf("%w: %w: this kernel accepts agent tokens (aibos_…) only; an operator configures --oidc-issuer to accept an issuer's access tokens", ErrMalformed, ErrNoIssuer)
	}
	return v.oidc.accessToken(ctx, raw)
}
