// Package jcs owns the canonical form of JSON documents: RFC 8785, the JSON
// Canonicalization Scheme. Two documents that mean the same JSON value have the
// same canonical bytes, so a digest of the canonical form identifies a request
// body (for idempotency, audit and approvals) independently of how a client
// spaced, ordered or escaped it.
//
// The input must be I-JSON (RFC 7493): valid UTF-8, no lone surrogates, no
// duplicate member names, and numbers that fit an IEEE 754 double. Anything else
// is rejected with the byte offset of the problem, never silently repaired.
package jcs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
)

// ErrInvalid is wrapped by every error Canonicalize returns.
var ErrInvalid = errors.New("jcs: input is not canonicalizable JSON")

// maxDepth bounds nesting, as encoding/json does, so hostile input cannot
// exhaust the stack.
const maxDepth = 10000

// SyntaxError says what is wrong with the input and at which byte.
type SyntaxError struct {
	Offset int // byte offset into the input
	Msg    string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("jcs: at byte %d: %s", e.Offset, e.Msg)
}

// Unwrap lets callers test errors.Is(err, ErrInvalid).
func (e *SyntaxError) Unwrap() error { return ErrInvalid }

// Canonicalize returns the RFC 8785 canonical form of the JSON text b. Empty
// input is rejected: a caller with an absent body canonicalizes "{}" itself.
func Canonicalize(b []byte) ([]byte, error) {
	p := parser{in: b}
	p.skipSpace()
	if p.pos == len(b) {
		return nil, p.errorf("empty input, want a JSON value")
	}
	out := make([]byte, 0, len(b))
	out, err := p.value(out, 0)
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos != len(b) {
		return nil, p.errorf("unexpected %s after the JSON value", p.describe())
	}
	return out, nil
}

// Digest returns "sha256:" followed by the lowercase hex SHA-256 of the
// canonical form of b.
func Digest(b []byte) (string, error) {
	c, err := Canonicalize(b)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(c)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}
