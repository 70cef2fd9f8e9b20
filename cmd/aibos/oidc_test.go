package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aibos/kernel/internal/auth"
	"github.com/aibos/kernel/internal/auth/authtest"
	"github.com/aibos/kernel/internal/node/nodetest"
)

// The --oidc-* flags are checked before anything starts: every problem
// said at once, with the flag to fix.
func TestServeOIDCFlagErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--oidc-audience", "aibos"}, []string{"need --oidc-issuer"}},
		{[]string{"--oidc-issuer", "https://login.example.test"}, []string{"--oidc-audience"}},
		{[]string{"--oidc-issuer", "https://i", "--oidc-audience", "a", "--oidc-jwks-file", "f", "--oidc-jwks-url", "u"}, []string{"not both"}},
		{[]string{"--oidc-issuer", "https://i", "--oidc-audience", "a", "--oidc-role-map", "ops=root"}, []string{"--oidc-role-map", `"root" is not a built-in role`}},
	} {
		var out, errb bytes.Buffer
		args := append([]string{"serve", "--data", filepath.Join(dir, "d"), "--http", "127.0.0.1:0", "--raft", "127.0.0.1:0"}, c.args...)
		code := run(args, nil, &out, &errb)
		for _, w := range c.want {
			if code != exitInvalid || !strings.Contains(errb.String(), w) {
				t.Errorf("serve %v: exit %d, stderr %q; want %q", c.args, code, errb.String(), w)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "d")); err == nil {
		t.Error("a refused serve made its data directory")
	}
}

// An operator signed in at the issuer uses the CLI with the ID token as
// its token.
func TestCLIWithIDToken(t *testing.T) {
	is := authtest.NewIssuer(t, "https://login.example.test", "aibos")
	cfg := nodetest.Config(t, "n1")
	cfg.OIDC = auth.OIDCConfig{Issuer: is.URL, Audience: "aibos", JWKSFile: is.JWKSFile, PrincipalClaim: "email", RoleMap: map[string][]string{"sre": {auth.RoleAuditor}}}
	n := nodetest.Start(t, cfg)
	f := filepath.Join(t.TempDir(), "id-token")
	os.WriteFile(f, []byte(is.Token(t, "u1", time.Hour, map[string]any{"email": "ana@example.test", "groups": []string{"sre"}})+"\n"), 0o600)
	var out, errb bytes.Buffer
	if code := run([]string{"whoami", "--server", n.URL(), "--token-file", f}, nil, &out, &errb); code != 0 || !strings.Contains(out.String(), "ana@example.test") || !strings.Contains(out.String(), "auditor") {
		t.Fatalf("whoami: exit %d, %q %q", code, out.String(), errb.String())
	}
	out.Reset()
	errb.Reset()
	os.WriteFile(f, []byte(is.Token(t, "u1", -time.Minute, map[string]any{"email": "ana@example.test"})+"\n"), 0o600)
	if code := run([]string{"whoami", "--server", n.URL(), "--token-file", f}, nil, &out, &errb); code == 0 || !strings.Contains(errb.String(), "expired") {
		t.Fatalf("whoami with an expired ID token: exit %d, %q %q", code, out.String(), errb.String())
	}
}
