package systemtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
)

// TestRestartServesNoOlderState restarts a node while clients keep asking
// it for decisions, bundle versions and invocations, and checks every
// answer: a node that replays its log after a start must not answer from
// the state it is replaying. Each answer is the current state or 503
// not_ready (with Retry-After) — never an older bundle version (the
// history holds a canary of an old version and a rollback, so an old
// state decides differently), never a short version list, never 401 for
// a registered agent's token, never an invocation by an agent whose kill
// switch was set before the restart. /readyz and the gate agree: after
// /readyz said ready, nothing is refused as not ready.
func TestRestartServesNoOlderState(t *testing.T) {
	for _, tc := range []struct {
		name string
		// nodes in the cluster; the restarted one is a follower if > 1.
		nodes int
		// snapshot on the restarted node midway through the history, so
		// it restarts from a snapshot plus the log after it.
		snapshot bool
		// crash instead of a graceful stop.
		crash bool
		// publish while the node is down (cluster only): the node must
		// answer with that version, which it never held before.
		publishWhileDown bool
	}{
		{name: "single node", nodes: 1},
		{name: "single node from a snapshot, crashed", nodes: 1, snapshot: true, crash: true},
		{name: "cluster member", nodes: 3, crash: true, publishWhileDown: true},
		{name: "cluster member from a snapshot", nodes: 3, snapshot: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startCluster(t, tc.nodes)
			ctx := testContext(t)
			target := c.members[0]
			if tc.nodes > 1 {
				target = c.others(c.leaderAmong())[0]
			}
			h := newRestartHistory(t, ctx, c, target, tc.snapshot)
			p := &restartProbe{t: t, url: target.URL(), h: h, hc: &http.Client{Timeout: 20 * time.Second}, op: c.members[0].token()}
			p.current.Store(h.current(ctx, c))
			pctx, stop := context.WithCancel(ctx)
			var wg sync.WaitGroup
			for _, f := range []func(context.Context){p.checks, p.versions, p.invokeWorker, p.invokeStopped} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					f(pctx)
				}()
			}
			eventually(t, waitLong, "answers before the restart", p.served)

			p.epoch.Add(1)
			if tc.crash {
				target.kill()
			} else if err := target.stop(); err != nil {
				t.Fatal(err)
			}
			if tc.publishWhileDown {
				h.publish(ctx, c.client(c.others(target)...), "while down")
				p.current.Store(h.current(ctx, c))
			}
			p.restarted.Store(true)
			p.reset()
			if err := target.start(); err != nil {
				t.Fatalf("restart %s: %v", target.id, err)
			}
			p.epoch.Add(1)
			eventually(t, waitLong, "answers after the restart", p.served)
			stop()
			wg.Wait()
			p.report()
		})
	}
}

// restartBundle lets readers query and everyone ping; tag makes each
// publish distinct.
func restartBundle(tag string) []api.File {
	return []api.File{{Name: "restart.yaml", Data: fmt.Appendf(nil, `kind: Policy
name: restart
layer: platform
description: %s
rules:
  - name: readers-query
    effect: allow
    actions: ["data.query"]
    when: has(subject.properties.roles) && "reader" in subject.properties.roles
  - name: ops
    effect: allow
    actions: ["ops.*"]
`, tag)}}
}

// denyQueries is a bundle under which the probe's query is denied.
func denyQueries() []api.File {
	return []api.File{{Name: "deny.yaml", Data: []byte(`kind: Policy
name: deny
layer: platform
rules:
  - name: no-queries
    effect: deny
    actions: ["data.query"]
`)}}
}

// restartHistory is the state written before the restart.
type restartHistory struct {
	t      *testing.T
	tokens [2]string // worker, stopped
}

// settle runs a write until it is acknowledged. A write whose outcome is
// unknown (leadership moved while it committed: likely on a loaded
// machine) is sent again; every write here may apply twice without
// changing what the test expects, and an error with one of the ok codes
// says the first attempt did apply.
func settle(t *testing.T, what string, write func() error, ok ...string) {
	t.Helper()
	eventually(t, waitLong, what, func() error {
		err := write()
		if err == nil || slices.ContainsFunc(ok, func(code string) bool { return isCode(err, code) }) {
			return nil
		}
		if writeOutcome(err) == outcomeNotApplied && !retryLater(err) {
			t.Fatalf("%s refused: %v", what, err)
		}
		return err
	})
}

// newRestartHistory writes: version 1 denies queries, version 2 allows
// them, a canary of version 1 to half the subjects (aborted), a rollback
// to 1 (version 3 denies), the subject's roles, an orchestra, two agents
// and a kill switch on one of them, then versions 4..7 (allow).
// snapshot: target takes a snapshot after version 5.
func newRestartHistory(t *testing.T, ctx context.Context, c *cluster, target *member, snapshot bool) *restartHistory {
	t.Helper()
	h := &restartHistory{t: t}
	cl := c.client(c.members...)
	settle(t, "publish 1", func() error { _, err := cl.Publish(ctx, denyQueries(), client.PublishOptions{}); return err })
	h.publish(ctx, cl, "v2")
	settle(t, "start a canary of version 1", func() error {
		_, err := cl.StartRollout(ctx, api.RolloutRequest{Candidate: 1, Percent: 50}, "systemtest")
		return err
	}, "rollout_active")
	settle(t, "abort the canary", func() error { _, err := cl.AbortRollout(ctx, 0, "enough", "systemtest"); return err }, "not_found")
	settle(t, "rollback", func() error { _, err := cl.Rollback(ctx, 1, "back to denying"); return err })

	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(backend.Close)
	settle(t, "put orchestra", func() error {
		_, err := cl.PutOrchestra(ctx, api.Orchestra{Name: "ops", Backend: api.Backend{Type: api.BackendHTTP, URL: backend.URL},
			Actions: []api.ActionDef{{Name: "ops.ping", Risk: api.RiskRead}}})
		return err
	})
	for i, id := range []string{"worker", "stopped"} {
		settle(t, "register "+id, func() error {
			reg, err := cl.RegisterAgent(ctx, api.AgentManifest{ID: id, Name: id, Version: "1.0.0", Tenant: "acme", Capabilities: []string{"ops.*"}})
			h.tokens[i] = reg.Token
			return err
		})
		if h.tokens[i] == "" { // registered by an attempt whose answer was lost
			settle(t, "new credential for "+id, func() error {
				cr, err := cl.RotateAgentCredential(ctx, id)
				h.tokens[i] = cr.Token
				return err
			})
		}
	}
	settle(t, "kill switch", func() error {
		_, err := cl.Kill(ctx, api.KillRequest{Scope: api.KillAgent, Target: "stopped", Reason: "stopped before the restart"})
		return err
	})
	putEntities(t, ctx, cl, api.Entity{Type: "agent", ID: "a1", Properties: map[string]any{"roles": []any{"reader"}}})

	for v := 4; v <= 7; v++ {
		h.publish(ctx, cl, fmt.Sprint("v", v))
		if snapshot && v == 5 {
			c.waitConverged(0)
			if err := target.node().Store.Snapshot(); err != nil {
				t.Fatal(err)
			}
		}
	}
	c.waitConverged(0)
	return h
}

func (h *restartHistory) publish(ctx context.Context, cl *client.Client, tag string) {
	h.t.Helper()
	settle(h.t, "publish "+tag, func() error { _, err := cl.Publish(ctx, restartBundle(tag), client.PublishOptions{}); return err })
}

// current is the current version, as the leader has it.
func (h *restartHistory) current(ctx context.Context, c *cluster) uint64 {
	h.t.Helper()
	rev := c.waitConverged(0)
	vs, err := versionsAt(ctx, c.leaderAmong(), rev)
	if err != nil || len(vs) == 0 {
		h.t.Fatalf("versions: %v %v", vs, err)
	}
	return vs[len(vs)-1].Version
}

// restartProbe sends requests to one node without pause and judges every
// answer. A request that gets no answer (the node is down) is not judged.
type restartProbe struct {
	t         *testing.T
	url       string
	h         *restartHistory
	hc        *http.Client
	op        string // an operator token for checks and reads (the root token)
	restarted atomic.Bool
	current   atomic.Uint64 // the current version
	// epoch is odd from just before the node stops until its restart
	// has returned.
	epoch atomic.Uint64

	mu       sync.Mutex
	ok       [4]int   // judged good since the last reset, per probe
	notReady int      // 503 not_ready answers
	bad      []string // guarded by mu
}

const (
	probeCheck = iota
	probeVersions
	probeWorker
	probeStopped
)

// reset starts counting good answers anew (after the restart).
func (p *restartProbe) reset() {
	p.mu.Lock()
	p.ok = [4]int{}
	p.mu.Unlock()
}

// served reports nil once every probe has had a few good answers.
func (p *restartProbe) served() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, n := range p.ok {
		if n < 5 {
			return fmt.Errorf("probe %d: %d good answers", i, n)
		}
	}
	return nil
}

func (p *restartProbe) good(probe int) {
	p.mu.Lock()
	p.ok[probe]++
	p.mu.Unlock()
}

func (p *restartProbe) fail(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.bad) < 1000 {
		when := "before the restart"
		if p.restarted.Load() {
			when = "after the restart"
		}
		p.bad = append(p.bad, when+": "+fmt.Sprintf(format, args...))
	}
}

func (p *restartProbe) report() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.t.Logf("%d answers were 503 not_ready", p.notReady)
	if len(p.bad) > 0 {
		show := p.bad[:min(len(p.bad), 20)]
		p.t.Errorf("%d answers from an older state (or otherwise wrong), the first %d:\n  %s", len(p.bad), len(show), strings.Join(show, "\n  "))
	}
}

// answer is one HTTP answer, its error code if it is an error.
type answer struct {
	status     int
	code, msg  string
	retryAfter string
	body       []byte
}

func (p *restartProbe) call(ctx context.Context, method, path, token string, body any) (answer, bool) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequestWithContext(ctx, method, p.url+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond) // down: do not spin
		}
		return answer{}, false
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, false // cut mid-answer by a crash
	}
	a := answer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), body: data}
	if a.status != http.StatusOK {
		var eb api.ErrorBody
		_ = json.Unmarshal(data, &eb)
		a.code, a.msg = eb.Error.Code, eb.Error.Message
	}
	return a, true
}

// notReadyAnswer judges a 503 not_ready answer; it reports whether a was one.
func (p *restartProbe) notReadyAnswer(what string, a answer, readySeen bool) bool {
	if a.status != http.StatusServiceUnavailable || a.code != "not_ready" {
		return false
	}
	switch {
	case a.retryAfter == "":
		p.fail("%s: 503 not_ready without Retry-After", what)
	case readySeen:
		p.fail("%s: 503 not_ready after /readyz said ready", what)
	}
	p.mu.Lock()
	p.notReady++
	p.mu.Unlock()
	return true
}

// checks asks /readyz, then for a decision that only the current state
// allows (versions 1 and 3 deny it, version 0 has no bundle, and without
// the subject's roles it is denied). After /readyz said ready, the same
// run of the node must not refuse the check as not ready.
func (p *restartProbe) checks(ctx context.Context) {
	for ctx.Err() == nil {
		// /readyz and the check agree if both reached the same run of
		// the node: the epoch did not move and the node was up.
		epoch := p.epoch.Load()
		r, ok := p.call(ctx, http.MethodGet, "/readyz", "", nil)
		if !ok {
			continue
		}
		a, ok := p.call(ctx, http.MethodPost, "/v1/check", p.op, queryBy("a1", 0))
		if !ok {
			continue
		}
		sameRun := epoch%2 == 0 && p.epoch.Load() == epoch
		if p.notReadyAnswer("check", a, sameRun && r.status == http.StatusOK) {
			continue
		}
		var d api.Decision
		if a.status != http.StatusOK || json.Unmarshal(a.body, &d) != nil {
			p.fail("check: %d %s %s", a.status, a.code, a.msg)
			continue
		}
		if cur := p.current.Load(); d.Version != cur || d.Decision != api.Allow {
			msg := ""
			if len(d.Reasons) > 0 {
				msg = d.Reasons[0].Message
			}
			p.fail("check: %s with version %d (%s), want allow with version %d", d.Decision, d.Version, msg, cur)
			continue
		}
		p.good(probeCheck)
	}
}

// versions lists the bundle versions: all of them, or not_ready.
func (p *restartProbe) versions(ctx context.Context) {
	for ctx.Err() == nil {
		a, ok := p.call(ctx, http.MethodGet, "/v1/policies/versions", p.op, nil)
		if !ok || p.notReadyAnswer("versions", a, false) {
			continue
		}
		var vl struct {
			Versions []api.VersionInfo `json:"versions"`
		}
		if a.status != http.StatusOK || json.Unmarshal(a.body, &vl) != nil {
			p.fail("versions: %d %s %s", a.status, a.code, a.msg)
			continue
		}
		if n, cur := len(vl.Versions), p.current.Load(); uint64(n) != cur || vl.Versions[n-1].Version != cur {
			p.fail("versions: %d listed, want %d", n, cur)
			continue
		}
		p.good(probeVersions)
	}
}

// invokeWorker invokes as the agent without a kill switch: it runs, or
// not_ready; never 401.
func (p *restartProbe) invokeWorker(ctx context.Context) {
	for ctx.Err() == nil {
		a, ok := p.call(ctx, http.MethodPost, "/v1/actions/ops.ping/invoke", p.h.tokens[0], api.InvokeRequest{Input: json.RawMessage(`{}`)})
		if !ok || p.notReadyAnswer("invoke as worker", a, false) {
			continue
		}
		if a.status != http.StatusOK {
			p.fail("invoke as worker: %d %s %s", a.status, a.code, a.msg)
			continue
		}
		p.good(probeWorker)
	}
}

// invokeStopped invokes as the agent whose kill switch was set before the
// restart: refused by it, or not_ready; it never runs.
func (p *restartProbe) invokeStopped(ctx context.Context) {
	for ctx.Err() == nil {
		a, ok := p.call(ctx, http.MethodPost, "/v1/actions/ops.ping/invoke", p.h.tokens[1], api.InvokeRequest{Input: json.RawMessage(`{}`)})
		if !ok || p.notReadyAnswer("invoke as stopped", a, false) {
			continue
		}
		if a.status != http.StatusForbidden || a.code != "kill_switch" {
			p.fail("invoke as stopped: %d %s %s, want 403 kill_switch", a.status, a.code, a.msg)
			continue
		}
		p.good(probeStopped)
	}
}
