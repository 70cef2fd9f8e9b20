package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

// Token prefixes. An agent token is AgentPrefix and 43 base64url
// characters (32 random bytes, the registry's); an operator token is
// OperatorPrefix and the same. The lengths tell them apart, since "op_"
// could begin an agent token's random part.
const (
	AgentPrefix    = "aibos_"
	OperatorPrefix = "aibos_op_"
	secretBytes    = 32
	secretChars    = 43 // base64url of 32 bytes, unpadded
)

// TokenKind is what a decoded token is.
type TokenKind int

// Kinds of token.
const (
	TokenUnknown TokenKind = iota
	TokenOperator
	TokenAgent
	// TokenOther is a credential of no kernel form (an OIDC JWT, say).
	TokenOther
)

// DecodeToken tells what kind of kernel token s is and returns its 32
// random bytes; a kernel-prefixed token of the wrong length or alphabet is
// ErrMalformed. A credential without the kernel's prefix is TokenOther.
func DecodeToken(s string) (TokenKind, []byte, error) {
	var kind TokenKind
	var body string
	switch {
	case strings.HasPrefix(s, OperatorPrefix) && len(s) == len(OperatorPrefix)+secretChars:
		kind, body = TokenOperator, s[len(OperatorPrefix):]
	case strings.HasPrefix(s, AgentPrefix) && len(s) == len(AgentPrefix)+secretChars:
		kind, body = TokenAgent, s[len(AgentPrefix):]
	case strings.HasPrefix(s, AgentPrefix):
		return TokenUnknown, nil, fmt.Errorf("%w: a kernel token is %q or %q and %d characters; this one has %d characters in all", ErrMalformed, AgentPrefix, OperatorPrefix, secretChars, len(s))
	default:
		return TokenOther, nil, nil
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(body)
	if err != nil || len(raw) != secretBytes {
		return TokenUnknown, nil, fmt.Errorf("%w: the token's random part is not base64url of %d bytes", ErrMalformed, secretBytes)
	}
	return kind, raw, nil
}

// tokenKind is DecodeToken without decoding: the prefix and the length,
// which is all verification needs before the hash lookup.
func tokenKind(s string) (TokenKind, error) {
	// The alphabet is not checked: a credential with another character
	// cannot hash to a token the kernel made.
	switch {
	case strings.HasPrefix(s, OperatorPrefix) && len(s) == len(OperatorPrefix)+secretChars:
		return TokenOperator, nil
	case strings.HasPrefix(s, AgentPrefix) && len(s) == len(AgentPrefix)+secretChars:
		return TokenAgent, nil
	case strings.HasPrefix(s, AgentPrefix):
		_, _, err := DecodeToken(s)
		return TokenUnknown, err
	default:
		return TokenOther, nil
	}
}

// NewOperatorToken makes a secret of 32 bytes from rnd (crypto/rand if
// nil) and returns it with its accessor, a public id of 16 random bytes.
func NewOperatorToken(rnd io.Reader) (secret, accessor string, err error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	b := make([]byte, secretBytes+16)
	if _, err := io.ReadFull(rnd, b); err != nil {
		return "", "", fmt.Errorf("auth: random token: %w", err)
	}
	return OperatorPrefix + base64.RawURLEncoding.EncodeToString(b[:secretBytes]), "acc_" + hex.EncodeToString(b[secretBytes:]), nil
}

// NewAgentToken makes an agent's credential: AgentPrefix and 32 random
// bytes from rnd (crypto/rand if nil), base64url, with its Hash. The node
// that proposes the registration or rotation makes it; only the hash
// enters the log, and the token is shown once.
func NewAgentToken(rnd io.Reader) (token, hash string, err error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	var b [secretBytes]byte
	if _, err := io.ReadFull(rnd, b[:]); err != nil {
		return "", "", fmt.Errorf("auth: random agent token: %w", err)
	}
	token = AgentPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return token, Hash(token), nil
}

// Hash is the hex SHA-256 of a token: all the kernel stores of it.
func Hash(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// ValidAccessor reports whether s has the form of an accessor.
func ValidAccessor(s string) bool {
	rest, ok := strings.CutPrefix(s, "acc_")
	if !ok || len(rest) != 32 {
		return false
	}
	_, err := hex.DecodeString(rest)
	return err == nil && strings.ToLower(rest) == rest
}
