package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aibos/kernel/internal/engine"
	"github.com/aibos/kernel/internal/loopback"
	"github.com/aibos/kernel/internal/node"
)

const bundleV1 = `kind: Policy
name: admins
layer: tenant
rules:
  - {name: only, effect: allow, actions: ["kernel.*"], when: "subject.id == 'a'"}
---
kind: Policy
name: old
layer: agent
rules:
  - {name: rule-x, effect: deny, actions: ["x.y"]}
  - {name: rule-y, effect: deny, actions: ["x.z"]}
`

const bundleV2 = `kind: Policy
name: admins
layer: tenant
rules:
  - {name: only, effect: allow, actions: ["kernel.*"], when: "subject.id == 'b'"}
---
kind: Policy
name: new-policy
layer: platform
rules:
  - {name: r, effect: deny, actions: ["z.*"]}
---
kind: Policy
name: old
layer: agent
rules:
  - {name: rule-y, effect: deny, actions: ["x.z"]}
`

// bundleWarn compiles, but its second rule can never take effect.
const bundleWarn = `kind: Policy
name: p
layer: tenant
rules:
  - {name: no-x, effect: deny, actions: ["x.*"]}
  - {name: x-read, effect: allow, actions: ["x.read"]}
`

func writeFile(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPolicyDiffAndLintCommands(t *testing.T) {
	dir := t.TempDir()
	v1 := writeFile(t, dir, "v1.yaml", bundleV1)
	v2dir := filepath.Join(dir, "v2")
	writeFile(t, v2dir, "policies/all.yaml", bundleV2)
	warn := writeFile(t, dir, "warn.yaml", bundleWarn)
	bad := writeFile(t, dir, "bad.yaml", "kind: Policy\nname: p\nlayer: nowhere\nrules: []\n")

	tests := []struct {
		name      string
		args      []string
		code      int
		stdout    string // exact, unless contains is set
		contains  []string
		stderrHas string
	}{
		{
			name: "diff of two paths",
			args: []string{"diff", v1, v2dir},
			stdout: `+ platform/new-policy
~ tenant/admins/only: when: "subject.id == 'a'" -> "subject.id == 'b'"
- agent/old/rule-x
`,
		},
		{
			name: "diff backwards, flags after the paths",
			args: []string{"diff", v2dir, v1, "--server", "http://127.0.0.1:1"},
			stdout: `- platform/new-policy
~ tenant/admins/only: when: "subject.id == 'b'" -> "subject.id == 'a'"
+ agent/old/rule-x
`,
		},
		{name: "no changes", args: []string{"diff", v1, v1}, stdout: "no semantic changes\n"},
		{name: "no changes as JSON", args: []string{"diff", "--json", v1, v1}, stdout: "[]\n"},
		{
			name:     "JSON",
			args:     []string{"diff", "--json", v1, v2dir},
			contains: []string{`"kind": "added"`, `"policy": "new-policy"`, `"field": "when"`, `"from": "subject.id == 'a'"`},
		},
		{name: "one argument", args: []string{"diff", v1}, code: exitInvalid, stderrHas: "give two bundles"},
		{name: "missing path", args: []string{"diff", v1, filepath.Join(dir, "nope")}, code: exitInvalid, stderrHas: "nope"},
		{name: "invalid bundle", args: []string{"diff", v1, bad}, code: exitInvalid, stderrHas: bad + `:1:1: policy "p" has unknown layer`},
		{
			name:     "lint prints warnings after ok",
			args:     []string{"lint", warn},
			contains: []string{"ok: 1 policies", "warning: " + warn + `:6:5: allow rule "p/x-read" never takes effect`},
		},
		{
			name:     "lint --strict fails on warnings",
			args:     []string{"lint", "--strict", warn},
			code:     exitFailed,
			contains: []string{"warning: ", "1 warning(s)"},
		},
		{name: "lint --strict without warnings", args: []string{"lint", v1, "--strict"}, contains: []string{"ok: 2 policies"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := cmdPolicy(tt.args, strings.NewReader(""), &out, &errOut)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out.String(), errOut.String())
			}
			if tt.contains == nil && tt.stdout != "" && out.String() != tt.stdout {
				t.Errorf("stdout:\n%s\nwant:\n%s", out.String(), tt.stdout)
			}
			for _, s := range tt.contains {
				if !strings.Contains(out.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, out.String())
				}
			}
			if !strings.Contains(errOut.String(), tt.stderrHas) {
				t.Errorf("stderr lacks %q:\n%s", tt.stderrHas, errOut.String())
			}
		})
	}
}

// TestPublishWarningsAndDiffVersions runs a real single node: publishes
// answer with the lint warnings, and diff fetches versions by number.
func TestPublishWarningsAndDiffVersions(t *testing.T) {
	data := t.TempDir()
	n, err := node.Start(context.Background(), node.Config{
		NodeID: "n1", HTTPAddr: "127.0.0.1:0", RaftAddr: loopback.RaftAddr(), DataDir: data, RootPrincipal: "t",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	v1 := writeFile(t, dir, "v1.yaml", bundleV1)
	warn := writeFile(t, dir, "warn.yaml", bundleWarn)
	run := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := cmdPolicy(append(args, "--server", n.URL(), "--token-file", filepath.Join(data, "root-token")), strings.NewReader(""), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	wantWarning := `warning: warn.yaml:6:5: allow rule "p/x-read" never takes effect`
	for _, dry := range []string{"--dry-run", "--dry-run=false"} {
		code, out, errOut := run("publish", warn, dry, "--author", "t")
		if code != exitOK || !strings.Contains(out, wantWarning) {
			t.Fatalf("publish %s: exit %d\nstdout:\n%s\nstderr:\n%s", dry, code, out, errOut)
		}
	}
	if code, out, errOut := run("publish", v1, "--author", "t"); code != exitOK || strings.Contains(out, "warning") {
		t.Fatalf("publish v1: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	code, out, errOut := run("diff", "--json", "1", "2")
	if code != exitOK {
		t.Fatalf("diff 1 2: exit %d\n%s", code, errOut)
	}
	var changes []engine.Change
	if err := json.Unmarshal([]byte(out), &changes); err != nil {
		t.Fatalf("diff --json: %v\n%s", err, out)
	}
	var got []string
	for _, c := range changes {
		got = append(got, string(c.Kind)+" "+c.Path())
	}
	want := []string{"added tenant/admins", "removed tenant/p", "added agent/old"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("diff 1 2: %q, want %q", got, want)
	}
	if code, out, errOut := run("diff", "2", v1); code != exitOK || out != "no semantic changes\n" {
		t.Errorf("diff 2 PATH: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if code, _, errOut := run("diff", "7", v1); code != exitInvalid || !strings.Contains(errOut, "version 7") {
		t.Errorf("diff of a missing version: exit %d, stderr %s", code, errOut)
	}
}
