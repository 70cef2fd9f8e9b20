package watch_test

import (
	"context"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/aibos/kernel/api"
)

// nextKill reads messages until a kill event and returns it.
func nextKill(t *testing.T, c *websocket.Conn) api.WatchEvent {
	t.Helper()
	for {
		ev, err := read(t, c)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if ev.Type == api.WatchKill {
			if ev.Kill == nil || ev.Kill.Revision != ev.Revision {
				t.Fatalf("kill event %+v", ev)
			}
			return ev
		}
	}
}

// TestKillEvents: a watcher hears of every kill switch set and lifted, a
// new watcher of the active ones only, and bundle events still flow in
// order around them.
func TestKillEvents(t *testing.T) {
	n := startNode(t, nodeConfig(t, "n1"))
	c := newClient(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	now := time.Now().UTC()
	set := func(id, scope, target string) api.KillSwitch {
		t.Helper()
		k, err := n.Store.SetKill(ctx, api.KillSwitch{ID: id, Scope: scope, Target: target, Reason: "test", By: "ops", CreatedAt: now})
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	// Lifted before anyone watches: history, never sent.
	old := set("k-old", api.KillAgent, "a9")
	if _, err := n.Store.LiftKill(ctx, old.ID, "ops", "", now); err != nil {
		t.Fatal(err)
	}
	k1 := set("k1", api.KillAction, "crm.*")
	publish(t, c, 1, 0)

	w := dial(t, n.URL(), "?from=0", 0)
	readVersions(t, w, 0, 1)
	if ev := nextKill(t, w); ev.Kill.ID != "k1" || !ev.Kill.Active || ev.Revision != k1.Revision || ev.Version != 1 {
		t.Fatalf("on connect: %+v; want k1 active at version 1", ev)
	}

	k2 := set("k2", api.KillGlobal, "")
	if ev := nextKill(t, w); ev.Kill.ID != "k2" || !ev.Kill.Active || ev.Kill.Scope != api.KillGlobal || ev.Revision != k2.Revision {
		t.Fatalf("set: %+v", ev)
	}
	l1, err := n.Store.LiftKill(ctx, "k1", "lead", "fixed", now)
	if err != nil {
		t.Fatal(err)
	}
	if ev := nextKill(t, w); ev.Kill.ID != "k1" || ev.Kill.Active || ev.Kill.LiftedBy != "lead" || ev.Kill.LiftReason != "fixed" || ev.Revision != l1.Revision {
		t.Fatalf("lift: %+v", ev)
	}
	publish(t, c, 2, 0)
	readVersions(t, w, 1, 2)

	// A new watcher gets the one active switch, not the lifted ones.
	w2 := dial(t, n.URL(), "", 0)
	readVersions(t, w2, 1, 2)
	if ev := nextKill(t, w2); ev.Kill.ID != "k2" || !ev.Kill.Active {
		t.Fatalf("second watcher on connect: %+v; want k2", ev)
	}
	// Nothing else is pending for it: the next event is the next change.
	k3 := set("k3", api.KillTenant, "acme")
	if ev := nextKill(t, w2); ev.Kill.ID != "k3" || ev.Revision != k3.Revision {
		t.Fatalf("second watcher: %+v; want k3", ev)
	}
	if ev := nextKill(t, w); ev.Kill.ID != "k3" {
		t.Fatalf("first watcher: %+v; want k3", ev)
	}
}
