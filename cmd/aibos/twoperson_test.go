package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/aibos/kernel/internal/node/nodetest"
)

// TestKillLiftTwoPerson: lifting a global kill switch from the CLI is
// held, approved by someone else, then redeemed with --approval.
func TestKillLiftTwoPerson(t *testing.T) {
	n := nodetest.Start(t, nodetest.Config(t, "n1"))
	c := newCLI(t, n, n.URL())
	r := c.must(exitOK, "kill", "set", "--scope", "global", "--reason", "incident")
	id := killLine.FindStringSubmatch(r.stdout)[1]
	r = c.run("kill", "lift", id, "--reason", "over")
	m := regexp.MustCompile(`aibos approval approve (apv_\w+)`).FindStringSubmatch(r.stderr)
	if r.code != exitInvalid || m == nil || !strings.Contains(r.stderr, "second person") {
		t.Fatalf("held lift: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	c.must(exitOK, "approval", "approve", m[1], "--as", "alice")
	c.must(exitOK, "kill", "lift", id, "--reason", "over", "--approval", m[1])
	if len(n.Store.ActiveKills()) != 0 {
		t.Fatal("the kill switch is still active")
	}
}
