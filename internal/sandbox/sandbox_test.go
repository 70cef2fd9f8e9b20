package sandbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/audit"
	"github.com/aibos/kernel/internal/node"
	"github.com/aibos/kernel/internal/node/nodetest"
	"github.com/aibos/kernel/internal/sandbox"
)

// The guests are built once per test binary with the plain Go toolchain
// (GOOS=wasip1 GOARCH=wasm, -buildmode=c-shared), on first use.
var (
	buildDir  string
	buildMu   sync.Mutex
	buildDone = map[string][]byte{}
)

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "sandbox-guests-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

// sharedCache is the compilation cache the package's nodes share, so that
// each guest is compiled once per run (compiling a Go guest takes seconds,
// and many times that under -race), not once per test.
func sharedCache() string { return filepath.Join(buildDir, "wasm-cache") }

// guest builds testdata/name and returns the module.
func guest(t testing.TB, name string) []byte {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if b, ok := buildDone[name]; ok {
		return b
	}
	out := filepath.Join(buildDir, name+".wasm")
	src := "./testdata/" + name
	if strings.HasPrefix(name, "example-") {
		src = "../../examples/agents/" + strings.TrimPrefix(name, "example-")
	}
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, src)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build guest %s: %v\n%s", name, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	buildDone[name] = b
	return b
}

const policy = `
kind: Policy
name: sandbox
layer: platform
rules:
  - name: audit-reads
    effect: allow
    actions: ["kernel.audit.query"]
    when: subject.properties.tenant == "acme"
`

type env struct {
	t    testing.TB
	logs *syncBuffer
	n    *node.Node
	c    *client.Client
}

func start(t *testing.T) *env { return startTB(t) }

func startB(b *testing.B) *env { return startTB(b) }

func startTB(t testing.TB) *env { return startWith(t, 2) }

func startWith(t testing.TB, maxRestarts int) *env {
	cfg := nodetest.Config(t, "n1")
	cfg.Sandbox = sandbox.Config{Backoff: 5 * time.Millisecond, MaxRestarts: maxRestarts, ParkAfter: time.Minute, Probation: 5 * time.Minute, CacheDir: sharedCache()}
	logs := &syncBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	n := nodetest.Start(t, cfg)
	c := nodetest.Client(t, n)
	if _, err := c.Publish(context.Background(), []api.File{{Name: "p.yaml", Data: []byte(policy)}}, client.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, n: n, c: c, logs: logs}
}

// register registers an agent with a sandbox profile; mode selects the
// test guest's behaviour.
func (e *env) register(id, mode string, profile map[string]any) string {
	if profile == nil {
		profile = map[string]any{}
	}
	profile["config"] = map[string]any{"mode": mode, "action": "kernel.audit.query", "n": 100}
	reg, err := e.c.RegisterAgent(context.Background(), api.AgentManifest{
		ID: id, Version: "1", Tenant: "acme", Capabilities: []string{"kernel.audit.query"}, Sandbox: profile,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return reg.Token
}

// do sends a request with the root token. While the node knows no leader
// (an election, slow under -race) nothing was done, so it asks again.
func (e *env) do(method, path string, body []byte) (int, []byte) {
	e.t.Helper()
	deadline := time.Now().Add(nodetest.WaitLong)
	for {
		st, b := e.doAs(nodetest.Token(e.n), method, path, body)
		if st != http.StatusServiceUnavailable || !bytes.Contains(b, []byte(`"no_leader"`)) || time.Now().After(deadline) {
			return st, b
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *env) deploy(id string, wasm []byte) {
	e.t.Helper()
	st, b := e.do("PUT", "/v1/agents/"+id+"/module", wasm)
	for deadline := time.Now().Add(nodetest.WaitLong); st == http.StatusServiceUnavailable &&
		bytes.Contains(b, []byte(`"write_outcome_unknown"`)) && time.Now().Before(deadline); {
		// An election under load cut the commit short; deploying the same
		// module again is harmless whichever way it went.
		st, b = e.do("PUT", "/v1/agents/"+id+"/module", wasm)
	}
	if st != 200 {
		e.t.Fatalf("deploy: %d %s", st, b)
	}
}

func (e *env) startAgent(id string) {
	e.t.Helper()
	if st, b := e.do("POST", "/v1/agents/"+id+"/start", nil); st != 200 {
		e.t.Fatalf("start: %d %s", st, b)
	}
}

func (e *env) status(id string) api.AgentRuntime {
	e.t.Helper()
	st, b := e.do("GET", "/v1/agents/"+id+"/runtime", nil)
	if st != 200 {
		e.t.Fatalf("runtime: %d %s", st, b)
	}
	var r api.AgentRuntime
	if err := json.Unmarshal(b, &r); err != nil {
		e.t.Fatal(err)
	}
	return r
}

func waitForB(b *testing.B, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatal("timed out")
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// waitUntil polls cond for up to 20 s and says whether it held.
func waitUntil(cond func() bool) bool {
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// waitFor polls cond for up to 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(nodetest.WaitLong)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *env) kv(id, key string) ([]byte, bool) { return e.n.Store.AgentKV(id, key) }

func TestDeployRefusesForbiddenImport(t *testing.T) {
	e := start(t)
	e.register("a1", "echo", nil)
	st, b := e.do("PUT", "/v1/agents/a1/module", guest(t, "forbidden"))
	if st != http.StatusUnprocessableEntity || !strings.Contains(string(b), "wasi_snapshot_preview1.path_open") || !strings.Contains(string(b), "not allowed in the sandbox") {
		t.Fatalf("forbidden import: %d %s", st, b)
	}
	if st, b := e.do("PUT", "/v1/agents/a1/module", []byte("not wasm at all")); st != http.StatusUnprocessableEntity || !strings.Contains(string(b), "not a WebAssembly binary") {
		t.Fatalf("garbage: %d %s", st, b)
	}
	if st, _ := e.do("PUT", "/v1/agents/nobody/module", guest(t, "agent")); st != http.StatusNotFound {
		t.Fatalf("unknown agent: %d", st)
	}
	if ms := e.n.Store.AgentModules("a1"); len(ms) != 0 {
		t.Fatalf("a refused module was stored: %+v", ms)
	}
	// A good module is stored by its digest; a third deploy keeps two.
	e.deploy("a1", guest(t, "agent"))
	if ms := e.n.Store.AgentModules("a1"); len(ms) != 1 || len(ms[0].SHA256) != 64 {
		t.Fatalf("modules: %+v", ms)
	}
}

func TestHostCallSameAsHTTP(t *testing.T) {
	e := start(t)
	token := e.register("a1", "echo", nil)
	e.deploy("a1", guest(t, "agent"))
	e.startAgent("a1")
	waitFor(t, "the start tick's invocation", func() bool { _, ok := e.kv("a1", "last"); return ok })
	waitFor(t, "the timer tick", func() bool { _, ok := e.kv("a1", "timer"); return ok })

	raw, _ := e.kv("a1", "last")
	var viaHost struct {
		api.InvokeResponse
		HTTPStatus int `json:"http_status"`
	}
	if err := json.Unmarshal(raw, &viaHost); err != nil {
		t.Fatal(err)
	}
	viaHTTP, err := e.c.Invoke(context.Background(), token, "kernel.audit.query", api.InvokeRequest{Input: json.RawMessage(`{"limit":1}`)}, client.InvokeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if viaHost.Decision != viaHTTP.Decision || viaHost.Version != viaHTTP.Version || viaHost.ArgsDigest != viaHTTP.ArgsDigest ||
		fmt.Sprint(viaHost.Reasons) != fmt.Sprint(viaHTTP.Reasons) || viaHost.HTTPStatus != 200 || viaHost.Decision != api.Allow {
		t.Fatalf("host call %+v\nHTTP %+v", viaHost.InvokeResponse, viaHTTP)
	}
	// The host call's audit record is marked as from the sandbox.
	recs, err := e.n.Audit.Query(audit.Filter{Agent: "a1", Kind: "invocation", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	origins := map[string]int{}
	for _, r := range recs {
		origins[r.Origin]++
	}
	if origins[sandbox.Origin] == 0 || origins[""] == 0 {
		t.Fatalf("origins of a1's invocations: %v", origins)
	}
	// A denied call: same decision and rule both ways too (tenant changes
	// nothing here, so deny by another action the agent may not use).
	// The guest never held its credential.
	var mem []byte
	waitFor(t, "the instance between ticks", func() bool { mem = e.n.Sandbox.Memory("a1"); return len(mem) > 0 })
	if bytes.Contains(mem, []byte(token)) || bytes.Contains(mem, []byte(token[len(token)-16:])) {
		t.Fatal("the agent's token is in its instance memory")
	}
	if s := e.status("a1"); s.State != api.RuntimeRunning || s.Desired != api.SandboxRun || s.Ticks < 2 || s.KVKeys < 3 {
		t.Fatalf("status %+v", s)
	}
}

func TestRunawayTickStopped(t *testing.T) {
	e := startWith(t, 10)
	const timeout = 100
	e.register("a1", "loop", map[string]any{"timeout_ms": timeout})
	e.deploy("a1", guest(t, "agent"))
	e.startAgent("a1")
	// Five runaway ticks; each is stopped and the agent restarted.
	var stops []time.Duration
	for i := range 5 {
		waitFor(t, "running", func() bool { return e.status("a1").State == api.RuntimeRunning && !e.n.Sandbox.Running("a1") })
		if st, b := e.do("POST", "/v1/agents/a1/messages", []byte(`{"x":1}`)); st != http.StatusAccepted {
			t.Fatalf("message: %d %s", st, b)
		}
		waitFor(t, "the loop", func() bool { return e.n.Sandbox.Running("a1") })
		// The node keeps serving while the guest spins.
		if st, _ := e.do("GET", "/healthz", nil); st != 200 {
			t.Fatalf("healthz during the loop: %d", st)
		}
		// The tick seen running may be the restart's start tick, queued
		// ahead of the message: wait for the one that ran to its deadline
		// (a runaway stopped early, or never, fails here too).
		waitFor(t, "the runaway tick to be stopped at its deadline", func() bool {
			return !e.n.Sandbox.Running("a1") && e.n.Sandbox.LastCall("a1") >= timeout*time.Millisecond
		})
		d := e.n.Sandbox.LastCall("a1")
		stops = append(stops, d)
		if i == 0 {
			waitFor(t, "the crash report", func() bool {
				return strings.Contains(e.status("a1").LastError, "exceeded its deadline of 100 ms") || e.status("a1").State == api.RuntimeRunning
			})
		}
	}
	// The target is the deadline + 20 ms (its p99 is measured by
	// BenchmarkRunawayStop: DESIGN.md §5 targets are not timed unit
	// tests). On a 2-core machine shared with other builds the scheduler
	// can delay a stop, so this holds the best of five to the target —
	// the guest is stopped at its deadline, not at a later check — and
	// every stop to a second.
	slices.Sort(stops)
	want := timeout*time.Millisecond + 20*time.Millisecond
	if stops[0] > want || stops[len(stops)-1] > time.Second {
		t.Errorf("runaway ticks stopped after %v; want the best ≤ %v and all ≤ 1s", stops, want)
	}
	t.Logf("runaway ticks stopped after %v", stops)
}

func TestMemoryCapHolds(t *testing.T) {
	e := start(t)
	e.register("a1", "bomb", map[string]any{"max_pages": 128})
	e.deploy("a1", guest(t, "agent"))
	e.startAgent("a1")
	waitFor(t, "the bomb to fail", func() bool { return e.status("a1").State == api.RuntimeFailed })
	s := e.status("a1")
	if !strings.Contains(s.LastError, "trapped") || !strings.Contains(s.LastError, "mallocgc") {
		t.Fatalf("last error %q", s.LastError)
	}
	if mem := e.n.Sandbox.Memory("a1"); uint64(len(mem)) > 128*65536 {
		t.Fatalf("memory %d bytes, over the cap", len(mem))
	}
}

func TestPanicCrashBackoffFailed(t *testing.T) {
	e := start(t)
	e.register("a1", "panic", nil)
	e.deploy("a1", guest(t, "agent"))
	e.startAgent("a1")
	var seen []string
	waitFor(t, "failed", func() bool {
		s := e.status("a1")
		if len(seen) == 0 || seen[len(seen)-1] != s.State {
			seen = append(seen, s.State)
		}
		return s.State == api.RuntimeFailed
	})
	s := e.status("a1")
	if s.Restarts != 3 || !strings.Contains(s.LastError, "crashed 3 times in a row") {
		t.Fatalf("failed with %d restarts: %q (states seen %v)", s.Restarts, s.LastError, seen)
	}
	// A start gives it a fresh count (and it fails again: same module).
	// The status above is the node's live view, which runs ahead of its
	// report: a start applied before the report would be undone by it.
	waitFor(t, "the failure recorded", func() bool { return e.n.Store.AgentRuntime("a1").State == api.RuntimeFailed })
	e.startAgent("a1")
	if s := e.n.Store.AgentRuntime("a1"); s.Restarts > 1 {
		t.Fatalf("start kept %d restarts", s.Restarts)
	}
}

func TestKillSwitchStopsRunningTick(t *testing.T) {
	e := start(t)
	e.register("a1", "loop", map[string]any{"timeout_ms": 30000})
	e.deploy("a1", guest(t, "agent"))
	e.startAgent("a1")
	waitFor(t, "running", func() bool { return e.status("a1").State == api.RuntimeRunning })
	e.do("POST", "/v1/agents/a1/messages", []byte(`{}`))
	waitFor(t, "the loop", func() bool { _, ok := e.kv("a1", "looping"); return ok && e.n.Sandbox.Running("a1") })
	k, err := e.c.Kill(context.Background(), api.KillRequest{Scope: api.KillAgent, Target: "a1", Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	waitFor(t, "the tick to stop", func() bool { return !e.n.Sandbox.Running("a1") })
	if d := time.Since(begin); d > time.Second {
		t.Fatalf("the kill switch stopped the tick after %v", d)
	}
	waitFor(t, "killed", func() bool { return e.status("a1").State == api.RuntimeKilled })
	if st, _ := e.do("POST", "/v1/agents/a1/messages", []byte(`{}`)); st == http.StatusAccepted {
		t.Fatal("a killed agent took a message")
	}
	// Lifted: it starts again.
	if _, err := e.c.LiftKill(context.Background(), k.ID, "", "done"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "running again", func() bool { return e.status("a1").State == api.RuntimeRunning })
}

func TestParkWakeStop(t *testing.T) {
	e := start(t)
	e.register("a1", "echo", nil)
	e.deploy("a1", guest(t, "agent"))
	e.startAgent("a1")
	waitFor(t, "the start tick", func() bool { _, ok := e.kv("a1", "last"); return ok })
	if s := e.status("a1"); s.Healthy == nil || !*s.Healthy || s.MemoryBytes == 0 {
		t.Fatalf("live status %+v", s)
	}
	waitFor(t, "parked", func() bool { e.n.Sandbox.Park("a1"); return e.status("a1").Parked })
	if s := e.status("a1"); !s.Parked || s.State != api.RuntimeRunning {
		t.Fatalf("parked status: parked %v, state %s", s.Parked, s.State)
	}
	// A message wakes it; its state survived the park.
	before := e.n.Sandbox.Ticks("a1")
	if st, _ := e.do("POST", "/v1/agents/a1/messages", []byte(`{"hello":1}`)); st != http.StatusAccepted {
		t.Fatalf("message: %d", st)
	}
	waitFor(t, "the woken tick", func() bool { return e.n.Sandbox.Ticks("a1") > before })
	if s := e.status("a1"); s.Parked || s.KVKeys < 2 {
		t.Fatalf("woken status: parked %v, %d keys", s.Parked, s.KVKeys)
	}
	if st, b := e.do("POST", "/v1/agents/a1/stop", nil); st != 200 {
		t.Fatalf("stop: %d %s", st, b)
	}
	waitFor(t, "stopped", func() bool { s := e.status("a1"); return s.Desired == api.SandboxStop && s.State == api.RuntimeStopped })
	if st, _ := e.do("POST", "/v1/agents/a1/messages", []byte(`{}`)); st != http.StatusNotFound {
		t.Fatalf("a stopped agent took a message: %d", st)
	}
}

// An agent whose run on this node is of an epoch other than its
// placement's (as between a re-placement's apply and this node's
// reconcile) has its host calls refused here, before the gateway or the
// store. The mode invokes only on a message, so the check is of that one
// call; a reconcile that heals the run first (it restarts it in the
// placement's epoch) makes the test set the stale epoch again.
func TestStaleEpochRefused(t *testing.T) {
	e := start(t)
	e.register("a1", "plain", nil)
	e.deploy("a1", guest(t, "agent"))
	e.startAgent("a1")
	waitFor(t, "the start tick", func() bool { _, ok := e.kv("a1", "started"); return ok })
	s := e.status("a1")
	if s.Epoch == 0 || s.Node != "n1" || s.Placement == nil || s.Placement.Epoch != s.Epoch {
		t.Fatalf("placement: node %q epoch %d, %+v", s.Node, s.Epoch, s.Placement)
	}
	for attempt := 0; ; attempt++ {
		if attempt == 20 {
			t.Fatal("the run was healed before every message: no refusal seen")
		}
		refusals := strings.Count(e.logs.String(), "stale_epoch")
		before, err := e.n.Audit.Query(audit.Filter{Agent: "a1", Kind: "invocation", Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		e.n.Sandbox.SetEpoch("a1", s.Epoch+7)
		if st, b := e.do("POST", "/v1/agents/a1/messages", []byte(`{}`)); st != http.StatusAccepted {
			t.Fatalf("message: %d %s", st, b)
		}
		var refused bool
		waitFor(t, "the refusal, or a healed run", func() bool {
			refused = strings.Count(e.logs.String(), "stale_epoch") > refusals
			return refused || e.n.Sandbox.Status("a1").Epoch == s.Epoch
		})
		if !refused {
			continue
		}
		after, _ := e.n.Audit.Query(audit.Filter{Agent: "a1", Kind: "invocation", Limit: 100})
		if len(after) != len(before) {
			t.Fatalf("a stale-epoch call reached the gateway: %d invocations, then %d", len(before), len(after))
		}
		return
	}
}

// syncBuffer is a log sink the test reads while the node writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 4<<20 {
		s.b.Reset()
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (e *env) registerVersion(id, version string, config map[string]any) {
	e.t.Helper()
	if _, err := e.c.RegisterAgent(context.Background(), api.AgentManifest{
		ID: id, Version: version, Tenant: "acme", Capabilities: []string{"kernel.audit.query"},
		Sandbox: map[string]any{"config": config, "timeout_ms": 10000},
	}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) upgrade(id, version string) (int, []byte) {
	return e.do("POST", "/v1/agents/"+id+"/upgrade", []byte(`{"version":"`+version+`"}`))
}

// TestHotSwap upgrades under a steady stream of message ticks, then tries
// a bad version that crashes on its first message: every message is
// handled exactly once across both swaps, and the bad version is rolled
// back automatically with an audit record saying why.
func TestHotSwap(t *testing.T) {
	e := start(t)
	e.registerVersion("a1", "1", map[string]any{"mode": "swap"})
	wasm := guest(t, "agent")
	e.deploy("a1", wasm)
	e.startAgent("a1")
	waitFor(t, "running", func() bool { return e.status("a1").State == api.RuntimeRunning })

	const n = 60
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := 1; i <= n; i++ {
			for {
				req, _ := http.NewRequest("POST", e.n.URL()+"/v1/agents/a1/messages", strings.NewReader(fmt.Sprintf(`{"id":%d}`, i)))
				req.Header.Set("Authorization", "Bearer "+nodetest.Token(e.n))
				resp, err := http.DefaultClient.Do(req)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusAccepted {
						break
					}
				}
				time.Sleep(2 * time.Millisecond)
			}
			time.Sleep(3 * time.Millisecond)
		}
	}()

	// A good version 2, registered and deployed while 1 runs: nothing
	// changes until the upgrade.
	e.registerVersion("a1", "2", map[string]any{"mode": "swap"})
	e.deploy("a1", wasm)
	if v := e.status("a1").RunVersion; v != "1" {
		t.Fatalf("running %q after registering version 2", v)
	}
	waitFor(t, "some messages on version 1", func() bool { b, _ := e.kv("a1", "seen"); return len(b) > 10 })
	if st, b := e.upgrade("a1", "2"); st != 200 {
		t.Fatalf("upgrade to 2: %d %s", st, b)
	}
	// A bad version 3: it passes init and health, then crashes on its
	// first message.
	waitFor(t, "some messages on version 2", func() bool { b, _ := e.kv("a1", "seen"); return strings.Count(string(b), ",") > 30 })
	e.registerVersion("a1", "3", map[string]any{"mode": "swap", "bad_version": "3"})
	e.deploy("a1", wasm)
	if st, b := e.upgrade("a1", "3"); st != 200 {
		t.Fatalf("upgrade to 3: %d %s", st, b)
	}
	<-sent
	// One more after the stream, so version 3 surely gets a message.
	if st, b := e.do("POST", "/v1/agents/a1/messages", []byte(fmt.Sprintf(`{"id":%d}`, n+1))); st != http.StatusAccepted {
		t.Fatalf("last message: %d %s", st, b)
	}
	if !waitUntil(func() bool { b, _ := e.kv("a1", "seen"); return strings.Count(string(b), ",") >= n+1 }) {
		b, _ := e.kv("a1", "seen")
		logs := e.logs.String()
		var kinds []string
		for _, k := range []string{"sandbox_upgrade", "sandbox_rollback", "sandbox_upgrade_refused", "sandbox_upgrade_kept"} {
			recs, _ := e.n.Audit.Query(audit.Filter{Agent: "a1", Kind: k, Limit: 10})
			for _, r := range recs {
				kinds = append(kinds, k+": "+r.Reason)
			}
		}
		var important []string
		for _, l := range strings.Split(logs, "\n") {
			if !strings.Contains(l, "stream=stdio") {
				important = append(important, l[:min(len(l), 300)])
			}
		}
		t.Fatalf("not every message handled: seen %s; status %+v\naudit %v\nlog: %s", b, e.status("a1"), kinds, strings.Join(important[max(0, len(important)-15):], "\n"))
	}
	b, _ := e.kv("a1", "seen")
	count := map[string]int{}
	for _, id := range strings.Split(strings.TrimSuffix(string(b), ","), ",") {
		count[id]++
	}
	for i := 1; i <= n+1; i++ {
		if c := count[fmt.Sprint(i)]; c != 1 {
			t.Errorf("message %d handled %d times", i, c)
		}
	}
	if len(count) != n+1 {
		t.Errorf("%d distinct messages handled, want %d", len(count), n+1)
	}
	waitFor(t, "the rollback", func() bool { return e.status("a1").RunVersion == "2" })
	recs, err := e.n.Audit.Query(audit.Filter{Agent: "a1", Kind: "sandbox_rollback", Limit: 10})
	if err != nil || len(recs) != 1 || !strings.Contains(recs[0].Reason, "rolled back from 3 to 2: the new version crashed") {
		t.Fatalf("rollback records %+v (%v)", recs, err)
	}
	if recs, _ := e.n.Audit.Query(audit.Filter{Agent: "a1", Kind: "sandbox_upgrade", Limit: 10}); len(recs) != 2 {
		t.Fatalf("%d upgrade records, want 2", len(recs))
	}
}

// doAs is do with token.
func (e *env) doAs(token, method, path string, body []byte) (int, []byte) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.n.URL()+path, bytes.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// The runtime's routes are the kernel's like any other: the system bundle
// decides who may deploy, start, stop or read an agent's run, tenants
// bound an operator, and an agent's own token is not an operator's.
func TestRuntimeRoutesAreAuthorized(t *testing.T) {
	e := start(t)
	agentTok := e.register("a1", "agent", nil)
	wasm := guest(t, "agent")
	auditor := nodetest.NewToken(t, e.n, "aud", "auditor")
	registrar := nodetest.NewToken(t, e.n, "reg", "registrar")
	for _, c := range []struct {
		name, token, method, path string
		body                      []byte
		want                      int
	}{
		{"auditor deploys", auditor, "PUT", "/v1/agents/a1/module", wasm, http.StatusForbidden},
		{"agent deploys itself", agentTok, "PUT", "/v1/agents/a1/module", wasm, http.StatusForbidden},
		{"no token", "", "POST", "/v1/agents/a1/start", nil, http.StatusUnauthorized},
		{"registrar deploys", registrar, "PUT", "/v1/agents/a1/module", wasm, http.StatusOK},
		{"auditor starts", auditor, "POST", "/v1/agents/a1/start", nil, http.StatusForbidden},
		{"registrar starts", registrar, "POST", "/v1/agents/a1/start", nil, http.StatusOK},
		{"auditor reads the run", auditor, "GET", "/v1/agents/a1/runtime", nil, http.StatusOK},
		{"agent messages itself", agentTok, "POST", "/v1/agents/a1/messages", []byte(`{}`), http.StatusForbidden},
	} {
		st, body := e.doAs(c.token, c.method, c.path, c.body)
		if st != c.want {
			t.Errorf("%s: %d %s; want %d", c.name, st, body, c.want)
		}
	}
	// An operator limited to another tenant cannot stop acme's agent.
	other, err := e.c.CreateToken(context.Background(), "ops-t2", []string{"operator"}, []string{"t2"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if st, body := e.doAs(other.Secret, "POST", "/v1/agents/a1/stop", nil); st != http.StatusForbidden {
		t.Fatalf("a t2 operator stops acme's agent: %d %s", st, body)
	}
	acme, err := e.c.CreateToken(context.Background(), "ops-acme", []string{"operator"}, []string{"acme"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if st, body := e.doAs(acme.Secret, "POST", "/v1/agents/a1/stop", nil); st != http.StatusOK {
		t.Fatalf("acme's operator stops acme's agent: %d %s", st, body)
	}
}

// A module whose compile outlasts the node's compile budget is refused at
// deploy with what to do, and nothing is stored. The node's own (empty)
// cache, not the package's shared one: a cached module compiles at once.
func TestDeployCompileBudget(t *testing.T) {
	cfg := nodetest.Config(t, "n1")
	cfg.Sandbox = sandbox.Config{CompileBudget: time.Nanosecond}
	n := nodetest.Start(t, cfg)
	e := &env{t: t, n: n, c: nodetest.Client(t, n)}
	e.register("a1", "echo", nil)
	st, b := e.do("PUT", "/v1/agents/a1/module", guest(t, "agent"))
	if st != http.StatusUnprocessableEntity || !bytes.Contains(b, []byte(`"invalid_module"`)) || !bytes.Contains(b, []byte("compile budget of 1ns")) {
		t.Fatalf("deploy over the compile budget: %d %s", st, b)
	}
	if ms := n.Store.AgentModules("a1"); len(ms) != 0 {
		t.Fatalf("a refused module was stored: %+v", ms)
	}
}
