package auth

import "testing"

// TestNewAgentToken: an agent token has the agent form the verifier
// recognizes, its hash is Hash, and two are never the same.
func TestNewAgentToken(t *testing.T) {
	a, ha, err := NewAgentToken(nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := NewAgentToken(nil)
	if err != nil {
		t.Fatal(err)
	}
	if k, err := tokenKind(a); err != nil || k != TokenAgent {
		t.Fatalf("token %q is of kind %v (%v), want an agent token", a, k, err)
	}
	if ha != Hash(a) || a == b {
		t.Fatalf("hash %q of %q; second token %q", ha, a, b)
	}
}
