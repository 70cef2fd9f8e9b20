package server_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/node/nodetest"
	"github.com/aibos/kernel/internal/pdp"
)

// readsBundle governs doc.read: effect allow lets everyone read, deny
// forbids it (the rule is named after the effect, so flips are traceable).
func readsBundle(effect string) []api.File {
	return file("reads.yaml", fmt.Sprintf(`kind: Policy
name: reads
layer: platform
rules:
  - name: reads-%s
    effect: %s
    actions: ["doc.read"]
    when: "true"
`, effect, effect))
}

func readBy(id string, props map[string]any) api.CheckRequest {
	return api.CheckRequest{
		Subject:  api.Entity{Type: "agent", ID: id, Properties: props},
		Action:   api.Action{Name: "doc.read"},
		Resource: api.Entity{Type: "doc", ID: "d1"},
	}
}

// publishCandidate publishes the deny bundle (version 1, the candidate)
// and then the allow bundle (version 2, current).
func publishCandidate(t *testing.T, c *client.Client) {
	t.Helper()
	ctx := context.Background()
	for i, eff := range []string{"deny", "allow"} {
		if r, err := c.Publish(ctx, readsBundle(eff), client.PublishOptions{}); err != nil || r.Version != uint64(i+1) {
			t.Fatalf("publish %s: %+v %v", eff, r, err)
		}
	}
}

// TestRolloutPercentCohort: a 10% cohort of 10,000 subjects is within a
// tight binomial bound, stable across repeated decisions, exactly the
// subjects of the documented hash, served the candidate; every decision
// is shadow-compared and the flips are counted per rule and effect.
func TestRolloutPercentCohort(t *testing.T) {
	nd, c := startNode(t)
	ann := nodetest.ClientAs(t, "ann", []string{"admin"}, nd)
	ctx := context.Background()
	publishCandidate(t, c)
	st, err := ann.StartRollout(ctx, api.RolloutRequest{Candidate: 1, Percent: 10}, "ann")
	if err != nil {
		t.Fatal(err)
	}
	ro := st.Rollout
	if ro.State != api.RolloutActive || ro.Candidate != 1 || ro.Base != 2 || ro.StartedBy != "ann" || ro.Abort.MinSamples != 100 {
		t.Fatalf("started %+v", ro)
	}
	const n = 10000
	reqs := make([]api.CheckRequest, n)
	for i := range reqs {
		reqs[i] = readBy(fmt.Sprintf("agent-%d", i), nil)
		reqs[i].MinRevision = st.Revision
	}
	var first []bool
	for round := 0; round < 2; round++ {
		ds, err := c.CheckBatch(ctx, reqs)
		if err != nil {
			t.Fatal(err)
		}
		in := make([]bool, n)
		cohort := 0
		for i, d := range ds {
			in[i] = d.Version == 1
			if in[i] {
				cohort++
			}
			if want := map[bool]api.Effect{true: api.Deny, false: api.Allow}[in[i]]; d.Decision != want {
				t.Fatalf("%s: decision %s with version %d", reqs[i].Subject.ID, d.Decision, d.Version)
			}
			if hashIn := pdp.CohortBucket(ro.ID, reqs[i].Subject.ID) < 1000; hashIn != in[i] {
				t.Fatalf("%s: in cohort %v, the hash says %v", reqs[i].Subject.ID, in[i], hashIn)
			}
			if first != nil && first[i] != in[i] {
				t.Fatalf("%s moved in or out of the cohort", reqs[i].Subject.ID)
			}
		}
		// Binomial(10000, 0.1): sd 30; ±150 is 5 sd.
		if cohort < 850 || cohort > 1150 {
			t.Fatalf("cohort of %d subjects out of %d, want 10%% ± 1.5%%", cohort, n)
		}
		first = in
	}
	st, err = c.Rollout(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cn := st.Counters
	if cn == nil || cn.Node != "n1" || cn.Samples != 2*n || cn.Flips != 2*n || cn.Errors != 0 || cn.Cohort < 2*850 || len(cn.ByRule) != 1 {
		t.Fatalf("counters %+v", cn)
	}
	// Every flip, cohort member or not, is named by the candidate's rule
	// and the action: it denied where the current bundle allowed.
	if f := cn.ByRule[0]; f.Rule != "reads/reads-deny" || f.Action != "doc.read" || f.From != api.Allow || f.To != api.Deny || f.Count != 2*n {
		t.Fatalf("flips %+v", cn.ByRule)
	}
}

// TestRolloutSelectorAbortPromote: a selector cohort (stored properties win
// over the caller's), the API's refusals, a manual abort, and a promote
// that makes the candidate current as a new version.
func TestRolloutSelectorAbortPromote(t *testing.T) {
	n, c := startNode(t)
	ann := nodetest.ClientAs(t, "ann", []string{"admin"}, n)
	bob := nodetest.ClientAs(t, "bob", []string{"admin"}, n)
	ctx := context.Background()
	publishCandidate(t, c)
	if _, err := c.PutEntities(ctx, []api.Entity{
		{Type: "agent", ID: "stored-beta", Properties: map[string]any{"tier": "beta"}},
		{Type: "agent", ID: "stored-ga", Properties: map[string]any{"tier": "ga"}},
	}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, body string
		status     int
		code       string
	}{
		{"candidate is current", `{"candidate":2,"percent":5}`, 400, "bad_request"},
		{"no such candidate", `{"candidate":9,"percent":5}`, 404, "not_found"},
		{"both cohorts", `{"candidate":1,"percent":5,"selector":{"a":"b"}}`, 400, "bad_request"},
		{"bad rate", `{"candidate":1,"abort":{"max_flip_rate":1.5}}`, 400, "bad_request"},
		{"no candidate", `{"percent":5}`, 400, "bad_request"},
	} {
		resp, body := do(t, n.URL(), "POST", "/v1/rollouts", tc.body)
		if resp.StatusCode != tc.status || !strings.Contains(body, `"code":"`+tc.code+`"`) {
			t.Errorf("%s: %d %s", tc.name, resp.StatusCode, body)
		}
	}
	if _, err := c.AbortRollout(ctx, 0, "", ""); !isCode(err, "not_found") {
		t.Fatalf("abort without a rollout: %v", err)
	}

	st, err := c.StartRollout(ctx, api.RolloutRequest{Candidate: 1, Selector: map[string]any{"tier": "beta"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartRollout(ctx, api.RolloutRequest{Candidate: 1}, ""); !isCode(err, "rollout_active") {
		t.Fatalf("second start: %v", err)
	}
	for _, tc := range []struct {
		req    api.CheckRequest
		cohort bool
	}{
		{readBy("stored-beta", nil), true},
		{readBy("sent-beta", map[string]any{"tier": "beta"}), true},
		{readBy("sent-list", map[string]any{"tier": []any{"x", "beta"}}), true},
		{readBy("sent-ga", map[string]any{"tier": "ga"}), false},
		{readBy("stored-ga", map[string]any{"tier": "beta"}), false}, // the stored value wins
		{readBy("none", nil), false},
	} {
		tc.req.MinRevision = st.Revision
		d, err := c.Check(ctx, tc.req)
		if err != nil {
			t.Fatal(err)
		}
		if got := d.Version == 1 && d.Decision == api.Deny; got != tc.cohort {
			t.Errorf("%s: decided %s with version %d, cohort %v", tc.req.Subject.ID, d.Decision, d.Version, tc.cohort)
		}
	}

	ab, err := bob.AbortRollout(ctx, st.Rollout.ID, "looked wrong", "bob")
	if err != nil || ab.Rollout.State != api.RolloutAborted || ab.Rollout.Reason != "looked wrong" || ab.Rollout.EndedBy != "bob" {
		t.Fatalf("abort: %+v %v", ab.Rollout, err)
	}
	if d, _ := c.Check(ctx, readBy("stored-beta", nil)); d.Version != 2 {
		t.Fatalf("after abort a cohort member decided with version %d", d.Version)
	}
	if st, _ := c.Rollout(ctx); st.Counters != nil || st.Rollout.State != api.RolloutAborted {
		t.Fatalf("status after abort %+v", st)
	}

	st, err = c.StartRollout(ctx, api.RolloutRequest{Candidate: 1, Percent: 0}, "")
	if err != nil {
		t.Fatal(err)
	}
	pr, err := ann.PromoteRollout(ctx, 0, "looks good", "ann")
	if err != nil || pr.Rollout.State != api.RolloutPromoted || pr.Rollout.Promoted != 3 {
		t.Fatalf("promote: %+v %v", pr.Rollout, err)
	}
	v3, err := c.Version(ctx, 3)
	v1, _ := c.Version(ctx, 1)
	if err != nil || v3.Hash != v1.Hash || v3.Author != "ann" || !strings.Contains(v3.Message, "promoted canary rollout") {
		t.Fatalf("promoted version %+v %v", v3.VersionInfo, err)
	}
	req := readBy("anyone", nil)
	req.MinRevision = pr.Revision
	if d, err := c.Check(ctx, req); err != nil || d.Version != 3 || d.Decision != api.Deny {
		t.Fatalf("after promote: %+v %v", d, err)
	}
	if resp, body := do(t, n.URL(), "POST", "/v1/rollouts/promote", ""); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("promote without a rollout: %d %s", resp.StatusCode, body)
	}
}

// TestRolloutWatchEvents: rollout changes go on the watch stream after the
// versions, with their state.
func TestRolloutWatchEvents(t *testing.T) {
	_, c := startNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	publishCandidate(t, c)
	evs, err := c.Watch(ctx, 0, client.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.StartRollout(ctx, api.RolloutRequest{Candidate: 1, Percent: 5}, "")
	if err != nil {
		t.Fatal(err)
	}
	next := func(want string) api.WatchEvent {
		t.Helper()
		for {
			select {
			case ev, ok := <-evs:
				if !ok {
					t.Fatal("watch ended")
				}
				if ev.Type == api.WatchHeartbeat {
					continue
				}
				if ev.Type != want {
					t.Fatalf("event %+v, want type %s", ev, want)
				}
				return ev
			case <-ctx.Done():
				t.Fatalf("no %s event", want)
			}
		}
	}
	next(api.WatchBundle)
	next(api.WatchBundle)
	if ev := next(api.WatchRollout); ev.Rollout == nil || ev.Rollout.ID != st.Rollout.ID || ev.Rollout.State != api.RolloutActive || ev.Version != 2 {
		t.Fatalf("start event %+v", ev)
	}
	pr, err := c.PromoteRollout(ctx, 0, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(api.WatchBundle); ev.Version != pr.Rollout.Promoted {
		t.Fatalf("promote's version event %+v", ev)
	}
	if ev := next(api.WatchRollout); ev.Rollout.State != api.RolloutPromoted || ev.Revision != pr.Revision || ev.Version != 3 {
		t.Fatalf("promote event %+v", ev)
	}
}
