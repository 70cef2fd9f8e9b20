package store

import (
	"bytes"
	"errors"
	"testing"

	"github.com/aibos/kernel/api"
)

func regionFSM(t *testing.T, self, domain string, primary bool) *fsm {
	t.Helper()
	f := newFSM(nil)
	applyOK(t, f, cmdRegionInit, regionInitCmd{Self: self, Domain: domain, Endpoints: []string{"http://" + self + ".test:8181"}, Primary: primary, Time: t0})
	return f
}

func region(id, domain, standby string) api.Region {
	return api.Region{ID: id, Domain: domain, Endpoints: []string{"http://" + id + ".test:8181"}, Standby: standby}
}

// follow applies every entry of src's log that dst has not applied.
func follow(t *testing.T, src, dst *fsm) {
	t.Helper()
	for _, e := range src.st.region.Log[dst.st.region.gv():] {
		r := applyOK(t, dst, cmdGlobalApply, globalApplyCmd{SourceEpoch: src.st.region.Epoch, Entry: e})
		if r.GlobalVersion != e.GlobalVersion {
			t.Fatalf("entry %d applied as %d", e.GlobalVersion, r.GlobalVersion)
		}
	}
}

func globalOf(t *testing.T, f *fsm) GlobalState {
	t.Helper()
	s := &Store{fsm: f}
	g, ok := s.GlobalState()
	if !ok {
		t.Fatal("not in multi-region mode")
	}
	return g
}

func TestRegionReplicationAndFencing(t *testing.T) {
	us := regionFSM(t, "us-east", "us", true)
	eu := regionFSM(t, "eu-west", "eu", false)
	euc := regionFSM(t, "eu-central", "eu", false)

	applyOK(t, us, cmdRegionPut, regionPutCmd{Region: region("eu-central", "eu", "")})
	applyOK(t, us, cmdRegionPut, regionPutCmd{Region: region("eu-west", "eu", "eu-central")})
	applyErr(t, us, ErrResidency, cmdRegionPut, regionPutCmd{Region: region("us-west", "us", "eu-west")})
	applyOK(t, us, cmdTenantPut, tenantPutCmd{Tenant: api.Tenant{ID: "acme-eu", Home: "eu-west"}})
	r := applyOK(t, us, cmdBundlePublish, publishCmd{Files: files("a", "1"), Hash: "h1", Time: t0})
	if r.GlobalVersion != 6 || r.Version.Version != 1 {
		t.Fatalf("publish at the primary: global version %d, version %+v", r.GlobalVersion, r.Version)
	}

	// A secondary syncs with a reset, then follows entry by entry.
	applyOK(t, eu, cmdGlobalReset, globalOf(t, us))
	applyOK(t, us, cmdBundlePublish, publishCmd{Files: files("a", "2"), Hash: "h2", Time: t0})
	follow(t, us, eu)
	applyOK(t, euc, cmdGlobalReset, globalOf(t, us))
	if eu.st.region.gv() != 7 || len(eu.st.versions) != 2 || eu.st.versions[1].Hash != "h2" {
		t.Fatalf("eu-west at %d with %d versions", eu.st.region.gv(), len(eu.st.versions))
	}

	// Idempotent: an entry applied again changes no global state; a gap
	// is refused; a direct global write at a secondary is refused.
	before := eu.st.region.gv()
	applyOK(t, eu, cmdGlobalApply, globalApplyCmd{SourceEpoch: 1, Entry: us.st.region.Log[3]})
	if eu.st.region.gv() != before || len(eu.st.versions) != 2 {
		t.Fatal("a repeated entry was applied twice")
	}
	applyOK(t, us, cmdBundlePublish, publishCmd{Files: files("a", "3"), Hash: "h3", Time: t0})
	applyOK(t, us, cmdBundlePublish, publishCmd{Files: files("a", "4"), Hash: "h4", Time: t0})
	applyErr(t, eu, ErrReplicationGap, cmdGlobalApply, globalApplyCmd{SourceEpoch: 1, Entry: us.st.region.Log[8]})
	applyErr(t, eu, ErrNotPrimary, cmdBundlePublish, publishCmd{Files: files("a", "x"), Hash: "hx", Time: t0})

	// Tenant records cannot be carried by the stream.
	for _, e := range []api.GlobalEntry{
		{GlobalVersion: 8, Epoch: 1, Type: cmdEntitiesPut, Payload: []byte(`{"entities":[{"type":"u","id":"1"}]}`)},
		{GlobalVersion: 8, Epoch: 1, Type: cmdAgentRegister, Payload: []byte(`{}`)},
		{GlobalVersion: 8, Epoch: 1, Type: cmdKillSet, Payload: []byte(`{"kill":{"id":"k1","scope":"tenant","target":"acme-eu","reason":"r","by":"b","created_at":"2025-01-01T00:00:00Z"}}`)},
	} {
		applyErr(t, eu, ErrBadCommand, cmdGlobalApply, globalApplyCmd{SourceEpoch: 1, Entry: e})
	}

	// Residency: eu tenant data is refused in us-east, and in eu-central
	// while eu-west is its home; unknown tenants have no home.
	put := func(tenant string) entitiesPutCmd {
		return entitiesPutCmd{Entities: []api.Entity{{Type: "doc", ID: "d1", Properties: map[string]any{"tenant": tenant, "x": "MARKER"}}}}
	}
	applyErr(t, us, ErrResidency, cmdEntitiesPut, put("acme-eu"))
	applyErr(t, euc, ErrNotHome, cmdEntitiesPut, put("acme-eu"))
	applyErr(t, eu, ErrResidency, cmdEntitiesPut, put("nobody"))
	applyOK(t, eu, cmdEntitiesPut, put("acme-eu"))

	// Promotion: us-east is cut off after entry 9; eu-west takes epoch 2
	// with eu-central's promise and its own.
	follow(t, us, euc) // eu-central has 9, eu-west 7
	for _, f := range []*fsm{eu, euc} {
		applyOK(t, f, cmdEpochPromise, epochPromiseCmd{Epoch: 2, Primary: "eu-west"})
	}
	applyErr(t, euc, ErrStaleRegionEpoch, cmdEpochPromise, epochPromiseCmd{Epoch: 2, Primary: "us-east"})
	// Once promised, the old primary's stream is refused.
	applyErr(t, euc, ErrStaleRegionEpoch, cmdGlobalApply, globalApplyCmd{SourceEpoch: 1, Entry: us.st.region.Log[8]})
	r = applyOK(t, eu, cmdEpochBegin, epochBeginCmd{Epoch: 2, Primary: "eu-west", Time: t0})
	if r.GlobalVersion != 8 || !eu.st.region.primaryNow() {
		t.Fatalf("begin at %d, primary %v", r.GlobalVersion, eu.st.region.primaryNow())
	}
	applyOK(t, eu, cmdBundlePublish, publishCmd{Files: files("a", "new"), Hash: "hn", Time: t0})
	// The old primary writes on after the fork (it did not know).
	applyOK(t, us, cmdBundlePublish, publishCmd{Files: files("a", "5"), Hash: "h5", Time: t0})

	// eu-central has entries 8 and 9 of epoch 1 that the new primary has
	// not: the stream says it diverged, a reset quarantines them.
	applyErr(t, euc, ErrStaleRegionEpoch, cmdGlobalApply, globalApplyCmd{SourceEpoch: 2, Entry: eu.st.region.Log[7]})
	for _, f := range []*fsm{euc, us} {
		applyOK(t, f, cmdGlobalReset, globalOf(t, eu))
		if got, want := dumpGlobal(t, f), dumpGlobal(t, eu); !bytes.Equal(got, want) {
			t.Fatalf("%s after reset:\n%s\nwant\n%s", f.st.region.Self, got, want)
		}
	}
	if q := us.st.region.Quarantine; len(q) != 3 || q[0].GlobalVersion != 8 {
		t.Fatalf("us-east quarantined %+v, want entries 8-10", q)
	}
	if len(euc.st.region.Quarantine) != 2 {
		t.Fatalf("eu-central quarantined %d, want 2", len(euc.st.region.Quarantine))
	}
	applyErr(t, us, ErrStaleRegionEpoch, cmdBundlePublish, publishCmd{Files: files("a", "6"), Hash: "h6", Time: t0})
	if v := us.st.versions; len(v) != 3 || v[2].Hash != "hn" {
		t.Fatalf("us-east versions after reset: %d", len(v))
	}

	// Failover: eu-central serves eu-west's tenants once eu-west is lost.
	applyOK(t, eu, cmdRegionFailover, regionFailoverCmd{ID: "eu-west", By: "op", Time: t0})
	follow(t, eu, euc)
	applyOK(t, euc, cmdEntitiesPut, put("acme-eu"))
	applyErr(t, us, ErrResidency, cmdEntitiesPut, put("acme-eu"))

	// The region state survives a snapshot.
	roundTrip(t, euc)
	roundTrip(t, us)
}

func dumpGlobal(t *testing.T, f *fsm) []byte {
	t.Helper()
	g := globalOf(t, f)
	g.Tokens, g.CatalogRev = nil, 0
	b, err := encodeCommand("g", g)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRegionInitIdentityFixed(t *testing.T) {
	f := regionFSM(t, "eu-west", "eu", false)
	applyOK(t, f, cmdRegionInit, regionInitCmd{Self: "eu-west", Domain: "eu", Time: t0})
	applyErr(t, f, ErrBadCommand, cmdRegionInit, regionInitCmd{Self: "eu-west", Domain: "us", Time: t0})
	applyErr(t, f, ErrBadCommand, cmdRegionInit, regionInitCmd{Self: "Bad_ID", Domain: "eu", Time: t0})
	if err := ValidRegionID("eu-west-1"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "-eu", "1eu", "EU", "eu_west"} {
		if ValidRegionID(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	// Outside multi-region mode, nothing changes: global types apply as
	// before and tenant data has no residency.
	g := newFSM(nil)
	applyOK(t, g, cmdBundlePublish, publishCmd{Files: files("a", "1"), Hash: "h1", Time: t0})
	applyOK(t, g, cmdEntitiesPut, entitiesPutCmd{Entities: []api.Entity{{Type: "d", ID: "1", Properties: map[string]any{"tenant": "x"}}}})
	if !errors.Is(errNotMultiRegion, ErrBadCommand) {
		t.Fatal("errNotMultiRegion")
	}
}

func TestStandbyStream(t *testing.T) {
	us := regionFSM(t, "us-east", "us", true)
	applyOK(t, us, cmdRegionPut, regionPutCmd{Region: region("eu-central", "eu", "")})
	applyOK(t, us, cmdRegionPut, regionPutCmd{Region: region("eu-west", "eu", "eu-central")})
	applyOK(t, us, cmdTenantPut, tenantPutCmd{Tenant: api.Tenant{ID: "acme", Home: "eu-west"}})
	applyOK(t, us, cmdTenantPut, tenantPutCmd{Tenant: api.Tenant{ID: "zeta", Home: "eu-central"}})
	home := regionFSM(t, "eu-west", "eu", false)
	sb := regionFSM(t, "eu-central", "eu", false)
	for _, f := range []*fsm{home, sb} {
		applyOK(t, f, cmdGlobalReset, globalOf(t, us))
	}
	hs, ss := &Store{fsm: home}, &Store{fsm: sb}
	ent := func(id, tenant string) api.Entity {
		return api.Entity{Type: "doc", ID: id, Properties: map[string]any{"tenant": tenant, "v": id}}
	}
	applyOK(t, home, cmdEntitiesPut, entitiesPutCmd{Entities: []api.Entity{ent("d1", "acme"), ent("d2", "acme"), {Type: "x", ID: "untenanted"}}})
	applyOK(t, home, cmdEntityDelete, entityDeleteCmd{Type: "doc", ID: "d2"})
	changes, to, ok := hs.TenantChanges(0, 100)
	if !ok || len(changes) != 3 {
		t.Fatalf("changes %+v ok %v", changes, ok)
	}
	applyOK(t, sb, cmdStandbyApply, standbyApplyCmd{Source: "eu-west", Prev: 0, Revision: to, Changes: changes})
	if _, ok := sb.st.entities[entityKey{"doc", "d1"}]; !ok || len(sb.st.entities) != 1 {
		t.Fatalf("standby entities %v", sb.st.entities)
	}
	// Again: a no-op; from elsewhere than the cursor: a gap.
	applyOK(t, sb, cmdStandbyApply, standbyApplyCmd{Source: "eu-west", Prev: 0, Revision: to, Changes: changes})
	applyErr(t, sb, ErrReplicationGap, cmdStandbyApply, standbyApplyCmd{Source: "eu-west", Prev: to + 5, Revision: to + 9})
	// A change of a tenant of another home is refused, and so is a stream
	// to a region that is not the standby.
	applyErr(t, sb, ErrResidency, cmdStandbyApply, standbyApplyCmd{Source: "eu-west", Prev: to, Revision: to + 1, Changes: []TenantChange{{Revision: to + 1, Tenant: "zeta", Put: ptr(ent("z", "zeta"))}}})
	applyErr(t, home, ErrResidency, cmdStandbyApply, standbyApplyCmd{Source: "eu-central", Prev: 0, Revision: 1})
	// A reset replaces the standby's copy.
	snap, rev := hs.TenantSnapshot()
	applyOK(t, sb, cmdStandbyReset, standbyResetCmd{Source: "eu-west", Revision: rev, Changes: snap})
	if ss.StandbyCursor("eu-west") != rev || len(sb.st.entities) != 1 {
		t.Fatalf("after reset: cursor %d, %d entities", ss.StandbyCursor("eu-west"), len(sb.st.entities))
	}
	// Failed over: the standby serves acme, takes no more of the home's
	// stream, and the home refuses acme's writes.
	applyOK(t, us, cmdRegionFailover, regionFailoverCmd{ID: "eu-west", By: "t", Time: t0})
	follow(t, us, sb)
	follow(t, us, home)
	applyErr(t, sb, ErrStaleRegionEpoch, cmdStandbyApply, standbyApplyCmd{Source: "eu-west", Prev: rev, Revision: rev + 1})
	applyOK(t, sb, cmdEntitiesPut, entitiesPutCmd{Entities: []api.Entity{ent("d3", "acme")}})
	applyErr(t, home, ErrNotHome, cmdEntitiesPut, entitiesPutCmd{Entities: []api.Entity{ent("d4", "acme")}})
	roundTrip(t, sb)
}

func ptr[T any](v T) *T { return &v }
