package server_test

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/auth"
	"github.com/aibos/kernel/internal/node/nodetest"
)

// TestSystemPolicyPublish: an admin replaces the system bundle; a broken
// one or a non-admin is refused; the new one decides at once, on cached
// routes too.
func TestSystemPolicyPublish(t *testing.T) {
	n, c := startNode(t)
	ctx := context.Background()
	pep := nodetest.TokenClient(t, nodetest.NewToken(t, n, "p", "pep"), n)
	if _, err := pep.Check(ctx, check("a1", nil, "eu")); err != nil {
		t.Fatal(err) // permitted and remembered
	}
	if _, err := pep.Publish(ctx, file("b.yaml", allowAll), client.PublishOptions{}); !isCode(err, "forbidden") {
		t.Fatalf("pep publishes: %v", err)
	}
	def := auth.SystemBundle()
	if _, err := pep.PublishSystem(ctx, def, ""); !isCode(err, "forbidden") {
		t.Fatalf("pep replaces the system bundle: %v", err)
	}
	// A broken one: refused with every problem, nothing changes.
	rev := n.Store.AppliedRevision()
	broken := []api.File{{Name: "s.yaml", Data: []byte("kind: Policy\nname: x\nlayer: nope\nrules: []\n")}}
	if _, err := c.PublishSystem(ctx, broken, ""); !isCode(err, "invalid_bundle") || n.Store.AppliedRevision() != rev {
		t.Fatalf("broken system bundle: %v", err)
	}
	// pep may now publish, and may no longer check.
	pepRule := regexp.MustCompile(`(  - name: pep\n    effect: allow\n    actions: \[)kernel\.decision\.check,`)
	src := pepRule.ReplaceAllString(string(def[0].Data), "${1}kernel.policy.publish,")
	if src == string(def[0].Data) {
		t.Fatal("the pep rule is not where the test expects it")
	}
	src = strings.Replace(src, "  - name: pep checks\n    request: {subject: {type: operator, id: p, properties: {roles: [pep], tenants: []}}, action: {name: kernel.decision.check}, resource: {type: decision, id: check}}\n    expect: allow\n", "", 1)
	src = strings.Replace(src, "  - name: pep cannot publish\n", "  - name: pep publishes\n", 1)
	src = strings.Replace(src, "action: {name: kernel.policy.publish}, resource: {type: bundle, id: current}}\n    expect: deny", "action: {name: kernel.policy.publish}, resource: {type: bundle, id: current}}\n    expect: allow", 1)
	r, err := c.PublishSystem(ctx, []api.File{{Name: "system.yaml", Data: []byte(src)}}, "pep publishes")
	if err != nil || r.Version != 1 {
		t.Fatalf("publish the system bundle: %+v %v", r, err)
	}
	if _, err := pep.Publish(ctx, file("b.yaml", allowAll), client.PublishOptions{}); err != nil {
		t.Fatalf("pep publishes under the new system bundle: %v", err)
	}
	if _, err := pep.Check(ctx, check("a1", nil, "eu")); !isCode(err, "forbidden") {
		t.Fatalf("the remembered permit survived the new system bundle: %v", err)
	}
	got, err := c.SystemPolicy(ctx)
	if err != nil || got.Version != 1 || got.Author != nodetest.RootPrincipal {
		t.Fatalf("system policy: %+v %v", got.VersionInfo, err)
	}
	// A restart keeps it (the log, or a snapshot, holds it).
	if err := n.Store.Snapshot(); err != nil {
		t.Fatal(err)
	}
	cfg := n.Config()
	n.Close()
	n2 := nodetest.Start(t, cfg)
	if n2.System.Version() != 1 {
		t.Fatalf("after a restart the system bundle is version %d", n2.System.Version())
	}
}
