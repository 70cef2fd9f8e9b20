package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/node/nodetest"
)

// cluster status against a real 3-node cluster: every member's applied
// revision, a killed member shown unreachable, a node that knows no leader
// said so with exit 1, and a node that is not there named with what to do.
func TestClusterStatus(t *testing.T) {
	nodes := nodetest.Cluster(t, 3, 0, nil)
	rev, err := nodetest.Client(t, nodes...).PutEntities(context.Background(), []api.Entity{{Type: "user", ID: "u1"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if err := n.Store.WaitForRevision(context.Background(), rev); err != nil {
			t.Fatal(err)
		}
	}
	// Asked of a follower, every member has applied the write.
	follower := nodes[1]
	if follower.Store.IsLeader() {
		follower = nodes[2]
	}
	c := newCLI(t, nodes[0], follower.URL())
	r := c.must(exitOK, "cluster", "status", "--json")
	var cl api.Cluster
	if err := json.Unmarshal([]byte(r.stdout), &cl); err != nil || len(cl.Nodes) != 3 || cl.Leader == "" {
		t.Fatalf("cluster status --json: %v %q", err, r.stdout)
	}
	for _, n := range cl.Nodes {
		if n.AppliedRevision < rev || n.Status != api.NodeReady {
			t.Errorf("node %s: applied %d, status %q; want at least %d and ready (answer %s)", n.ID, n.AppliedRevision, n.Status, rev, r.stdout)
		}
	}
	r = c.must(exitOK, "cluster", "status")
	if strings.Count(r.stdout, " ready ") != 3 {
		t.Errorf("cluster status: want 3 ready members:\n%s", r.stdout)
	}

	// A killed member is unreachable, not a follower.
	deadID, dead := "n3", nodes[2] // nodetest.Cluster names them n1, n2, n3
	if dead.Store.IsLeader() {
		deadID, dead = "n2", nodes[1]
	}
	deadURL := dead.URL()
	dead.Kill()
	alive := nodes[0]
	c = newCLI(t, nodes[0], alive.URL())
	r = c.must(exitOK, "cluster", "status")
	var row string
	for _, line := range strings.Split(r.stdout, "\n") {
		if strings.HasPrefix(line, deadID+" ") {
			row = line
		}
	}
	if !strings.Contains(row, "unreachable") || strings.Contains(row, "follower") {
		t.Errorf("killed member %s: row %q; want it unreachable and not a follower:\n%s", deadID, row, r.stdout)
	}

	// Pointed at a dead node: which one, and what to do.
	c = newCLI(t, nodes[0], deadURL)
	r = c.run("cluster", "status", "--wait", "0")
	if r.code != exitInvalid || !strings.Contains(r.stderr, "cannot reach a kernel node at "+deadURL) || !strings.Contains(r.stderr, "aibos serve") || strings.Contains(r.stderr, "dial tcp") {
		t.Errorf("cluster status of a dead node: exit %d, stderr %q", r.code, r.stderr)
	}

	// With a majority gone the last node knows no leader: said, exit 1.
	for _, n := range nodes[1:] {
		n.Kill()
	}
	c = newCLI(t, nodes[0], alive.URL())
	deadline := time.Now().Add(nodetest.WaitLong)
	for {
		r = c.run("cluster", "status", "--wait", "1s")
		if r.code != exitOK || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond) // until its leader lease runs out
	}
	if r.code != exitFailed || !strings.Contains(r.stderr, "knows no leader") || !strings.Contains(r.stdout, "leader unknown") {
		t.Errorf("cluster status without a leader: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
}
