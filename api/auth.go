package api

import "time"

// Token is an operator token as the kernel shows it: never its secret.
// The accessor is its public name (in lists, audit records and revokes).
type Token struct {
	Accessor  string    `json:"accessor"`
	Principal string    `json:"principal"`
	Roles     []string  `json:"roles"`
	Tenants   []string  `json:"tenants,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Root marks the token the cluster's bootstrap wrote to DATA/root-token.
	Root bool `json:"root,omitempty"`
	// Revoked is set once the token is revoked; a revoked token never
	// authenticates again.
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	RevokedBy string    `json:"revoked_by,omitempty"`
	Revision  uint64    `json:"revision,omitempty"`
}

// TokenRequest asks POST /v1/tokens for a new operator token. TTL zero:
// the token does not expire.
type TokenRequest struct {
	Principal string   `json:"principal"`
	Roles     []string `json:"roles"`
	Tenants   []string `json:"tenants,omitempty"`
	TTL       Duration `json:"ttl,omitempty"`
}

// TokenCreated answers POST /v1/tokens: the only time the secret is shown.
type TokenCreated struct {
	Token  Token  `json:"token"`
	Secret string `json:"secret"`
}

// TokenList answers GET /v1/tokens.
type TokenList struct {
	Tokens []Token `json:"tokens"`
}

// WhoAmI answers GET /v1/whoami: the principal the request authenticated as.
type WhoAmI struct {
	Principal string    `json:"principal"`
	Kind      string    `json:"kind"`
	Accessor  string    `json:"accessor,omitempty"`
	Roles     []string  `json:"roles"`
	Tenants   []string  `json:"tenants,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}
