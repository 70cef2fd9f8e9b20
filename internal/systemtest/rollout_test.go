package systemtest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
)

// readsBundle governs doc.read: allow lets everyone read, deny forbids it.
func readsBundle(effect string) []api.File {
	return []api.File{{Name: "reads.yaml", Data: fmt.Appendf(nil, `kind: Policy
name: reads
layer: platform
rules:
  - name: reads-%s
    effect: %s
    actions: ["doc.read"]
    when: "true"
`, effect, effect)}}
}

// startCanary publishes the deny bundle (version 1) then the allow bundle
// (version 2, current) and starts a rollout of version 1.
func startCanary(t *testing.T, ctx context.Context, cl *client.Client, req api.RolloutRequest) api.RolloutStatus {
	t.Helper()
	for i, eff := range []string{"deny", "allow"} {
		if r, err := cl.Publish(ctx, readsBundle(eff), client.PublishOptions{}); err != nil || r.Version != uint64(i+1) {
			t.Fatalf("publish %s: %+v %v", eff, r, err)
		}
	}
	req.Candidate = 1
	st, err := cl.StartRollout(ctx, req, "systemtest")
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func reads(n int, minRevision uint64) []api.CheckRequest {
	reqs := make([]api.CheckRequest, n)
	for i := range reqs {
		reqs[i] = api.CheckRequest{
			Subject:     api.Entity{Type: "agent", ID: fmt.Sprintf("agent-%d", i)},
			Action:      api.Action{Name: "doc.read"},
			Resource:    api.Entity{Type: "doc", ID: "d1"},
			MinRevision: minRevision,
		}
	}
	return reqs
}

// TestRolloutCohortAgrees: every node of a 3-node cluster serves the
// candidate to the same 10% of 10,000 subjects.
func TestRolloutCohortAgrees(t *testing.T) {
	c := startCluster(t, 3)
	ctx := testContext(t)
	st := startCanary(t, ctx, c.client(c.members...), api.RolloutRequest{Percent: 10})
	reqs := reads(10000, st.Revision)
	var want []int
	for _, m := range c.members {
		ds, err := c.strictClient(m).CheckBatch(ctx, reqs)
		if err != nil {
			t.Fatalf("%s: %v", m.id, err)
		}
		var cohort []int
		for i, d := range ds {
			if d.Version == 1 {
				cohort = append(cohort, i)
			}
		}
		if len(cohort) < 850 || len(cohort) > 1150 {
			t.Fatalf("%s: cohort of %d of 10000, want 10%% ± 1.5%%", m.id, len(cohort))
		}
		if want == nil {
			want = cohort
		} else if !slices.Equal(cohort, want) {
			t.Fatalf("%s serves the candidate to another cohort (%d subjects, first node %d)", m.id, len(cohort), len(want))
		}
	}
}

// TestRolloutAutoAbort: decisions on one follower flip beyond the abort
// threshold; that node aborts the rollout through the leader, and then
// every node reports it aborted and serves the current version only.
func TestRolloutAutoAbort(t *testing.T) {
	c := startCluster(t, 3)
	ctx := testContext(t)
	follower := c.others(c.leaderAmong())[0]
	flip := 0.05
	st := startCanary(t, ctx, c.client(c.members...), api.RolloutRequest{Percent: 50,
		Abort: api.RolloutAbortPolicy{MaxFlipRate: &flip, MinSamples: 50}})
	id := st.Rollout.ID

	// Every decision flips (the candidate denies what the current allows).
	ds, err := c.strictClient(follower).CheckBatch(ctx, reads(200, st.Revision))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(ds, func(d api.Decision) bool { return d.Version == 1 }) {
		t.Fatal("nobody of 200 subjects was served the candidate of a 50% rollout")
	}
	for _, m := range c.members {
		eventually(t, waitLong, m.id+" sees the rollout aborted", func() error {
			st, err := c.strictClient(m).Rollout(ctx)
			if err != nil {
				return err
			}
			if r := st.Rollout; r == nil || r.ID != id || r.State != api.RolloutAborted {
				return fmt.Errorf("rollout %+v", r)
			}
			if !strings.Contains(st.Rollout.Reason, "node "+follower.id+": flip rate") || st.Rollout.EndedBy != "auto-abort" {
				t.Fatalf("%s: abort reason %q by %q", m.id, st.Rollout.Reason, st.Rollout.EndedBy)
			}
			return nil
		})
		ds, err := c.strictClient(m).CheckBatch(ctx, reads(200, 0))
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if d.Version != 2 || d.Decision != api.Allow {
				t.Fatalf("%s after the abort: decided %s with version %d", m.id, d.Decision, d.Version)
			}
		}
	}
}
