package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/node/nodetest"
)

const userBundle = `kind: Policy
name: mine
layer: platform
rules:
  - name: reads
    effect: allow
    actions: ["data.query"]
`

// TestBenchLeavesThePublishedBundleAlone: bench never replaces a bundle
// someone published unless --setup asks it to; on a node without a bundle
// it says what to do instead of benchmarking "no bundle" denials.
func TestBenchLeavesThePublishedBundleAlone(t *testing.T) {
	n := nodetest.Start(t, nodetest.Config(t, "n1"))
	c := nodetest.Client(t, n)
	ctx := context.Background()
	bench := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		args = append([]string{"--server", n.URL(), "--token-file", newCLI(t, n, n.URL()).tokenFile(""), "--duration", "200ms", "--concurrency", "2", "--policies", "40"}, args...)
		code := cmdBench(args, &out, &errb)
		return code, out.String(), errb.String()
	}

	code, out, errs := bench()
	if code == exitOK || !strings.Contains(errs, "no policy bundle") || !strings.Contains(errs, "--setup") {
		t.Fatalf("no bundle, no --setup: exit %d\n%s%s", code, out, errs)
	}
	if _, err := c.Current(ctx); err == nil {
		t.Fatal("bench without --setup published a bundle")
	}

	mine, err := c.Publish(ctx, []api.File{{Name: "mine.yaml", Data: []byte(userBundle)}}, client.PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	code, out, errs = bench()
	if code != exitOK || !strings.Contains(out, "version 1") {
		t.Fatalf("against the published bundle: exit %d\n%s%s", code, out, errs)
	}
	reqs := filepath.Join(t.TempDir(), "reqs.json")
	os.WriteFile(reqs, []byte(`[{"subject":{"type":"user","id":"u1"},"action":{"name":"data.query"}}]`), 0o644)
	if code, out, errs = bench("--requests", reqs, "--batch", "3"); code != exitOK {
		t.Fatalf("--requests: exit %d\n%s%s", code, out, errs)
	}
	if cur, err := c.Current(ctx); err != nil || cur.Version != mine.Version {
		t.Fatalf("bench without --setup replaced the published bundle: %v version %d, want %d", err, cur.Version, mine.Version)
	}

	code, out, errs = bench("--setup")
	if code != exitOK || !strings.Contains(out, "replaced") || !strings.Contains(out, "rollback --to 1") {
		t.Fatalf("--setup: exit %d\n%s%s", code, out, errs)
	}
	if cur, err := c.Current(ctx); err != nil || cur.Version != mine.Version+1 {
		t.Fatalf("--setup did not publish its bundle: %v %d", err, cur.Version)
	}
}
