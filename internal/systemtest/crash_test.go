package systemtest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/audit"
	"github.com/aibos/kernel/internal/node/nodetest"
)

// TestCrashKeepsAcknowledgedInvocations runs a real `aibos serve` process,
// drives invocations at it from several goroutines, kills it with SIGKILL
// mid-load, restarts it on the same data, and checks that every invocation
// whose answer reached the agent is in the node's audit log — and that the
// log's hash chain still verifies.
func TestCrashKeepsAcknowledgedInvocations(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs a node process")
	}
	n := startCrashNode(t, `["crm.*"]`)
	bin, data, httpAddr, raftAddr, proc, ctx, reg := n.bin, n.data, n.httpAddr, n.raftAddr, n.proc, context.Background(), n.reg

	// Load: every acknowledged invocation id is kept.
	agent, _ := client.New([]string{"http://" + httpAddr}, client.Options{RetryFor: -1})
	var mu sync.Mutex
	var acked []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := agent.Invoke(ctx, reg.Token, "crm.note", api.InvokeRequest{Input: json.RawMessage(fmt.Sprintf(`{"w":%d,"i":%d}`, w, i))}, client.InvokeOptions{})
				if err != nil {
					continue // refused or cut by the crash: not acknowledged
				}
				mu.Lock()
				acked = append(acked, resp.InvocationID)
				mu.Unlock()
			}
		}()
	}
	// Kill once a good number were acknowledged, while calls are in flight.
	deadline := time.Now().Add(nodetest.WaitLong)
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 500 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := proc.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	proc.Wait()
	close(stop)
	wg.Wait()
	if len(acked) < 100 {
		t.Fatalf("only %d invocations acknowledged before the crash", len(acked))
	}

	proc = startServe(t, bin, data, httpAddr, raftAddr)
	req, _ := http.NewRequest(http.MethodGet, "http://"+httpAddr+"/v1/audit/export?kind=invocation", nil)
	req.Header.Set("Authorization", "Bearer "+n.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	logged := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r audit.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("export line %q: %v", sc.Text(), err)
		}
		logged[r.InvocationID] = true
	}
	resp.Body.Close()
	missing := 0
	for _, id := range acked {
		if !logged[id] {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged invocations are missing from the audit log after the crash", missing, len(acked))
	}
	t.Logf("%d acknowledged invocations, all in the audit log (%d records of invocations)", len(acked), len(logged))

	// Stop gracefully, then the chain verifies offline.
	proc.Process.Signal(os.Interrupt)
	proc.Wait()
	rep, err := audit.Verify(filepath.Join(data, "audit"))
	if err != nil || !rep.OK() {
		t.Fatalf("verify after crash and restart: %+v %v", rep, err)
	}
}

// crashNode is an aibos serve process with a policy allowing actions, the
// orchestra crm (one write action, a loopback backend) and agent a1.
type crashNode struct {
	bin, data, httpAddr, raftAddr string
	token                         string // the root token the node wrote at its first start
	proc                          *exec.Cmd
	reg                           api.AgentRegistration
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// aibosBinary builds cmd/aibos once per test binary.
func aibosBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "aibos-systemtest-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "aibos")
		if out, err := exec.Command("go", "build", "-o", builtBin, "github.com/aibos/kernel/cmd/aibos").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// startCrashNode starts the node; actions is the YAML list of the allow
// rule's action patterns.
func startCrashNode(t *testing.T, actions string) crashNode {
	t.Helper()
	n := crashNode{bin: aibosBinary(t), data: filepath.Join(t.TempDir(), "data")}
	var err error
	if n.httpAddr, err = freeAddr(); err != nil {
		t.Fatal(err)
	}
	if n.raftAddr, err = freeAddr(); err != nil {
		t.Fatal(err)
	}
	n.proc = startServe(t, n.bin, n.data, n.httpAddr, n.raftAddr)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(be.Close)
	root, err := os.ReadFile(filepath.Join(n.data, "root-token"))
	if err != nil {
		t.Fatal(err)
	}
	n.token = strings.TrimSpace(string(root))
	c, err := client.New([]string{"http://" + n.httpAddr}, client.Options{RetryFor: nodetest.WaitLong, Token: n.token})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	policy := "kind: Policy\nname: p\nlayer: platform\nrules:\n  - name: r\n    effect: allow\n    actions: " + actions + "\n"
	if _, err := c.Publish(ctx, []api.File{{Name: "p.yaml", Data: []byte(policy)}}, client.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutOrchestra(ctx, api.Orchestra{Name: "crm", Backend: api.Backend{Type: api.BackendHTTP, URL: be.URL},
		Actions: []api.ActionDef{{Name: "crm.note", Risk: api.RiskWrite}}}); err != nil {
		t.Fatal(err)
	}
	if n.reg, err = c.RegisterAgent(ctx, api.AgentManifest{ID: "a1", Version: "1", Capabilities: []string{"crm.*"}}); err != nil {
		t.Fatal(err)
	}
	return n
}

func startServe(t *testing.T, bin, data, httpAddr, raftAddr string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--data", data, "--http", httpAddr, "--raft", raftAddr, "--log-level", "warn")
	logs, err := os.CreateTemp(t.TempDir(), "serve-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	deadline := time.Now().Add(nodetest.WaitLong)
	for {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return cmd
			}
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(logs.Name())
			t.Fatalf("node not ready: %v\n%s", err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMain removes the binary aibosBinary built.
func TestMain(m *testing.M) {
	code := m.Run()
	if builtBin != "" {
		os.RemoveAll(filepath.Dir(builtBin))
	}
	os.Exit(code)
}
