package server_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/node/nodetest"
	"github.com/aibos/kernel/internal/pdp"
	"github.com/aibos/kernel/internal/store"
)

// TestRolloutStagedBundle canaries a bundle that was never published: the
// cohort (10% of 10,000 subjects) gets it as version n+1, everyone else the
// current version; the bundle is frozen meanwhile; a promote publishes it
// as exactly version n+1.
func TestRolloutStagedBundle(t *testing.T) {
	nd, c := startNode(t)
	ann := nodetest.ClientAs(t, "ann", []string{"admin"}, nd)
	ctx := context.Background()
	if r, err := c.Publish(ctx, readsBundle("allow"), client.PublishOptions{}); err != nil || r.Version != 1 {
		t.Fatalf("publish: %+v %v", r, err)
	}

	bad := file("reads.yaml", "kind: Policy\nname: reads\nlayer: platform\nrules:\n  - name: broken\n    effect: deny\n    actions: [\"doc.read\"]\n    when: \"subject.\"\n")
	_, err := c.StartRollout(ctx, api.RolloutRequest{Files: bad, Percent: 10}, "")
	if e, ok := err.(*client.Error); !ok || e.Status != 400 || e.Code != "invalid_bundle" || len(e.Details) == 0 {
		t.Fatalf("invalid staged bundle: %v", err)
	}
	if _, err := c.StartRollout(ctx, api.RolloutRequest{Candidate: 1, Files: readsBundle("deny")}, ""); !isCode(err, "bad_request") {
		t.Fatalf("candidate and files: %v", err)
	}
	if st, err := c.Rollout(ctx); err != nil || st.Rollout != nil {
		t.Fatalf("a rejected start left a rollout: %+v %v", st.Rollout, err)
	}

	cand := readsBundle("deny")
	st, err := ann.StartRollout(ctx, api.RolloutRequest{Files: cand, Percent: 10}, "ann")
	if err != nil {
		t.Fatal(err)
	}
	ro := st.Rollout
	if ro.State != api.RolloutActive || !ro.Staged || ro.Candidate != 2 || ro.Base != 1 || ro.CandidateHash != store.HashFiles(cand) {
		t.Fatalf("started %+v", ro)
	}
	if vs, err := c.Versions(ctx); err != nil || len(vs) != 1 {
		t.Fatalf("staging published a version: %+v %v", vs, err)
	}

	const n = 10000
	reqs := make([]api.CheckRequest, n)
	for i := range reqs {
		reqs[i] = readBy(fmt.Sprintf("agent-%d", i), nil)
		reqs[i].MinRevision = st.Revision
	}
	ds, err := c.CheckBatch(ctx, reqs)
	if err != nil {
		t.Fatal(err)
	}
	cohort := 0
	for i, d := range ds {
		in := pdp.CohortBucket(ro.ID, reqs[i].Subject.ID) < 1000
		want, wantV := api.Allow, uint64(1)
		if in {
			want, wantV = api.Deny, 2
			cohort++
		}
		if d.Decision != want || d.Version != wantV {
			t.Fatalf("%s (cohort %v): decision %s with version %d", reqs[i].Subject.ID, in, d.Decision, d.Version)
		}
	}
	if cohort < 850 || cohort > 1150 {
		t.Fatalf("cohort of %d subjects out of %d, want 10%% ± 1.5%%", cohort, n)
	}
	st, err = c.Rollout(ctx)
	if cn := st.Counters; err != nil || cn == nil || cn.Samples != n || cn.Flips != n || cn.Cohort != uint64(cohort) || cn.Errors != 0 ||
		len(cn.ByRule) != 1 || cn.ByRule[0].Rule != "reads/reads-deny" {
		t.Fatalf("counters %+v %v", st.Counters, err)
	}

	// The bundle is frozen while the rollout is active.
	if _, err := c.Publish(ctx, readsBundle("allow"), client.PublishOptions{}); !isCode(err, "rollout_active") {
		t.Fatalf("publish during a rollout: %v", err)
	} else if e := err.(*client.Error); e.Status != 409 {
		t.Fatalf("publish during a rollout: status %d", e.Status)
	}
	if _, err := c.Rollback(ctx, 1, ""); !isCode(err, "rollout_active") {
		t.Fatalf("rollback during a rollout: %v", err)
	}

	pr, err := ann.PromoteRollout(ctx, 0, "", "ann")
	if err != nil || pr.Rollout.State != api.RolloutPromoted || pr.Rollout.Promoted != 2 {
		t.Fatalf("promote: %+v %v", pr.Rollout, err)
	}
	cur, err := c.Current(ctx)
	if err != nil || cur.Version != 2 || cur.Hash != ro.CandidateHash {
		t.Fatalf("current after promote: %+v %v", cur.VersionInfo, err)
	}
	req := readBy("anyone", nil)
	req.MinRevision = pr.Revision
	if d, err := c.Check(ctx, req); err != nil || d.Version != 2 || d.Decision != api.Deny {
		t.Fatalf("after promote: %+v %v", d, err)
	}
	if _, err := c.Publish(ctx, readsBundle("allow"), client.PublishOptions{}); err != nil {
		t.Fatalf("publish after the rollout: %v", err)
	}
}
