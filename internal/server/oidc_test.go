package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/auth"
	"github.com/aibos/kernel/internal/auth/authtest"
	"github.com/aibos/kernel/internal/node"
)

// TestOIDCOperators: a node that trusts an issuer takes its ID tokens as
// operator credentials, with the roles its groups map to, authorized by
// the system bundle like any token; a bad ID token is a 401 that says
// which check failed.
func TestOIDCOperators(t *testing.T) {
	is := authtest.NewIssuer(t, "https://login.example.test", "aibos")
	n, _ := startNode(t, func(c *node.Config) {
		c.OIDC = auth.OIDCConfig{
			Issuer: is.URL, Audience: "aibos", JWKSFile: is.JWKSFile, PrincipalClaim: "email",
			RoleMap: map[string][]string{"platform": {auth.RoleAdmin}, "apps": {auth.RolePEP}},
		}
	})
	admin := is.Token(t, "u1", time.Hour, map[string]any{"email": "ana@example.test", "groups": []string{"platform"}})
	pep := is.Token(t, "u2", time.Hour, map[string]any{"email": "svc@example.test", "groups": "apps"})

	resp, body := doAs(t, n.URL(), admin, "GET", "/v1/whoami", "")
	var who api.WhoAmI
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &who) != nil || who.Principal != "ana@example.test" || who.Kind != auth.KindOperator || len(who.Roles) != 1 || who.Roles[0] != auth.RoleAdmin {
		t.Fatalf("whoami: %d %s", resp.StatusCode, body)
	}
	if st, out := raw(t, n, "PUT", "/v1/policies", "application/yaml", allowAll, bearer(admin)); st != 200 {
		t.Fatalf("admin publish: %d %s", st, out)
	}
	if st, out := raw(t, n, "PUT", "/v1/policies", "application/yaml", allowAll, bearer(pep)); st != http.StatusForbidden {
		t.Fatalf("pep publish: %d %s", st, out)
	}
	check := `{"subject":{"type":"user","id":"u"},"action":{"name":"read"},"resource":{"type":"doc","id":"d"}}`
	if resp, out := doAs(t, n.URL(), pep, "POST", "/v1/check", check); resp.StatusCode != 200 || !strings.Contains(out, "allow") {
		t.Fatalf("pep check: %d %s", resp.StatusCode, out)
	}

	other := authtest.NewIssuer(t, is.URL, "aibos")
	for _, c := range []struct{ name, tok, want string }{
		{"expired", is.Token(t, "u1", -time.Second, map[string]any{"email": "a", "groups": "platform"}), "expired"},
		{"audience", is.Token(t, "u1", time.Hour, map[string]any{"email": "a", "groups": "platform", "aud": "grafana"}), "wrong audience"},
		{"signature", other.Token(t, "u1", time.Hour, map[string]any{"email": "a", "groups": "platform"}), "signature"},
	} {
		resp, out := doAs(t, n.URL(), c.tok, "GET", "/v1/whoami", "")
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(out, c.want) {
			t.Errorf("%s: %d %s; want 401 saying %q", c.name, resp.StatusCode, out, c.want)
		}
	}
}
