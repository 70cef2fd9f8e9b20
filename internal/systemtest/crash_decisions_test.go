package systemtest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/audit"
	"github.com/aibos/kernel/internal/node/nodetest"
)

// TestCrashUnderDecisionLoad kills a real `aibos serve` process with
// SIGKILL while single checks, batch checks and invocations stream in, the
// audit log's gathering write path at full use. After a restart on the
// same data: every acknowledged invocation is in the log; every decision
// answered well before the kill (more than a second: the writer takes its
// queue every FsyncInterval) is in the log, batches included; and the hash
// chain verifies.
func TestCrashUnderDecisionLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs a node process")
	}
	n := startCrashNode(t, `["crm.*", "payments.refund"]`)
	bin, data, httpAddr, raftAddr, proc, ctx, reg := n.bin, n.data, n.httpAddr, n.raftAddr, n.proc, context.Background(), n.reg

	caller, _ := client.New([]string{"http://" + httpAddr}, client.Options{RetryFor: -1, Token: n.token})
	check := func(id string) api.CheckRequest {
		return api.CheckRequest{Subject: api.Entity{Type: "user", ID: id}, Action: api.Action{Name: "payments.refund"},
			Resource: api.Entity{Type: "payment", ID: "p1"}}
	}
	var mu sync.Mutex
	var acked []string            // invocation ids answered
	answered := map[string]bool{} // decision subjects answered in phase 1
	var phase atomic.Int64        // decisions answered while phase is 1 are asserted
	phase.Store(1)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	loop := func(f func(i int)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				f(i)
			}
		}()
	}
	for w := range 4 {
		loop(func(i int) { // single checks
			id := fmt.Sprintf("s-%d-%d", w, i)
			p := phase.Load()
			if d, err := caller.Check(ctx, check(id)); err == nil && d.Decision == api.Allow && p == 1 {
				mu.Lock()
				answered["user:"+id] = true
				mu.Unlock()
			}
		})
		loop(func(i int) { // batches of 50
			reqs := make([]api.CheckRequest, 50)
			for j := range reqs {
				reqs[j] = check(fmt.Sprintf("b-%d-%d-%d", w, i, j))
			}
			p := phase.Load()
			if ds, err := caller.CheckBatch(ctx, reqs); err == nil && p == 1 {
				mu.Lock()
				for j, d := range ds {
					if d.Decision == api.Allow {
						answered["user:"+reqs[j].Subject.ID] = true
					}
				}
				mu.Unlock()
			}
		})
		loop(func(i int) { // invocations, fsynced before their answer
			resp, err := caller.Invoke(ctx, reg.Token, "crm.note", api.InvokeRequest{Input: json.RawMessage(fmt.Sprintf(`{"w":%d,"i":%d}`, w, i))}, client.InvokeOptions{})
			if err == nil {
				mu.Lock()
				acked = append(acked, resp.InvocationID)
				mu.Unlock()
			}
		})
	}
	count := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return len(answered), len(acked)
	}
	deadline := time.Now().Add(nodetest.WaitLong)
	for {
		d, a := count()
		if d >= 5000 && a >= 100 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Phase 2: decisions go on but are not asserted; a second later, the
	// kill, with all three kinds of calls in flight.
	phase.Store(2)
	time.Sleep(time.Second)
	if err := proc.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	proc.Wait()
	close(stop)
	wg.Wait()
	if d, a := count(); d < 500 || a < 20 {
		t.Fatalf("only %d decisions and %d invocations answered before the crash", d, a)
	}

	proc = startServe(t, bin, data, httpAddr, raftAddr)
	req, _ := http.NewRequest(http.MethodGet, "http://"+httpAddr+"/v1/audit/export", nil)
	req.Header.Set("Authorization", "Bearer "+n.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	invocations, decisions := map[string]bool{}, map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r audit.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("export line %q: %v", sc.Text(), err)
		}
		switch r.Kind {
		case audit.KindInvocation:
			invocations[r.InvocationID] = true
		case audit.KindDecision:
			decisions[r.Subject] = true
		}
	}
	resp.Body.Close()
	missing := 0
	for _, id := range acked {
		if !invocations[id] {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d acknowledged invocations are missing from the audit log after the crash", missing, len(acked))
	}
	missing = 0
	for s := range answered {
		if !decisions[s] {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d decisions answered a second before the crash are missing from the audit log", missing, len(answered))
	}
	t.Logf("%d invocations and %d decisions answered before the crash, all in the audit log (%d decision records)", len(acked), len(answered), len(decisions))

	proc.Process.Signal(os.Interrupt)
	proc.Wait()
	rep, err := audit.Verify(filepath.Join(data, "audit"))
	if err != nil || !rep.OK() {
		t.Fatalf("verify after crash and restart: %+v %v", rep, err)
	}
}
