package sandbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/audit"
	"github.com/aibos/kernel/internal/node"
	"github.com/aibos/kernel/internal/node/nodetest"
	"github.com/aibos/kernel/internal/sandbox"
)

// TestPlacementOnFollowers: three agents on three nodes are spread one per
// node; each sets a timer due in 15 s on its first start. Killing a
// follower moves its agent elsewhere within 5 s in a new epoch (the other
// two stay where they are), and the timer set before the kill fires
// after the move. A follower-run agent's invocation is decided and
// audited as over HTTP, and its kv writes replicate. A host call of the
// old placement is refused with stale_epoch before the gateway or the
// store.
func TestPlacementOnFollowers(t *testing.T) {
	e, nodes, where, leader, tokens := spread(t, "later")
	ids := []string{"a1", "a2", "a3"}
	victim, witness := onFollowers(t, where, leader)
	if _, fired := e.kv(victim, "timer"); fired {
		t.Fatal("the 15 s timer fired before the kill: the setup was too slow to test it")
	}
	dead := nodeByID(nodes, where[victim].Node)
	old := where[victim]

	// Kill the follower the victim runs on.
	killed := time.Now()
	if err := dead.Kill(); err != nil {
		t.Fatal(err)
	}
	moved := waitMoved(t, "the victim running on another node", nodes, dead, victim, old, killed)
	t.Logf("agent %s moved from %s to %s (epoch %d → %d) after its node was killed", victim, old.Node, moved.Node, old.Epoch, moved.Epoch)
	// No churn: the agents on live nodes stayed, in their epochs.
	for _, id := range ids {
		if id == victim {
			continue
		}
		if s := e.status(id); s.Node != where[id].Node || s.Epoch != where[id].Epoch {
			t.Errorf("agent %s moved from %s/%d to %s/%d though its node lives", id, where[id].Node, where[id].Epoch, s.Node, s.Epoch)
		}
	}

	// The timer set before the kill fires on the new node (its write is
	// fenced by the new epoch, so it cannot come from the dead node).
	waitFor(t, "the victim's timer after the move", func() bool {
		v, ok := e.kv(victim, "timer")
		return ok && string(v) == "late"
	})
	// Delivered, it is retired from the replicated state.
	waitFor(t, "the fired timer retired", func() bool { return leader.Store.AgentRuntime(victim).Timers == 0 })

	// The witness runs on the surviving follower: its start tick's
	// invocation was made there, decided on the leader by the same
	// pipeline as over HTTP, and its answer written to kv through Raft.
	raw, ok := e.kv(witness, "last")
	if !ok {
		t.Fatal("the follower-run agent wrote no answer")
	}
	var viaHost struct {
		api.InvokeResponse
		HTTPStatus int `json:"http_status"`
	}
	if err := json.Unmarshal(raw, &viaHost); err != nil {
		t.Fatal(err)
	}
	viaHTTP, err := e.c.Invoke(context.Background(), tokens[witness], "kernel.audit.query", api.InvokeRequest{Input: json.RawMessage(`{"limit":1}`)}, client.InvokeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if viaHost.Decision != viaHTTP.Decision || viaHost.Version != viaHTTP.Version || viaHost.ArgsDigest != viaHTTP.ArgsDigest ||
		fmt.Sprint(viaHost.Reasons) != fmt.Sprint(viaHTTP.Reasons) || viaHost.HTTPStatus != 200 || viaHost.Decision != api.Allow {
		t.Fatalf("host call from a follower %+v\nHTTP %+v", viaHost.InvokeResponse, viaHTTP)
	}
	// The invocation is in the audit log of the node that was the leader
	// when it was decided: this one, unless an election under load moved
	// the leadership during the setup (the audit logs are each node's
	// own), so every node's is searched, the killed one's as it was left.
	var fromSandbox *audit.Record
	seen := map[string][]audit.Record{}
	for _, n := range nodes {
		recs, err := n.Audit.Query(audit.Filter{Agent: witness, Kind: "invocation", Limit: 10})
		if err != nil {
			if n == dead {
				continue
			}
			t.Fatal(err)
		}
		seen[n.Config().NodeID] = recs
		for i := range recs {
			if recs[i].Origin == sandbox.Origin {
				fromSandbox = &recs[i]
			}
		}
	}
	if fromSandbox == nil || !strings.Contains(fromSandbox.Reason, "node "+where[witness].Node) || fromSandbox.Decision != string(api.Allow) {
		t.Fatalf("the audit of the follower-run agent (the leader is %s): %+v", leader.Config().NodeID, seen)
	}

	// A host call of the victim's old placement (its old node and epoch,
	// as the dead node would have sent it) is refused before the gateway
	// and the store; so is one claiming the new node in the old epoch.
	before, _ := leader.Audit.Query(audit.Filter{Agent: victim, Kind: "invocation", Limit: 100})
	kvBefore, _ := e.kv(victim, "last")
	for _, op := range []map[string]any{
		{"node": old.Node, "epoch": old.Epoch, "op": "invoke", "action": "kernel.audit.query", "body": []byte(`{"input":{"limit":1}}`)},
		{"node": moved.Node, "epoch": old.Epoch, "op": "invoke", "action": "kernel.audit.query"},
		{"node": old.Node, "epoch": old.Epoch, "op": "kv", "key": "last", "value": []byte("stale")},
		{"node": old.Node, "epoch": moved.Epoch, "op": "timer_set", "name": "x", "due": time.Now()},
	} {
		b, _ := json.Marshal(op)
		st, body := e.do("POST", "/v1/agents/"+victim+"/host", b)
		if st != http.StatusConflict || !bytes.Contains(body, []byte(`"stale_epoch"`)) {
			t.Errorf("host op %s of the old placement: %d %s", b, st, body)
		}
	}
	// Bad input changes nothing either.
	for _, b := range []string{`{`, `{"node":"n1","epoch":1,"op":"reboot"}`, `{"epoch":1,"op":"kv","key":"k"}`, `{"node":"n1","op":"kv","key":""}`} {
		if st, body := e.do("POST", "/v1/agents/"+victim+"/host", []byte(b)); st != http.StatusBadRequest {
			t.Errorf("host op %s: %d %s", b, st, body)
		}
	}
	after, _ := leader.Audit.Query(audit.Filter{Agent: victim, Kind: "invocation", Limit: 100})
	kvAfter, _ := e.kv(victim, "last")
	if len(after) != len(before) || !bytes.Equal(kvBefore, kvAfter) {
		t.Fatalf("a stale host call reached the gateway or the store: %d invocations, then %d; last %q, then %q", len(before), len(after), kvBefore, kvAfter)
	}
	// An operator without the node role may not make host calls at all.
	op, _ := json.Marshal(map[string]any{"node": moved.Node, "epoch": moved.Epoch, "op": "kv", "key": "k", "value": []byte("v")})
	reg := nodetest.NewToken(t, leader, "reg", "registrar")
	if st, body := e.doAs(reg, "POST", "/v1/agents/"+victim+"/host", op); st != http.StatusForbidden {
		t.Errorf("a registrar's host call: %d %s", st, body)
	}
}

// A host operation the leader performs for another node is cancelled when
// the leader applies a placement that ends its epoch (here: a stop), so
// an invocation admitted just before a move does not run on after it —
// as far as its backend honours the cancel. The operation is sent by
// hand, as the node would, so its connection stays open throughout.
func TestReplacementCancelsInflightHostCall(t *testing.T) {
	e := start(t)
	entered, cancelled := make(chan struct{}, 1), make(chan struct{}, 1)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // then the server sees the client go
		entered <- struct{}{}
		select {
		case <-r.Context().Done():
			cancelled <- struct{}{}
		case <-time.After(20 * time.Second):
		}
	}))
	defer be.Close()
	ctx := context.Background()
	if _, err := e.c.PutOrchestra(ctx, api.Orchestra{Name: "slow", Backend: api.Backend{Type: api.BackendHTTP, URL: be.URL},
		Actions: []api.ActionDef{{Name: "slow.wait", Risk: api.RiskRead, Timeout: api.Duration(time.Minute)}}}); err != nil {
		t.Fatal(err)
	}
	const allow = "kind: Policy\nname: slow\nlayer: platform\nrules:\n  - name: wait\n    effect: allow\n    actions: [\"slow.*\"]\n"
	if _, err := e.c.Publish(ctx, []api.File{{Name: "p.yaml", Data: []byte(policy)}, {Name: "slow.yaml", Data: []byte(allow)}}, client.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.RegisterAgent(ctx, api.AgentManifest{ID: "a1", Version: "1", Tenant: "acme", Capabilities: []string{"slow.wait"},
		Sandbox: map[string]any{"config": map[string]any{"mode": "idle"}}}); err != nil {
		t.Fatal(err)
	}
	e.deploy("a1", guest(t, "agent"))
	e.startAgent("a1")
	var s api.AgentRuntime
	waitFor(t, "running", func() bool { s = e.status("a1"); return s.State == api.RuntimeRunning && s.Placement != nil })
	op, _ := json.Marshal(map[string]any{"node": s.Placement.Node, "epoch": s.Placement.Epoch, "op": "invoke", "action": "slow.wait"})
	answered := make(chan string, 1)
	go func() {
		st, b := e.doAs(nodetest.Token(e.n), "POST", "/v1/agents/a1/host", op)
		answered <- fmt.Sprintf("%d %s", st, b)
	}()
	select {
	case <-entered:
	case <-time.After(nodetest.WaitLong):
		t.Fatal("the host operation never reached the backend")
	}
	if st, b := e.do("POST", "/v1/agents/a1/stop", nil); st != 200 {
		t.Fatalf("stop: %d %s", st, b)
	}
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the in-flight host operation was not cancelled when its epoch ended")
	}
	t.Logf("the host operation answered %s", <-answered)
}

// spread starts three nodes and three agents in mode, and waits until one
// runs on each node (each agent in mode "later" with its timer armed).
// The env's node is the leader.
func spread(t *testing.T, mode string) (e *env, nodes []*node.Node, where map[string]api.AgentRuntime, leader *node.Node, tokens map[string]string) {
	t.Helper()
	wasm := guest(t, "agent")
	warmCache(t, wasm)
	nodes = cluster3(t)
	c := nodetest.Client(t, nodes...)
	if _, err := c.Publish(context.Background(), []api.File{{Name: "p.yaml", Data: []byte(policy)}}, client.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	e = &env{t: t, n: nodes[0], c: c}
	ids := []string{"a1", "a2", "a3"}
	tokens = map[string]string{}
	for _, id := range ids {
		tokens[id] = e.register(id, mode, nil)
		e.deploy(id, wasm)
		e.startAgent(id)
	}
	where = map[string]api.AgentRuntime{} // agent → its status, from its node
	waitFor(t, "one agent running on each node", func() bool {
		clear(where)
		on := map[string]bool{}
		for _, id := range ids {
			s := e.status(id) // answered by the agent's node: its live view
			if s.State != api.RuntimeRunning || s.Placement == nil || s.Placement.Node != s.Node {
				return false
			}
			if _, armed := e.kv(id, "armed"); mode == "later" && !armed {
				return false
			}
			where[id], on[s.Node] = s, true
		}
		return len(on) == 3
	})
	for _, n := range nodes {
		if n.Store.IsLeader() {
			leader = n
		}
	}
	if leader == nil {
		t.Skip("no leader after the setup (an election under load); nothing to check")
	}
	e.n = leader
	return e, nodes, where, leader, tokens
}

// onFollowers names the agents that run on the two followers.
func onFollowers(t *testing.T, where map[string]api.AgentRuntime, leader *node.Node) (string, string) {
	t.Helper()
	var on []string
	for _, id := range []string{"a1", "a2", "a3"} {
		if where[id].Node != leader.Config().NodeID {
			on = append(on, id)
		}
	}
	if len(on) != 2 {
		t.Skipf("the leadership moved during the setup (%v); nothing to check", where)
	}
	return on[0], on[1]
}

// waitMoved waits until agent runs on a node other than left, in an
// epoch after old's, and holds the time since start to 5 s (30 s under
// -race).
func waitMoved(t *testing.T, what string, nodes []*node.Node, left *node.Node, agent string, old api.AgentRuntime, start time.Time) api.AgentRuntime {
	t.Helper()
	var moved api.AgentRuntime
	waitFor(t, what, func() bool {
		for _, n := range nodes {
			if n == left {
				continue
			}
			if s := n.Sandbox.Status(agent); s.State == api.RuntimeRunning && s.Node == n.Config().NodeID && s.Epoch > old.Epoch {
				moved = s
				return true
			}
		}
		return false
	})
	d := time.Since(start)
	t.Logf("%s after %v", what, d)
	limit := 5 * time.Second
	if raceEnabled {
		limit = 30 * time.Second
	}
	if d > limit {
		t.Errorf("the agent moved after %v; want ≤ %v", d, limit)
	}
	return moved
}

func nodeByID(nodes []*node.Node, id string) *node.Node {
	for _, n := range nodes {
		if n.Config().NodeID == id {
			return n
		}
	}
	return nil
}

// TestNodeLeavesMovesAgent: a node removed from the cluster loses its
// agent to another within 5 s, though it still runs; what it still tries
// to do for the agent is refused (its epoch is stale).
func TestNodeLeavesMovesAgent(t *testing.T) {
	e, nodes, where, leader, _ := spread(t, "echo")
	victim, _ := onFollowers(t, where, leader)
	gone := nodeByID(nodes, where[victim].Node)
	old := where[victim]
	removed := time.Now()
	body, _ := json.Marshal(map[string]string{"id": old.Node})
	if st, b := e.do("POST", "/v1/cluster/remove", body); st != http.StatusOK {
		t.Fatalf("remove %s: %d %s", old.Node, st, b)
	}
	moved := waitMoved(t, "the agent on a remaining node", nodes, gone, victim, old, removed)
	t.Logf("agent %s moved from the removed %s to %s (epoch %d → %d)", victim, old.Node, moved.Node, old.Epoch, moved.Epoch)
	// The removed node, cut off from the log, may still run its copy: any
	// message it takes ends in host calls the leader refuses.
	fromGone := func() int {
		recs, err := leader.Audit.Query(audit.Filter{Agent: victim, Kind: "invocation", Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, r := range recs {
			if strings.Contains(r.Reason, "node "+old.Node) {
				n++
			}
		}
		return n
	}
	before := fromGone()
	for range 3 {
		if gone.Sandbox.Send(victim, []byte(`{}`)) != nil {
			break // it noticed, or its copy is stopped
		}
		time.Sleep(300 * time.Millisecond)
	}
	if after := fromGone(); after != before {
		t.Errorf("%d invocations from the removed node were performed after the move", after-before)
	}
}

// An upgrade asked of the leader is forwarded to the follower the agent
// runs on, which instantiates the new version beside the old and pins it
// through the leader (a host operation of its epoch).
func TestUpgradeOnFollower(t *testing.T) {
	e, nodes, where, leader, _ := spread(t, "echo")
	id, _ := onFollowers(t, where, leader)
	host := nodeByID(nodes, where[id].Node)
	ctx := context.Background()
	if _, err := e.c.RegisterAgent(ctx, api.AgentManifest{ID: id, Version: "2", Tenant: "acme", Capabilities: []string{"kernel.audit.query"},
		Sandbox: map[string]any{"config": map[string]any{"mode": "echo", "action": "kernel.audit.query"}}}); err != nil {
		t.Fatal(err)
	}
	e.deploy(id, guest(t, "agent"))
	st, b := e.do("POST", "/v1/agents/"+id+"/upgrade", []byte(`{"version":"2"}`))
	if st != http.StatusOK {
		t.Fatalf("upgrade through the leader: %d %s", st, b)
	}
	waitFor(t, "version 2 pinned on every replica", func() bool {
		for _, n := range nodes {
			if n.Store.AgentRuntime(id).RunVersion != "2" {
				return false
			}
		}
		return true
	})
	if recs, _ := host.Audit.Query(audit.Filter{Agent: id, Kind: "sandbox_upgrade", Limit: 10}); len(recs) != 1 {
		t.Fatalf("the agent's node recorded %d upgrades; want 1", len(recs))
	}
	if s := e.status(id); s.Node != host.Config().NodeID || s.Epoch != where[id].Epoch {
		t.Fatalf("the upgrade moved the agent: %+v", s)
	}
}
