package main

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/node/nodetest"
)

// What the commands say, against a real node: each message says what
// happened or what is wrong, and only that.
func TestCLIMessages(t *testing.T) {
	c, _, agent, token := gatewayCLI(t)

	// A denied approval does not read like an approved one.
	r := c.must(exitFailed, "invoke", "crm.refund", "--token", token, "--input", `{"customer":"c-1","amount":900}`)
	held := decodeInvoke(t, r)
	r = c.must(exitOK, "approval", "deny", held.ApprovalID, "--as", "bob", "--reason", "too much")
	if !strings.Contains(r.stdout, "denied by bob") || !strings.Contains(r.stdout, "will not run") || strings.Contains(r.stdout, "may run") {
		t.Errorf("approval deny: %q", r.stdout)
	}

	// A kill switch without a reason names no switch (none was made),
	// from the CLI and from the API.
	r = c.must(exitInvalid, "kill", "set", "--scope", "agent", "--target", agent)
	if strings.Contains(r.stderr, "kill_") || !strings.Contains(r.stderr, "--reason") {
		t.Errorf("kill set without --reason: %q", r.stderr)
	}
	sdk, err := client.New([]string{c.server}, client.Options{Token: nodetest.Token(c.n)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = sdk.Kill(context.Background(), api.KillRequest{Scope: api.KillAgent, Target: agent})
	if err == nil || strings.Contains(err.Error(), "kill_") || !strings.Contains(err.Error(), "reason") || !strings.Contains(err.Error(), agent) {
		t.Errorf("POST /v1/kill without a reason: %v", err)
	}
	// A global kill switch's scope has no trailing space.
	r = c.must(exitOK, "kill", "set", "--scope", "global", "--reason", "drill")
	km := killLine.FindStringSubmatch(r.stdout)
	if km == nil || !strings.Contains(r.stdout, "(global)") {
		t.Fatalf("kill set global: %q", r.stdout)
	}
	// Lifting it takes a second person (the default system policy).
	r = c.run("kill", "lift", km[1], "--reason", "drill over")
	liftHeld := regexp.MustCompile(`aibos approval approve (apv_\w+)`).FindStringSubmatch(r.stderr)
	if r.code != exitInvalid || liftHeld == nil {
		t.Fatalf("kill lift of a global switch: exit %d, want it held\n%s%s", r.code, r.stdout, r.stderr)
	}
	c.must(exitOK, "approval", "approve", liftHeld[1], "--as", "alice")
	c.must(exitOK, "kill", "lift", km[1], "--reason", "drill over", "--approval", liftHeld[1])

	// Unknown filter values are refused with the valid ones.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"approval", "list", "--state", "bogus"}, "pending, approved, denied, expired, voided, consumed"},
		{[]string{"action", "list", "--risk", "bogus"}, "read, write, destructive, external"},
	} {
		r := c.run(tc.args...)
		if r.code != exitInvalid || r.stdout != "" || !strings.Contains(r.stderr, "bogus") || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("aibos %s: exit %d, stdout %q, stderr %q", strings.Join(tc.args, " "), r.code, r.stdout, r.stderr)
		}
	}

	// An orchestra's YAML errors have a line and a column.
	typo := tempFile(t, "typo.yaml", "name: x\nbackend: {type: http, url: 'http://127.0.0.1:1'}\nactoins: []\n")
	bad := tempFile(t, "bad.yaml", "name: x\nbackend: {type: http\nactions: []\n")
	wrongType := tempFile(t, "type.yaml", "name: x\nbackend: {type: http, url: 'http://127.0.0.1:1'}\nactions:\n  - name: x.y\n    risk: [1]\n")
	for _, tc := range []struct{ file, want string }{
		{typo, typo + ":3:1: unknown field \"actoins\""},
		{bad, bad + ":2:"},
		{wrongType, wrongType + ":5:11:"},
	} {
		r := c.run("orchestra", "put", tc.file)
		if r.code != exitInvalid || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("orchestra put %s: exit %d, stderr %q; want %q", tc.file, r.code, r.stderr, tc.want)
		}
	}

	// The built-in orchestra cannot be deleted, and says so.
	r = c.must(exitInvalid, "orchestra", "delete", "kernel")
	if !strings.Contains(r.stderr, "built in") || strings.Contains(r.stderr, "not found") || strings.Contains(r.stderr, "no orchestra") {
		t.Errorf("orchestra delete kernel: %q", r.stderr)
	}

	// rollback records who rolled back.
	c.must(exitOK, "policy", "publish", tempFile(t, "gateway.yaml", cliGatewayPolicy), "--message", "again")
	c.must(exitOK, "policy", "rollback", "--to", "1", "--author", "carol", "--message", "back")
	r = c.must(exitOK, "policy", "versions", "--json")
	var vs []api.VersionInfo
	if err := json.Unmarshal([]byte(r.stdout), &vs); err != nil || len(vs) != 3 || vs[2].Author != "carol" || vs[2].RollbackOf != 1 {
		t.Errorf("versions after rollback --author carol: %v %s", err, r.stdout)
	}

	// While a rollout is active a publish is refused, saying why once.
	c.must(exitOK, "rollout", "start", "--candidate", "2", "--percent", "10")
	r = c.must(exitInvalid, "policy", "publish", tempFile(t, "gateway.yaml", cliGatewayPolicy))
	if n := strings.Count(r.stderr, "freezes the bundle"); n != 1 || !strings.Contains(r.stderr, "promote or abort") {
		t.Errorf("publish during a rollout (%d times \"freezes the bundle\"): %q", n, r.stderr)
	}
	c.must(exitOK, "rollout", "abort", "--reason", "done")
}
