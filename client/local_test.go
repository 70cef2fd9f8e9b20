package client_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/node"
)

const layeredBundle = `kind: Policy
name: residency
layer: platform
rules:
  - name: no-pii-across-regions
    effect: deny
    actions: ["data.*"]
    when: >
      has(resource.properties.classification) && resource.properties.classification == "pii" &&
      resource.properties.region != context.region
    message: PII stays in its home region
  - name: same-region
    effect: allow
    actions: ["data.query", "data.describe"]
    when: resource.properties.region == context.region
    obligations: {audit: full, rate_limit: {limit: 100, per: 1m, key: subject.id}}
---
kind: Policy
name: spend
layer: tenant
rules:
  - name: big-purchases
    effect: require_approval
    actions: ["cost.purchase"]
    when: action.properties.amount > 1000
    obligations: {approvers: [finance]}
  - name: purchases
    effect: allow
    actions: ["cost.purchase"]
    when: '"buyer" in subject.properties.roles'
  - name: admins-read
    effect: allow
    actions: ["data.query"]
    when: '"admin" in subject.properties.roles'
`

// mapEntities is the stored entities a test gives the kernel, as a lookup.
type mapEntities map[string]map[string]any

func (m mapEntities) Entity(typ, id string) (map[string]any, bool) {
	p, ok := m[typ+"/"+id]
	return p, ok
}

// The local evaluator decides as the server does, for the same version and
// the same stored entities.
func TestLocalEvaluatorMatchesServer(t *testing.T) {
	nodes := startCluster(t, 1, nil)
	c := newClient(t, nodes...)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	publish(t, c, []api.File{{Name: "b.yaml", Data: []byte(layeredBundle)}})
	ents := []api.Entity{
		{Type: "agent", ID: "admin", Properties: map[string]any{"roles": []any{"admin"}}},
		{Type: "agent", ID: "buyer", Properties: map[string]any{"roles": []any{"buyer"}}},
	}
	rev, err := c.PutEntities(ctx, ents)
	if err != nil {
		t.Fatal(err)
	}
	stored := mapEntities{}
	for _, e := range ents {
		stored[e.Type+"/"+e.ID] = e.Properties
	}
	le, err := client.NewLocalEvaluator(ctx, c, client.LocalOptions{Entities: stored})
	if err != nil {
		t.Fatal(err)
	}
	defer le.Close()
	if le.Version() != 1 {
		t.Fatalf("evaluator holds version %d; want 1", le.Version())
	}
	table := func(id, region, class string) api.Entity {
		p := map[string]any{"region": region}
		if class != "" {
			p["classification"] = class
		}
		return api.Entity{Type: "table", ID: id, Properties: p}
	}
	agent := func(id string, roles ...any) api.Entity {
		e := api.Entity{Type: "agent", ID: id}
		if roles != nil {
			e.Properties = map[string]any{"roles": roles}
		}
		return e
	}
	eu := map[string]any{"region": "eu"}
	reqs := []api.CheckRequest{
		{Subject: agent("admin"), Action: api.Action{Name: "data.query"}, Resource: table("t1", "eu", ""), Context: eu},
		{Subject: agent("admin"), Action: api.Action{Name: "data.query"}, Resource: table("t1", "us", "pii"), Context: eu},
		{Subject: agent("nobody"), Action: api.Action{Name: "data.query"}, Resource: table("t1", "eu", ""), Context: eu},
		{Subject: agent("nobody", "admin"), Action: api.Action{Name: "data.query"}, Resource: table("t1", "us", ""), Context: eu},
		{Subject: agent("buyer"), Action: api.Action{Name: "cost.purchase", Properties: map[string]any{"amount": 5000}}, Resource: table("x", "eu", "")},
		{Subject: agent("buyer"), Action: api.Action{Name: "cost.purchase", Properties: map[string]any{"amount": 10}}, Resource: table("x", "eu", "")},
		{Subject: agent("admin"), Action: api.Action{Name: "cost.purchase", Properties: map[string]any{"amount": 10}}, Resource: table("x", "eu", "")},
		{Subject: agent("admin"), Action: api.Action{Name: "data.describe"}, Resource: table("t1", "eu", ""), Context: eu},
		{Subject: agent("admin"), Action: api.Action{Name: "unknown.verb"}, Resource: table("t1", "eu", "")},
		{Subject: agent("admin"), Action: api.Action{Name: "data.query"}, Resource: table("t1", "eu", ""), Context: eu, Explain: true},
	}
	seen := map[api.Effect]bool{}
	for i := range reqs {
		reqs[i].MinRevision = rev
		want, err := c.Check(ctx, reqs[i])
		if err != nil {
			t.Fatal(err)
		}
		got := le.Decide(&reqs[i])
		if got.Version != want.Version {
			t.Errorf("request %d: local version %d, server %d", i, got.Version, want.Version)
		}
		// The server's revision is the one it has applied; the evaluator's
		// the one of its version.
		got.Revision, want.Revision = 0, 0
		if !reflect.DeepEqual(got, want) {
			t.Errorf("request %d:\n local  %+v\n server %+v", i, got, want)
		}
		seen[got.Decision] = true
	}
	if len(seen) != 3 {
		t.Errorf("the requests reached %v; want all three effects", seen)
	}
	// Decisions are the caller's: changing one changes no other.
	d := le.Decide(&reqs[0])
	if len(d.Reasons) > 0 {
		d.Reasons[0].Rule = "scribbled"
	}
	if again := le.Decide(&reqs[0]); len(again.Reasons) > 0 && again.Reasons[0].Rule == "scribbled" {
		t.Fatal("a decision shares its reasons with the compiled bundle")
	}
}

// Swapping versions under concurrent decisions never mixes two versions in
// one decision: the allow rule of version v is named rv.
func TestLocalEvaluatorSwapIsAtomic(t *testing.T) {
	nodes := startCluster(t, 1, nil)
	c := newClient(t, nodes...)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	publish(t, c, versionedBundle(1))
	le, err := client.NewLocalEvaluator(ctx, c, client.LocalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer le.Close()
	const N = 20
	var stop atomic.Bool
	var decisions atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := api.CheckRequest{Subject: api.Entity{Type: "agent", ID: "a"}, Action: api.Action{Name: "data.query"}, Resource: api.Entity{Type: "t", ID: "t"}}
			for !stop.Load() {
				d := le.Decide(&req)
				decisions.Add(1)
				if d.Decision != api.Allow || len(d.Reasons) != 1 || d.Reasons[0].Rule != fmt.Sprintf("r%d", d.Version) {
					errs <- fmt.Errorf("decision mixes versions: %+v", d)
					return
				}
			}
		}()
	}
	for i := 2; i <= N; i++ {
		publish(t, c, versionedBundle(i))
	}
	waitFor(t, func() bool { return le.Version() == N })
	stop.Store(true)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	t.Logf("%d decisions across %d swaps", decisions.Load(), N-1)
}

// fakeClock is a clock the test moves.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
func newFakeClock() *fakeClock               { c := &fakeClock{}; c.ns.Store(time.Now().UnixNano()); return c }
func isStale(d api.Decision) bool {
	return len(d.Errors) == 1 && strings.Contains(d.Errors[0], client.ErrStale.Error())
}
func allowReq() *api.CheckRequest {
	return &api.CheckRequest{Subject: api.Entity{Type: "agent", ID: "a"}, Action: api.Action{Name: "data.query"}, Resource: api.Entity{Type: "t", ID: "t"}}
}

// Past MaxStale without a message from the cluster, decisions deny and say
// how stale the evaluator is; a message from the cluster makes it fresh.
func TestLocalEvaluatorFailsClosedWhenStale(t *testing.T) {
	nodes := startCluster(t, 1, func(c *node.Config) { c.Watch.Heartbeat = 20 * time.Millisecond })
	c := newClient(t, nodes...)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	publish(t, c, versionedBundle(1))
	clock := newFakeClock()
	const maxStale = 10 * time.Second
	le, err := client.NewLocalEvaluator(ctx, c, client.LocalOptions{MaxStale: maxStale, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer le.Close()
	if d := le.Decide(allowReq()); d.Decision != api.Allow {
		t.Fatalf("fresh evaluator decided %+v", d)
	}
	// Heartbeats keep it fresh, whatever the clock did meanwhile.
	clock.Advance(2 * maxStale)
	waitFor(t, func() bool { return le.Decide(allowReq()).Decision == api.Allow })

	// The node dies: nothing comes any more.
	nodes[0].Kill()
	var d api.Decision
	waitFor(t, func() bool {
		clock.Advance(maxStale / 4)
		d = le.Decide(allowReq())
		return d.Decision == api.Deny
	})
	if !isStale(d) || d.Version != 1 {
		t.Fatalf("stale decision %+v; want a deny at version 1 saying the evaluator is stale", d)
	}
	if le.Staleness() <= maxStale {
		t.Fatalf("staleness %s; want more than %s", le.Staleness(), maxStale)
	}
	if !strings.Contains(d.Errors[0], "max 10s") {
		t.Fatalf("stale error %q does not say the bound", d.Errors[0])
	}
}

func TestLocalEvaluatorBeforeAnyPublish(t *testing.T) {
	nodes := startCluster(t, 1, nil)
	c := newClient(t, nodes...)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	le, err := client.NewLocalEvaluator(ctx, c, client.LocalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer le.Close()
	if d := le.Decide(allowReq()); d.Decision != api.Deny || le.Version() != 0 {
		t.Fatalf("decision with no bundle %+v; want deny", d)
	}
	publish(t, c, versionedBundle(1))
	waitFor(t, func() bool { return le.Decide(allowReq()).Decision == api.Allow })
}
