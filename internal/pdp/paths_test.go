package pdp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/engine"
	"github.com/aibos/kernel/internal/node"
	"github.com/aibos/kernel/internal/node/nodetest"
	"github.com/aibos/kernel/internal/policy"
)

// corpusNow is the time of corpus cases that do not fix their own (as in
// the engine's corpus test).
var corpusNow = time.Date(2026, 3, 4, 10, 30, 0, 0, time.UTC)

// clock is a settable clock for a node and an evaluator.
type clock struct{ t atomic.Int64 }

func (c *clock) Now() time.Time         { return time.Unix(0, c.t.Load()).UTC() }
func (c *clock) set(t time.Time)        { c.t.Store(t.UnixNano()) }
func newClock(t time.Time) *clock       { c := new(clock); c.set(t); return c }
func (l *lookup) set(ents []api.Entity) { l.m.Store(engine.NewMapEntities(ents)) }

// lookup is a swappable entity lookup for a local evaluator.
type lookup struct{ m atomic.Value }

func (l *lookup) Entity(typ, id string) (map[string]any, bool) {
	m, _ := l.m.Load().(engine.MapEntities)
	return m.Entity(typ, id)
}

// outcome is what every path must agree on: the decision, its reasons and
// its obligations, in the form the API answers them.
func outcome(d api.Decision) string {
	o, _ := json.Marshal(d.Obligations)
	return fmt.Sprintf("%s | %s | %s | errors %d", d.Decision, engine.DescribeReasons(d.Reasons), o, len(d.Errors))
}

// TestCorpusOnEveryPath runs the decision corpus (testdata/decisions)
// through every implementation of deciding: the engine, HTTP /v1/check,
// AuthZEN's evaluation, the SDK's LocalEvaluator and the agent gateway's
// invoke — and again during an active canary rollout, whose candidate
// decides the same. Each must answer as the engine does. An invocation's
// subject is the registered agent, so the gateway runs the cases whose
// subject is an agent without caller-given properties, and the engine is
// asked the request the gateway builds (the agent's registry properties,
// the context with the call's input and action).
func TestCorpusOnEveryPath(t *testing.T) {
	files, err := filepath.Glob("../../testdata/decisions/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus in testdata/decisions (%v)", err)
	}
	invoked := 0
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { invoked += corpusOnEveryPath(t, f) })
	}
	// 29 cases of the corpus have an agent subject the gateway can run,
	// each run before and during the canary.
	if invoked < 58 {
		t.Errorf("only %d cases ran through the gateway's invoke", invoked)
	}
}

// corpusOnEveryPath runs one corpus file and returns how many of its
// cases went through the gateway's invoke.
func corpusOnEveryPath(t *testing.T, path string) int {
	ctx := context.Background()
	clk := newClock(corpusNow)
	cfg := nodetest.Config(t, "n1")
	cfg.Now = clk.Now
	n := nodetest.Start(t, cfg)
	c := nodetest.Client(t, n)
	files, err := policy.ReadPath(path)
	if err != nil {
		t.Fatal(err)
	}
	src, err := policy.Parse(files)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := engine.Load(files, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, files, client.PublishOptions{Message: filepath.Base(path)}); err != nil {
		t.Fatal(err)
	}
	ents := new(lookup)
	ents.set(nil)
	local, err := client.NewLocalEvaluator(ctx, c, client.LocalOptions{Entities: ents, Now: clk.Now, MaxStale: 100 * 365 * 24 * time.Hour}) // the cases move the clock by years
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()

	gw := newInvoker(t, c, src)

	run := func(phase string) {
		for _, ts := range src.Tests {
			ents.set(ts.Entities)
			var rev uint64
			if len(ts.Entities) > 0 {
				if rev, err = c.PutEntities(ctx, ts.Entities); err != nil {
					t.Fatal(err)
				}
			}
			for _, tc := range ts.Cases {
				at := corpusNow
				if !tc.Now.IsZero() {
					at = tc.Now
				}
				clk.set(at)
				req := tc.Request
				want := outcome(ref.Decide(&req, engine.NewMapEntities(ts.Entities), at))
				req.MinRevision = rev
				got, err := c.Check(ctx, req)
				if err != nil {
					t.Fatalf("%s: case %q: /v1/check: %v", phase, tc.Name, err)
				}
				if o := outcome(got); o != want {
					t.Errorf("%s: case %q: /v1/check answers\n\t%s\nthe engine\n\t%s", phase, tc.Name, o, want)
				}
				if o := outcome(local.Decide(&tc.Request)); o != want {
					t.Errorf("%s: case %q: the local evaluator answers\n\t%s\nthe engine\n\t%s", phase, tc.Name, o, want)
				}
				if az := authzen(t, n, tc.Request); az != (got.Decision == api.Allow) {
					t.Errorf("%s: case %q: AuthZEN answers %v for a %s", phase, tc.Name, az, got.Decision)
				}
				gw.check(t, phase, tc, ref, n, at)
			}
			for _, e := range ts.Entities {
				if _, err := c.DeleteEntity(ctx, e.Type, e.ID); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	run("current")

	// A canary whose candidate is the same bundle (a comment apart, so it
	// is another version): the cohort and the rest must decide the same.
	cand := append([]api.File(nil), files...)
	cand[0].Data = append(bytes.Clone(cand[0].Data), "\n# canary\n"...)
	st, err := c.StartRollout(ctx, api.RolloutRequest{Files: cand, Percent: 50}, "")
	if err != nil {
		t.Fatal(err)
	}
	waitLocalRollout(t, local, st.Rollout.ID)
	run("canary")
	return gw.ran
}

func waitLocalRollout(t *testing.T, local *client.LocalEvaluator, id uint64) {
	t.Helper()
	for deadline := time.Now().Add(nodetest.WaitLong); ; {
		if got, ok := local.Rollout(); ok && got == id {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the local evaluator never served rollout %d", id)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// authzen decides req with POST /access/v1/evaluation.
func authzen(t *testing.T, n *node.Node, req api.CheckRequest) bool {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"subject": req.Subject, "action": req.Action, "resource": req.Resource, "context": req.Context})
	hr, _ := http.NewRequest("POST", n.URL()+"/access/v1/evaluation", bytes.NewReader(body))
	hr.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(nodetest.Authorize(hr, n))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Decision *bool `json:"decision"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 || out.Decision == nil {
		t.Fatalf("AuthZEN evaluation: %d %v", resp.StatusCode, err)
	}
	return *out.Decision
}

// TestLocalEvaluatorFollowsACanary: during a canary the SDK's local
// evaluator serves the candidate to the same subjects the node does — by
// percent (the stable hash of rollout and subject) and by selector
// (stored properties winning) — and the current version to the rest; once
// the rollout ends, the current version decides for all again.
func TestLocalEvaluatorFollowsACanary(t *testing.T) {
	ctx := context.Background()
	n := nodetest.Start(t, nodetest.Config(t, "n1"))
	c := nodetest.Client(t, n)
	bundle := func(effect string) []api.File {
		return []api.File{{Name: "p.yaml", Data: fmt.Appendf(nil, `kind: Policy
name: docs
layer: platform
rules:
  - name: read
    effect: %s
    actions: ["doc.read"]
`, effect)}}
	}
	if _, err := c.Publish(ctx, bundle("allow"), client.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	// Stored teams: the selector matches the stored property, not the
	// caller's.
	var stored []api.Entity
	for i := range 40 {
		team := "red"
		if i%3 == 0 {
			team = "blue"
		}
		stored = append(stored, api.Entity{Type: "user", ID: fmt.Sprintf("u%d", i), Properties: map[string]any{"team": team}})
	}
	rev, err := c.PutEntities(ctx, stored)
	if err != nil {
		t.Fatal(err)
	}
	ents := new(lookup)
	ents.set(stored)
	local, err := client.NewLocalEvaluator(ctx, c, client.LocalOptions{Entities: ents})
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()

	compare := func(phase string, wantBoth bool) {
		t.Helper()
		seen := map[api.Effect]int{}
		for i := range 200 {
			req := api.CheckRequest{Subject: api.Entity{Type: "user", ID: fmt.Sprintf("u%d", i), Properties: map[string]any{"team": "blue"}},
				Action: api.Action{Name: "doc.read"}, Resource: api.Entity{Type: "doc", ID: "d"}, MinRevision: rev}
			got, err := c.Check(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if l := local.Decide(&req); l.Decision != got.Decision {
				t.Fatalf("%s: subject %s: the node answers %s, the local evaluator %s", phase, req.Subject.ID, got.Decision, l.Decision)
			}
			seen[got.Decision]++
		}
		if both := seen[api.Allow] > 0 && seen[api.Deny] > 0; both != wantBoth {
			t.Fatalf("%s: decisions %v", phase, seen)
		}
	}
	for _, start := range []api.RolloutRequest{
		{Files: bundle("deny"), Percent: 50},
		{Files: bundle("deny"), Selector: map[string]any{"team": "blue"}},
	} {
		st, err := c.StartRollout(ctx, start, "")
		if err != nil {
			t.Fatal(err)
		}
		waitLocalRollout(t, local, st.Rollout.ID)
		compare(fmt.Sprintf("rollout %d", st.Rollout.ID), true)
		ab, err := c.AbortRollout(ctx, st.Rollout.ID, "done", "")
		if err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(nodetest.WaitLong); ; {
			if _, ok := local.Rollout(); !ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the local evaluator still serves the aborted rollout")
			}
			time.Sleep(5 * time.Millisecond)
		}
		rev = ab.Revision
		compare("after the abort", false)
	}
}

// invoker runs corpus cases through the agent gateway: every agent of
// the cases registered (capabilities "*", the tenant its test entity
// gives, if any), every action in an orchestra named for its first
// segment, with an HTTP backend on loopback that answers {"ok": true}.
type invoker struct {
	c      *client.Client
	tokens map[string]string
	ran    int
}

func newInvoker(t *testing.T, c *client.Client, src *policy.Bundle) *invoker {
	t.Helper()
	ctx := context.Background()
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"ok":true}`)
	}))
	t.Cleanup(be.Close)
	iv := &invoker{c: c, tokens: map[string]string{}}
	orchestras := map[string][]api.ActionDef{}
	seen := map[string]bool{}
	for _, ts := range src.Tests {
		tenants := map[string]string{}
		for _, e := range ts.Entities {
			if tn, ok := e.Properties["tenant"].(string); ok && e.Type == api.EntityTypeAgent {
				tenants[e.ID] = tn
			}
		}
		for _, tc := range ts.Cases {
			if !invocable(tc) {
				continue
			}
			name := tc.Request.Action.Name
			if orch, _, _ := strings.Cut(name, "."); !seen[name] {
				seen[name] = true
				orchestras[orch] = append(orchestras[orch], api.ActionDef{Name: name, Risk: api.RiskRead})
			}
			id := tc.Request.Subject.ID
			if _, ok := iv.tokens[id]; ok {
				continue
			}
			tenant := tenants[id]
			if tenant == "" {
				tenant = "corpus"
			}
			reg, err := c.RegisterAgent(ctx, api.AgentManifest{ID: id, Name: id, Version: "1.0.0", Tenant: tenant, Capabilities: []string{"*"}})
			if err != nil {
				t.Fatalf("register agent %q: %v", id, err)
			}
			iv.tokens[id] = reg.Token
		}
	}
	for name, defs := range orchestras {
		o := api.Orchestra{Name: name, Backend: api.Backend{Type: api.BackendHTTP, URL: be.URL}, Actions: defs}
		if _, err := c.PutOrchestra(ctx, o); err != nil {
			t.Fatalf("orchestra %s: %v", name, err)
		}
	}
	return iv
}

// invocable: the gateway can run the case as it is written.
func invocable(tc *policy.TestCase) bool {
	r := tc.Request
	return r.Subject.Type == api.EntityTypeAgent && len(r.Subject.Properties) == 0 && strings.Contains(r.Action.Name, ".") &&
		!strings.HasPrefix(r.Action.Name, api.BuiltinOrchestra+".")
}

// check invokes the case's action as its agent and compares the answer
// with the engine's decision of the request the gateway builds.
func (iv *invoker) check(t *testing.T, phase string, tc *policy.TestCase, ref *engine.Bundle, n *node.Node, at time.Time) {
	t.Helper()
	if !invocable(tc) {
		return
	}
	iv.ran++
	r := tc.Request
	orch, _, _ := strings.Cut(r.Action.Name, ".")
	ctxMap := map[string]any{}
	for k, v := range r.Context {
		ctxMap[k] = v
	}
	res := r.Resource
	body := api.InvokeRequest{Input: json.RawMessage(`{}`), Resource: &res, Context: r.Context}
	ctxMap["input"] = map[string]any{}
	ctxMap["action"] = map[string]any{"risk": api.RiskRead, "cost": 0.0, "orchestra": orch}
	gwReq := api.CheckRequest{Subject: api.Entity{Type: api.EntityTypeAgent, ID: r.Subject.ID}, Action: r.Action, Resource: res, Context: ctxMap}
	want := ref.Decide(&gwReq, n.Store, at)
	resp, err := iv.c.Invoke(context.Background(), iv.tokens[r.Subject.ID], r.Action.Name, body, client.InvokeOptions{})
	got := resp.Decision
	var apiErr *client.Error
	switch {
	case err == nil:
		if o, w := fmt.Sprintf("%s | %s", got, engine.DescribeReasons(resp.Reasons)), fmt.Sprintf("%s | %s", want.Decision, engine.DescribeReasons(want.Reasons)); o != w {
			t.Errorf("%s: case %q: invoke answers\n\t%s\nthe engine\n\t%s", phase, tc.Name, o, w)
		}
		return
	case errors.As(err, &apiErr) && apiErr.Code == api.CodeDenied:
		got = api.Deny
	case errors.As(err, &apiErr) && (apiErr.Code == api.CodeRateLimited || apiErr.Code == api.CodeBudget):
		got = api.Allow // allowed, then metered
	default:
		t.Fatalf("%s: case %q: invoke %s: %v", phase, tc.Name, r.Action.Name, err)
	}
	if got != want.Decision {
		t.Errorf("%s: case %q: invoke decided %s, the engine %s (%s)", phase, tc.Name, got, want.Decision, engine.DescribeReasons(want.Reasons))
	}
}
