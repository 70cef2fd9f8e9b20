package systemtest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
)

// TestLinearizable records the operations of concurrent clients against a
// 3-node cluster while a chaos goroutine crashes and restarts the leader
// and isolates and heals nodes, then checks the history with porcupine.
//
// Operations and what makes them comparable:
//
//   - put: PutEntities of one entity kv/<key> with a value no other put
//     uses; a success returns its revision.
//   - get: GET /v1/entities/kv/<key> from a random node.
//   - publish: PUT /v1/policies; a success returns the new version.
//   - version: POST /v1/check on a random node; the decision says which
//     bundle version the node decided with.
//
// Nodes answer reads from their own replica, and min_revision only makes a
// read wait for that revision. So every read carries min_revision = the
// highest revision acknowledged to any client before the read started (a
// shared maximum, raised before a write's return is recorded): a read that
// starts after a write completed must see it or something newer. That alone
// is not linearizable across nodes: a read may see a write that is applied
// on its node but not yet acknowledged, and a later read on a node that
// lags would then see the older value. So after each read the client asks
// the same node (same incarnation) for its applied revision and raises the
// maximum to it before recording the read's return: later reads must see at
// least what this one saw. A read whose follow-up fails is dropped (a read
// changes nothing, so dropping it only weakens the check).
//
// Outcomes: a write that certainly failed (4xx, refused connection, or a
// no_leader answer that says the write was not proposed) is dropped; one
// whose outcome is unknown (timeout, cut connection, write_outcome_unknown,
// unavailable, internal, or a no_leader answer after a failed forward) is
// kept with a return time of +∞, porcupine's way to say it may take effect
// at any point after its call, or never visibly.
//
// The model is a register per entity key plus a counter of bundle versions
// (a publish moves it from v to v+1; a check reports it), partitioned by
// key. After the run every fault is healed, every node must converge, the
// final reads of every key on every node join the history, and no
// acknowledged write may be lost.
func TestLinearizable(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos run of about 15 s")
	}
	const (
		runFor  = 10 * time.Second
		workers = 4
		keys    = 4
	)
	c := startCluster(t, 3, withMinRevisionWait(2*time.Second))
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	h := &history{start: time.Now(), uncertain: map[string]bool{}}

	ctx, cancel := context.WithTimeout(context.Background(), runFor)
	defer cancel()
	var wg sync.WaitGroup
	chaosErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		chaosErr <- c.chaos(ctx, t, rand.New(rand.NewPCG(seed, 0)))
	}()
	clients := make([]*client.Client, len(c.members))
	for i, m := range c.members {
		clients[i] = c.strictClient(m)
	}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lw := &linWorker{c: c, h: h, clients: clients, id: w, keys: keys,
				rng: rand.New(rand.NewPCG(seed, uint64(w+1)))}
			lw.run(ctx)
		}()
	}
	wg.Wait()
	if err := <-chaosErr; err != nil {
		t.Fatalf("chaos: %v", err)
	}

	// Heal everything; every node must converge on every acknowledged write.
	c.net.HealAll()
	for _, m := range c.members {
		if m.node() == nil {
			if err := m.start(); err != nil {
				t.Fatalf("restart %s: %v", m.id, err)
			}
		}
	}
	// The final reads follow the workers' protocol, so they are part of the
	// history like any other. Entries still pending in some logs may commit
	// while they run (a late election commits them); then the values are
	// not all of one revision and the round is read again.
	reader := &linWorker{c: c, h: h, clients: clients, id: workers}
	var final uint64
	finalValues := make(map[string]string)
	for round := 1; ; round++ {
		c.leaderAmong()
		final = c.waitConverged(h.maxRev.Load())
		fctx, fcancel := context.WithTimeout(context.Background(), waitLong)
		clear(finalValues)
		var differ []string
		for i, m := range c.members {
			for k := range keys {
				key := fmt.Sprintf("k%d", k)
				var v string
				eventually(t, waitLong, "final read of "+key+" on "+m.id, func() error {
					var ok bool
					if v, ok = reader.get(fctx, h.newClient(), i, key); !ok {
						return errors.New("read failed")
					}
					return nil
				})
				if prev, seen := finalValues[key]; seen && prev != v {
					differ = append(differ, fmt.Sprintf("%s = %q on %s, %q before", key, v, m.id, prev))
				}
				finalValues[key] = v
			}
			eventually(t, waitLong, "final version read on "+m.id, func() error {
				if !reader.version(fctx, h.newClient(), i) {
					return errors.New("read failed")
				}
				return nil
			})
		}
		fcancel()
		var moved []string
		for _, m := range c.members {
			if a := m.applied(); a != final {
				moved = append(moved, fmt.Sprintf("%s at %d", m.id, a))
			}
		}
		if len(moved) == 0 {
			if len(differ) > 0 {
				t.Errorf("every node at revision %d, yet they differ: %s", final, strings.Join(differ, "; "))
			}
			break
		}
		if round == 5 {
			t.Fatalf("the revision keeps moving after the faults were healed (from %d: %s)", final, strings.Join(moved, ", "))
		}
		t.Logf("revision moved from %d during the final reads (%s); reading again", final, strings.Join(moved, ", "))
	}
	t.Logf("history: %s", h.stats())

	model := linModel()
	checkStart := time.Now()
	res, info := porcupine.CheckOperationsVerbose(model, h.ops, 30*time.Second)
	t.Logf("porcupine: %s in %s", res, time.Since(checkStart).Round(time.Millisecond))
	if res != porcupine.Ok {
		t.Errorf("history is not linearizable (porcupine: %s)", res)
		if dir, err := os.MkdirTemp("", "aibos-linearizability-"); err == nil {
			path := filepath.Join(dir, "history.html")
			if err := porcupine.VisualizePath(model, info, path); err == nil {
				t.Logf("visualization: %s", path)
			}
		}
	}

	// No acknowledged write is lost: every node has applied it, and each
	// key holds its last acknowledged value, or a value written later by a
	// write whose outcome is unknown.
	for _, m := range c.members {
		if a := m.applied(); a < h.maxAcked.Load() {
			t.Errorf("%s applied revision %d, below acknowledged revision %d", m.id, a, h.maxAcked.Load())
		}
	}
	last := map[string]ackedWrite{}
	for _, w := range h.acked {
		if w.rev > last[w.key].rev {
			last[w.key] = w
		}
	}
	for k := range keys {
		key := fmt.Sprintf("k%d", k)
		v, lw := finalValues[key], last[key]
		switch {
		case v == lw.value && v != "":
		case h.uncertain[v]:
		case v == "" && lw.rev == 0:
		default:
			t.Errorf("%s = %q at the end; the last acknowledged write was %q at revision %d", key, v, lw.value, lw.rev)
		}
	}
	// Versions are consecutive and the same on every node.
	vctx, vcancel := context.WithTimeout(context.Background(), waitLong)
	defer vcancel()
	var want string
	for _, m := range c.members {
		vs, err := versionsAt(vctx, m, final)
		if err != nil {
			t.Fatalf("%s: versions: %v", m.id, err)
		}
		for i, v := range vs {
			if v.Version != uint64(i+1) {
				t.Errorf("%s: version %d at position %d", m.id, v.Version, i+1)
			}
		}
		if got := fmt.Sprint(vs); want == "" {
			want = got
		} else if got != want {
			t.Errorf("%s: versions %s, another node %s", m.id, got, want)
		}
	}
}

// chaos alternates, until ctx ends: crash the leader and restart it;
// isolate the leader and heal; isolate a random node and heal. A crashed
// node is restarted even if ctx ended meanwhile.
func (c *cluster) chaos(ctx context.Context, t *testing.T, rng *rand.Rand) error {
	pause := func(d time.Duration) {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
	leader := func() *member {
		for _, m := range c.members {
			if m.isLeader() && !c.net.isIsolated(m.id) {
				return m
			}
		}
		return nil
	}
	for step := 0; ctx.Err() == nil; {
		var victim *member
		if step%3 == 2 {
			victim = c.members[rng.IntN(len(c.members))]
		} else if victim = leader(); victim == nil {
			pause(50 * time.Millisecond)
			continue
		}
		switch step % 3 {
		case 0:
			t.Logf("chaos: crash leader %s", victim.id)
			victim.kill()
			pause(800 * time.Millisecond)
			if err := victim.start(); err != nil {
				return fmt.Errorf("restart %s: %w", victim.id, err)
			}
			t.Logf("chaos: %s restarted", victim.id)
		default:
			t.Logf("chaos: isolate %s (leader: %v)", victim.id, victim.isLeader())
			c.net.Isolate(victim.id)
			pause(1200 * time.Millisecond)
			c.net.Heal(victim.id)
			t.Logf("chaos: %s healed", victim.id)
		}
		pause(800 * time.Millisecond)
		step++
	}
	return nil
}

// linWorker is one client goroutine of TestLinearizable.
type linWorker struct {
	c       *cluster
	h       *history
	clients []*client.Client // one per member, same order
	id      int
	keys    int
	rng     *rand.Rand
	seq     int
}

// opTimeout bounds one operation: longer than the server's write timeout,
// so most writes end with the server's answer rather than the client's.
const opTimeout = 15 * time.Second

func (w *linWorker) run(ctx context.Context) {
	cid := w.h.newClient()
	for ctx.Err() == nil {
		i := w.rng.IntN(len(w.clients))
		key := fmt.Sprintf("k%d", w.rng.IntN(w.keys))
		octx, cancel := context.WithTimeout(context.Background(), opTimeout)
		var ok, unknown bool
		switch p := w.rng.IntN(100); {
		case p < 45:
			ok, unknown = w.put(octx, cid, i, key)
		case p < 88:
			_, ok = w.get(octx, cid, i, key)
		case p < 95:
			ok = w.version(octx, cid, i)
		default:
			ok, unknown = w.publish(octx, cid, i)
		}
		backoff := !ok
		cancel()
		if backoff {
			// Like any client: do not hammer a cluster that just said no.
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(50+w.rng.IntN(50)) * time.Millisecond):
			}
		}
		if unknown {
			// The pending operation stays open forever; later operations of
			// this goroutine belong to a new client in the history.
			cid = w.h.newClient()
		}
	}
}

func (w *linWorker) put(ctx context.Context, cid, i int, key string) (ok, pending bool) {
	w.seq++
	val := fmt.Sprintf("w%d-%d", w.id, w.seq)
	in := linInput{Kind: opPut, Key: key, Value: val}
	call := w.h.now()
	rev, err := w.clients[i].PutEntities(ctx, []api.Entity{{Type: "kv", ID: key, Properties: map[string]any{"v": val}}})
	switch writeOutcome(err) {
	case outcomeOK:
		w.h.acknowledged(rev)
		w.h.add(porcupine.Operation{ClientId: cid, Input: in, Call: call, Output: linOutput{}, Return: w.h.now()})
		w.h.ack(ackedWrite{key: key, value: val, rev: rev})
		return true, false
	case outcomeNotApplied:
		w.h.count("put_not_applied")
	case outcomeUnknown:
		w.h.add(porcupine.Operation{ClientId: cid, Input: in, Call: call, Output: linOutput{Unknown: true}, Return: math.MaxInt64})
		w.h.markUncertain(val, err)
		return false, true
	}
	return false, false
}

func (w *linWorker) publish(ctx context.Context, cid, i int) (ok, pending bool) {
	w.seq++
	tag := fmt.Sprintf("w%d-%d", w.id, w.seq)
	in := linInput{Kind: opPublish, Key: versionsKey, Value: tag}
	call := w.h.now()
	resp, err := w.clients[i].Publish(ctx, bundle(tag), client.PublishOptions{Message: tag})
	switch writeOutcome(err) {
	case outcomeOK:
		w.h.acknowledged(resp.Revision)
		w.h.add(porcupine.Operation{ClientId: cid, Input: in, Call: call, Output: linOutput{Version: resp.Version}, Return: w.h.now()})
		w.h.count("publish_ok")
		return true, false
	case outcomeNotApplied:
		w.h.count("publish_not_applied")
	case outcomeUnknown:
		w.h.add(porcupine.Operation{ClientId: cid, Input: in, Call: call, Output: linOutput{Unknown: true}, Return: math.MaxInt64})
		w.h.markUncertain(tag, err)
		return false, true
	}
	return false, false
}

func (w *linWorker) get(ctx context.Context, cid, i int, key string) (string, bool) {
	m := w.c.members[i]
	inc := m.incarnation.Load()
	minRev := w.h.maxRev.Load()
	call := w.h.now()
	e, err := w.clients[i].Entity(ctx, "kv", key, minRev)
	if err != nil && !isCode(err, "not_found") {
		w.h.count("get_failed")
		return "", false
	}
	v, _ := e.Properties["v"].(string)
	if !w.sawAtMost(ctx, m, inc) {
		return "", false
	}
	w.h.add(porcupine.Operation{ClientId: cid, Input: linInput{Kind: opGet, Key: key}, Call: call, Output: linOutput{Value: v}, Return: w.h.now()})
	w.h.count("get_ok")
	return v, true
}

func (w *linWorker) version(ctx context.Context, cid, i int) bool {
	m := w.c.members[i]
	inc := m.incarnation.Load()
	minRev := w.h.maxRev.Load()
	call := w.h.now()
	d, err := w.clients[i].Check(ctx, queryBy("a1", minRev))
	if err != nil {
		w.h.count("version_failed")
		return false
	}
	if !w.sawAtMost(ctx, m, inc) {
		return false
	}
	w.h.add(porcupine.Operation{ClientId: cid, Input: linInput{Kind: opVersion, Key: versionsKey}, Call: call, Output: linOutput{Version: d.Version}, Return: w.h.now()})
	w.h.count("version_ok")
	return true
}

// sawAtMost raises the shared maximum to the revision node m has applied
// now, an upper bound of what the read just answered by m saw, so that
// reads starting later must see at least as much. It reports false (drop
// the read) if that bound cannot be had from the same run of the node.
func (w *linWorker) sawAtMost(ctx context.Context, m *member, inc uint64) bool {
	a, err := appliedAt(ctx, m)
	if err != nil || m.incarnation.Load() != inc {
		w.h.count("read_dropped")
		return false
	}
	w.h.observe(a)
	return true
}

type outcome int

const (
	outcomeOK         outcome = iota
	outcomeNotApplied         // certainly not applied: left out of the history
	outcomeUnknown            // may or may not have been applied
)

// writeOutcome classifies a write's error.
func writeOutcome(err error) outcome {
	if err == nil {
		return outcomeOK
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return outcomeNotApplied // nothing was sent
	}
	var ae *client.Error
	if errors.As(err, &ae) {
		switch {
		case ae.Status >= 400 && ae.Status < 500:
			return outcomeNotApplied
		case ae.Code == "no_leader" && certainNoLeader(ae.Message):
			return outcomeNotApplied
		case ae.Code == "not_ready":
			return outcomeNotApplied // refused before anything was done
		}
	}
	return outcomeUnknown
}

// certainNoLeader tells the no_leader answers that mean "not proposed"
// from the one that means "forwarding to the leader failed", after which
// the leader may well have applied the write. The server gives both the
// same code (see README.md), so only the message tells them
// apart; an unrecognised message counts as unknown, which can only weaken
// the check, never fail it wrongly.
func certainNoLeader(msg string) bool {
	switch {
	case strings.HasPrefix(msg, "no leader is known to this node"),
		strings.HasPrefix(msg, "this node lost leadership during the write"):
		return true
	case strings.HasPrefix(msg, "could not reach the leader"):
		// The forward could not even connect: nothing was sent.
		return strings.Contains(msg, "connect: connection refused")
	}
	return false
}

// history is what the clients of TestLinearizable observed.
type history struct {
	start    time.Time
	maxRev   atomic.Uint64 // highest revision acknowledged or seen by a read
	maxAcked atomic.Uint64 // highest revision acknowledged to a write
	nextID   atomic.Int64

	mu        sync.Mutex
	ops       []porcupine.Operation // guarded by mu
	acked     []ackedWrite          // guarded by mu
	uncertain map[string]bool       // values of writes with unknown outcome; guarded by mu
	counts    map[string]int        // guarded by mu
	firstErr  map[string]string     // an example error per kind of unknown outcome; guarded by mu
}

type ackedWrite struct {
	key, value string
	rev        uint64
}

// now is the history's clock: monotonic nanoseconds since the start.
func (h *history) now() int64 { return int64(time.Since(h.start)) }

func (h *history) newClient() int { return int(h.nextID.Add(1) - 1) }

// observe raises maxRev to rev.
func (h *history) observe(rev uint64) { raise(&h.maxRev, rev) }

// acknowledged raises maxRev and maxAcked to the revision of a write.
func (h *history) acknowledged(rev uint64) {
	raise(&h.maxAcked, rev)
	raise(&h.maxRev, rev)
}

func raise(a *atomic.Uint64, v uint64) {
	for {
		cur := a.Load()
		if v <= cur || a.CompareAndSwap(cur, v) {
			return
		}
	}
}

func (h *history) add(op porcupine.Operation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, op)
}

func (h *history) ack(w ackedWrite) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.acked = append(h.acked, w)
	h.countLocked("put_ok")
}

func (h *history) markUncertain(value string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.uncertain[value] = true
	kind := "transport"
	var ae *client.Error
	if errors.As(err, &ae) {
		kind = ae.Code
	}
	h.countLocked("unknown_" + kind)
	if h.firstErr == nil {
		h.firstErr = map[string]string{}
	}
	if _, ok := h.firstErr[kind]; !ok {
		h.firstErr[kind] = err.Error()
	}
}

func (h *history) count(what string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.countLocked(what)
}

func (h *history) countLocked(what string) {
	if h.counts == nil {
		h.counts = map[string]int{}
	}
	h.counts[what]++
}

func (h *history) stats() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return fmt.Sprintf("%d operations recorded, max revision %d; counts %v; unknown outcomes, e.g. %v",
		len(h.ops), h.maxRev.Load(), h.counts, h.firstErr)
}

// Operations of the model.
type opKind int

const (
	opPut opKind = iota
	opGet
	opPublish
	opVersion
)

// versionsKey is the partition of publishes and version reads.
const versionsKey = "#versions"

type linInput struct {
	Kind  opKind
	Key   string
	Value string // the value put, or the publish's tag
}

type linOutput struct {
	Value   string // what a get read ("" for no entity)
	Version uint64 // what a publish created or a version read saw
	Unknown bool   // the write's outcome is unknown
}

// linState is the state of one partition: a register for an entity key,
// the current bundle version for versionsKey.
type linState struct {
	value   string
	version uint64
}

func linModel() porcupine.Model {
	return porcupine.Model{
		Partition: func(ops []porcupine.Operation) [][]porcupine.Operation {
			byKey := map[string][]porcupine.Operation{}
			var order []string
			for _, op := range ops {
				k := op.Input.(linInput).Key
				if _, ok := byKey[k]; !ok {
					order = append(order, k)
				}
				byKey[k] = append(byKey[k], op)
			}
			out := make([][]porcupine.Operation, 0, len(order))
			for _, k := range order {
				out = append(out, byKey[k])
			}
			return out
		},
		Init: func() any { return linState{} },
		Step: func(state, input, output any) (bool, any) {
			st, in, out := state.(linState), input.(linInput), output.(linOutput)
			switch in.Kind {
			case opPut:
				return true, linState{value: in.Value}
			case opGet:
				return out.Value == st.value, st
			case opPublish:
				if out.Unknown {
					return true, linState{version: st.version + 1}
				}
				return out.Version == st.version+1, linState{version: out.Version}
			case opVersion:
				return out.Version == st.version, st
			}
			return false, st
		},
		DescribeOperation: func(input, output any) string {
			in, out := input.(linInput), output.(linOutput)
			switch in.Kind {
			case opPut:
				if out.Unknown {
					return fmt.Sprintf("put(%s, %s) -> ?", in.Key, in.Value)
				}
				return fmt.Sprintf("put(%s, %s)", in.Key, in.Value)
			case opGet:
				return fmt.Sprintf("get(%s) -> %q", in.Key, out.Value)
			case opPublish:
				if out.Unknown {
					return fmt.Sprintf("publish(%s) -> ?", in.Value)
				}
				return fmt.Sprintf("publish(%s) -> v%d", in.Value, out.Version)
			default:
				return fmt.Sprintf("version() -> v%d", out.Version)
			}
		},
		DescribeState: func(state any) string {
			st := state.(linState)
			if st.value != "" {
				return fmt.Sprintf("%q", st.value)
			}
			return fmt.Sprintf("%q / v%d", st.value, st.version)
		},
	}
}
