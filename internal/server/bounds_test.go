package server_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/engine/enginetest"
	"github.com/aibos/kernel/internal/node"
	"github.com/aibos/kernel/internal/policy"
)

// TestPublishRefusesPatternFromRequest makes sure a matches whose pattern
// comes from the request is refused at publish, dry run or not, with its
// position and what to write instead, while a literal pattern publishes.
func TestPublishRefusesPatternFromRequest(t *testing.T) {
	_, c := startNode(t)
	ctx := context.Background()
	bad := `kind: Policy
name: names
layer: tenant
rules:
  - name: by-pattern
    effect: allow
    actions: ["data.query"]
    when: '"agent-7".matches(context.re)'
`
	for _, dry := range []bool{true, false} {
		_, err := c.Publish(ctx, file("b.yaml", bad), client.PublishOptions{DryRun: dry})
		var apiErr *client.Error
		if !errors.As(err, &apiErr) || apiErr.Status != 400 || apiErr.Code != "invalid_bundle" || len(apiErr.Details) != 1 {
			t.Fatalf("dry run %v: got %v, want one invalid_bundle error", dry, err)
		}
		want := `b.yaml:8:11: policy "names" rule "by-pattern": condition line 1, column 19: the pattern of matches must be a string literal`
		if !strings.HasPrefix(apiErr.Details[0], want) || !strings.Contains(apiErr.Details[0], "write the pattern in the condition") {
			t.Errorf("dry run %v: got %q, want it to start %q and say what to do", dry, apiErr.Details[0], want)
		}
	}
	if vs, _ := c.Versions(ctx); len(vs) != 0 {
		t.Fatalf("nothing may be published: %+v", vs)
	}
	good := strings.Replace(bad, "context.re", `"^agent-[0-9]+$"`, 1)
	good = strings.Replace(good, `'"agent-7".matches`, `'subject.id.matches`, 1)
	if _, err := c.Publish(ctx, file("b.yaml", good), client.PublishOptions{}); err != nil {
		t.Fatalf("a literal pattern: %v", err)
	}
	req := api.CheckRequest{Subject: api.Entity{Type: "agent", ID: "agent-7"}, Action: api.Action{Name: "data.query"}, Resource: api.Entity{Type: "table", ID: "t"}}
	if d, err := c.Check(ctx, req); err != nil || d.Decision != api.Allow {
		t.Fatalf("check: %v %+v", err, d)
	}
}

// TestPublishRefusesHugeBundle makes sure a bundle over the node's rule
// limit is refused with the limit, the count and the position of the first
// rule over it, and one at the limit is not. The node runs with a limit of
// 200 rules, so that this costs 210 rules rather than 50,010.
func TestPublishRefusesHugeBundle(t *testing.T) {
	_, c := startNode(t, func(cfg *node.Config) { cfg.BundleLimits = policy.Limits{Rules: 200} })
	ctx := context.Background()
	_, err := c.Publish(ctx, enginetest.GenerateRules(210, 10), client.PublishOptions{DryRun: true})
	var apiErr *client.Error
	if !errors.As(err, &apiErr) || apiErr.Status != 400 || apiErr.Code != "invalid_bundle" || len(apiErr.Details) != 1 {
		t.Fatalf("got %v, want one invalid_bundle error", err)
	}
	if want := "the bundle has 210 rules; at most 200 are allowed (this is rule 201)"; !strings.HasPrefix(apiErr.Details[0], "rules.yaml:") ||
		!strings.Contains(apiErr.Details[0], want) {
		t.Errorf("got %q, want a position in rules.yaml and %q", apiErr.Details[0], want)
	}
	if _, err := c.Publish(ctx, enginetest.GenerateRules(200, 10), client.PublishOptions{DryRun: true}); err != nil {
		t.Errorf("200 rules, at the limit: %v", err)
	}
}

// TestPublishStopsWhenClientLeaves publishes a 50,000-rule bundle and
// leaves as soon as the node is at work on it: the node must stop parsing,
// compiling and linting at once and publish nothing. Leaving when the work
// is seen, not after a fixed delay, costs the upload and the start of the
// parse only; a node that went on would still be at work 10 s later (under
// -race even parsing this bundle takes longer).
func TestPublishStopsWhenClientLeaves(t *testing.T) {
	_, c := startNode(t)
	files := enginetest.GenerateRules(policy.MaxRules, 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := c.Publish(ctx, files, client.PublishOptions{})
		errc <- err
	}()
	for engineFrames() == "" {
		select {
		case err := <-errc:
			t.Fatalf("the publish ended (%v) before the node was seen compiling; the test needs a bigger bundle", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("the publish succeeded although its client left while the node compiled")
	}
	deadline := time.Now().Add(10 * time.Second)
	for busy := engineFrames(); busy != ""; busy = engineFrames() {
		if time.Now().After(deadline) {
			t.Fatalf("10 s after the client left the node still compiles or lints:\n%s", busy)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if vs, _ := c.Versions(context.Background()); len(vs) != 0 {
		t.Fatalf("a cancelled publish published: %+v", vs)
	}
}

// engineFrames returns a goroutine stack that is inside the engine's
// compile, tests or lint, or "".
func engineFrames() string {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		for _, fn := range []string{"internal/engine.compileRules", "internal/engine.Lint", "internal/engine.constConditions", "internal/engine.Prepare", "internal/engine.(*Bundle).RunTests", "internal/engine.Compile", "internal/engine.Load"} {
			if strings.Contains(g, fn) {
				return g
			}
		}
	}
	return ""
}
