package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aibos/kernel/internal/node/nodetest"
)

// tinyModule is a hand-assembled guest: a memory and an aibos_tick that
// returns its argument, importing aibos/v1.log (no Go toolchain needed).
var tinyModule = []byte{
	0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
	0x01, 0x0c, 0x02, 0x60, 0x03, 0x7f, 0x7f, 0x7f, 0x00, 0x60, 0x01, 0x7f, 0x01, 0x7f,
	0x02, 0x10, 0x01, 0x08, 'a', 'i', 'b', 'o', 's', '/', 'v', '1', 0x03, 'l', 'o', 'g', 0x00, 0x00,
	0x03, 0x02, 0x01, 0x01,
	0x05, 0x03, 0x01, 0x00, 0x01,
	0x07, 0x17, 0x02, 0x06, 'm', 'e', 'm', 'o', 'r', 'y', 0x02, 0x00,
	0x0a, 'a', 'i', 'b', 'o', 's', '_', 't', 'i', 'c', 'k', 0x00, 0x01,
	0x0a, 0x06, 0x01, 0x04, 0x00, 0x20, 0x00, 0x0b,
}

func TestCLIAgentRuntime(t *testing.T) {
	n := nodetest.Start(t, nodetest.Config(t, "n1"))
	c := newCLI(t, n, n.URL())
	c.must(exitOK, "agent", "register", tempFile(t, "a.yaml", "id: tiny\nversion: \"1\"\ncapabilities: [\"kernel.audit.query\"]\n"))

	dir := t.TempDir()
	mod := filepath.Join(dir, "tiny.wasm")
	if err := os.WriteFile(mod, tinyModule, 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.wasm")
	if err := os.WriteFile(bad, []byte("nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := c.must(exitOK, "agent", "deploy", "tiny", "--module", mod)
	if !strings.Contains(r.stdout, "deployed module sha256:") || !strings.Contains(r.stdout, "version 1") {
		t.Fatalf("deploy: %q", r.stdout)
	}
	r = c.run("agent", "deploy", "tiny", "--module", bad)
	if r.code == exitOK || !strings.Contains(r.stderr, "not a WebAssembly binary") {
		t.Fatalf("bad deploy: exit %d, %q", r.code, r.stderr)
	}
	c.must(exitInvalid, "agent", "deploy", "tiny")
	r = c.must(exitOK, "agent", "start", "tiny")
	if !strings.Contains(r.stdout, "desired running") {
		t.Fatalf("start: %q", r.stdout)
	}
	r = c.must(exitOK, "agent", "status", "tiny", "--json")
	if !strings.Contains(r.stdout, `"desired": "running"`) {
		t.Fatalf("status: %q", r.stdout)
	}
	c.must(exitInvalid, "agent", "upgrade", "tiny")
	r = c.run("agent", "upgrade", "tiny", "--version", "9")
	if r.code == exitOK || !strings.Contains(r.stderr, `no version "9"`) {
		t.Fatalf("upgrade to a missing version: exit %d, %q", r.code, r.stderr)
	}
	r = c.must(exitOK, "agent", "stop", "tiny")
	if !strings.Contains(r.stdout, "desired stopped") {
		t.Fatalf("stop: %q", r.stdout)
	}
}
