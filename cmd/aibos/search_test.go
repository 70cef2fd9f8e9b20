package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/node/nodetest"
	"github.com/aibos/kernel/internal/policy"
)

// TestSearchCommand runs aibos search subject|resource|action against a
// real node holding the Search interop scenario's bundle.
func TestSearchCommand(t *testing.T) {
	n := nodetest.Start(t, nodetest.Config(t, "n1"))
	c := nodetest.Client(t, n)
	ctx := context.Background()
	files, err := policy.ReadPath("../../examples/authzen-search")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, files, client.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	ents := []api.Entity{
		{Type: "user", ID: "alice", Properties: map[string]any{"role": "manager", "department": "Sales"}},
		{Type: "user", ID: "bob", Properties: map[string]any{"role": "employee", "department": "Legal"}},
	}
	for i := range 7 {
		ents = append(ents, api.Entity{Type: "record", ID: fmt.Sprintf("r%d", i), Properties: map[string]any{"department": "Legal", "owner": "alice"}})
	}
	if _, err := c.PutEntities(ctx, ents); err != nil {
		t.Fatal(err)
	}
	srv := n.URL()
	for _, tc := range []struct {
		args []string
		want string
		code int
	}{
		{[]string{"search", "subject", "--type", "user", "--action", "edit", "--resource", "record:r1"}, "user:alice\n", exitOK},
		{[]string{"search", "resource", "--subject", "user:bob", "--action", "view", "--type", "record", "--limit", "2"}, "record:r0\nrecord:r1\nrecord:r2\nrecord:r3\nrecord:r4\nrecord:r5\nrecord:r6\n", exitOK},
		{[]string{"search", "action", "--subject", "user:bob", "--resource", "record:r1"}, "view\n", exitOK},
		{[]string{"search", "action", "--subject", "user:alice", "--resource", "record:r1"}, "delete\nedit\nview\n", exitOK},
		{[]string{"search", "resource", "--subject", "user:bob", "--action", "view"}, "--type is required", exitInvalid},
		{[]string{"search", "action", "--subject", "bob", "--resource", "record:r1"}, "want TYPE:ID", exitInvalid},
		{[]string{"search", "everything"}, "Usage:", exitInvalid},
	} {
		r := newCLI(t, n, srv).run(tc.args...)
		code, got := r.code, r.stdout+r.stderr
		if code != tc.code || !strings.Contains(got, tc.want) {
			t.Errorf("%v: exit %d, %q; want %d with %q", tc.args, code, got, tc.code, tc.want)
		}
	}
}
