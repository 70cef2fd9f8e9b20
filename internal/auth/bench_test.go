package auth

import (
	"crypto/sha256"
	"net/http"
	"testing"

	"github.com/aibos/kernel/api"
)

type oneToken struct {
	sum [32]byte
	tok api.Token
}

func (o oneToken) TokenBySum(sum [32]byte) (api.Token, bool) {
	if sum != o.sum {
		return api.Token{}, false
	}
	return o.tok, true
}

func (oneToken) AgentByToken(string) (api.Agent, bool) { return api.Agent{}, false }

// BenchmarkAuthenticate is what authentication adds to every request:
// the header, the token's form, its SHA-256, the lookup and the
// constant-time compare.
//
//	go test -run '^$' -bench Authenticate -benchmem ./internal/auth/
func BenchmarkAuthenticate(b *testing.B) {
	secret, acc, _ := NewOperatorToken(nil)
	sum := sha256.Sum256([]byte(secret))
	st := oneToken{sum: sum, tok: api.Token{Accessor: acc, Principal: "p", Roles: []string{RolePEP}}}
	v, _ := NewVerifier(VerifierConfig{Tokens: st, Agents: st})
	r, _ := http.NewRequest("POST", "/v1/check", nil)
	r.Header.Set("Authorization", "Bearer "+secret)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Authenticate(r); err != nil {
			b.Fatal(err)
		}
	}
}
