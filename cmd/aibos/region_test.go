package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/node"
	"github.com/aibos/kernel/internal/node/nodetest"
)

// The region and tenant commands against a real single-region primary.
// Global writes come before the second region is added: its endpoint
// answers nobody, so from then on the primary hears from no majority and
// its lease lapses.
func TestRegionCommands(t *testing.T) {
	cfg := nodetest.Config(t, "n1")
	cfg.Region = "us-east"
	cfg.Regions = node.RegionConfig{Domain: "us"}
	n := nodetest.Start(t, cfg)
	c := newCLI(t, n, n.URL())

	// The node enters multi-region mode shortly after it leads: the
	// client retries the 503 not_ready until then.
	r := c.run("region", "list")
	if r.code != exitOK || !strings.Contains(r.stdout, "self us-east, primary us-east, epoch 1") {
		t.Fatalf("region list: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !hasRow(r.stdout, "us-east", "us", "primary", "-", "false") {
		t.Fatalf("region list lacks us-east as primary:\n%s", r.stdout)
	}
	r = c.run("region", "list", "--json")
	var regs api.Regions
	if err := json.Unmarshal([]byte(r.stdout), &regs); r.code != exitOK || err != nil || regs.Self != "us-east" || len(regs.Regions) != 1 {
		t.Fatalf("region list --json: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}

	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string // in stdout
		stderr string // in stderr
	}{
		{name: "tenant add", args: []string{"tenant", "add", "acme", "--home", "us-east"}, stdout: "tenant acme lives in region us-east from global version"},
		{name: "tenant list", args: []string{"tenant", "list"}, stdout: "acme"},
		{name: "tenant add unknown home", args: []string{"tenant", "add", "globex", "--home", "mars"}, code: exitInvalid,
			stderr: `home region "mars" is not a region (404`},
		{name: "tenant add no home", args: []string{"tenant", "add", "globex"}, code: exitInvalid, stderr: "give --home REGION"},
		{name: "tenant add no id", args: []string{"tenant", "add", "--home", "us-east"}, code: exitInvalid, stderr: "give the tenant's ID"},
		{name: "status", args: []string{"region", "status"}, stdout: "unbounded (the only region"},
		{name: "promote self", args: []string{"region", "promote", "us-east"}, stdout: "region us-east is the primary of epoch 1 already"},
		{name: "promote another", args: []string{"region", "promote", "eu-west"}, code: exitInvalid,
			stderr: "a promotion runs in the region promoted: send it to eu-west (400"},
		{name: "add bad endpoint", args: []string{"region", "add", "eu-west", "--domain", "eu", "--endpoint", "ftp://x"}, code: exitInvalid,
			stderr: "want an absolute http(s) base URL"},
		{name: "add no endpoint", args: []string{"region", "add", "eu-west", "--domain", "eu"}, code: exitInvalid, stderr: "at least one --endpoint"},
		{name: "add", args: []string{"region", "add", "eu-west", "--domain", "eu", "--endpoint", "http://127.0.0.1:1"}, stdout: "region eu-west (domain eu) in the registry at global version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.run(tc.args...)
			if r.code != tc.code || !strings.Contains(r.stdout, tc.stdout) || !strings.Contains(r.stderr, tc.stderr) {
				t.Fatalf("aibos %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(tc.args, " "), r.code, tc.code, r.stdout, r.stderr)
			}
		})
	}
	r = c.run("region", "list")
	if r.code != exitOK || !hasRow(r.stdout, "eu-west", "eu", "secondary", "-", "false", "http://127.0.0.1:1") || !hasRow(r.stdout, "us-east", "us", "primary") {
		t.Fatalf("region list after region add: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := c.run("tenant", "list", "--json"); r.code != exitOK || !strings.Contains(r.stdout, `"home": "us-east"`) {
		t.Fatalf("tenant list --json: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// eu-west never acknowledges the primary: a majority of two regions
	// is both, so the primary holds no lease.
	r = c.run("region", "status")
	if r.code != exitOK || !hasRow(r.stdout, "role", "primary") || !hasRow(r.stdout, "primary", "us-east") || !strings.Contains(r.stdout, "lease until     none:") {
		t.Fatalf("region status after region add: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := c.run("region", "status", "--json"); r.code != exitOK || !strings.Contains(r.stdout, `"role": "primary"`) {
		t.Fatalf("region status --json: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// hasRow reports whether a line of out has fields beginning with
// want, in order.
func hasRow(out string, want ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < len(want) {
			continue
		}
		ok := true
		for i, w := range want {
			ok = ok && f[i] == w
		}
		if ok {
			return true
		}
	}
	return false
}

// A single-region node says how to start multi-region mode.
func TestRegionSingleRegion(t *testing.T) {
	n := nodetest.Start(t, nodetest.Config(t, "n1"))
	c := newCLI(t, n, n.URL())
	for _, args := range [][]string{{"region", "list"}, {"tenant", "list"}, {"region", "status"}} {
		r := c.run(args...)
		if r.code != exitInvalid || !strings.Contains(r.stderr, "--region ID --domain D") || !strings.Contains(r.stderr, "404") {
			t.Errorf("aibos %s on a single region: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
	}
}

// Usage errors name what is missing and print the usage, before any call.
func TestRegionUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"region"}, "Usage: aibos region list"},
		{[]string{"region", "frob"}, `unknown subcommand "frob"`},
		{[]string{"region", "promote"}, "give the region's ID"},
		{[]string{"region", "failover"}, "give the region's ID"},
		{[]string{"region", "add", "eu-west", "--endpoint", "http://x"}, "give --domain D"},
		{[]string{"region", "list", "extra"}, `unexpected argument "extra"`},
		{[]string{"tenant"}, "Usage: aibos tenant add"},
		{[]string{"tenant", "frob"}, `unknown subcommand "frob"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errb strings.Builder
			code := run(tc.args, strings.NewReader(""), &out, &errb)
			if code != exitInvalid || out.Len() != 0 || !strings.Contains(errb.String(), tc.want) || !strings.Contains(errb.String(), "Usage") {
				t.Fatalf("exit %d, want 2 with %q and the usage on stderr\nstdout: %s\nstderr: %s", code, tc.want, out.String(), errb.String())
			}
		})
	}
}
