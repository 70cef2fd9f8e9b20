package store

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/aibos/kernel/api"
)

// regionPair is a primary (us-east) with a registry, a tenant, a bundle
// and a global kill switch, and a secondary (eu-west) reset from it: the
// states the global stream's decoders feed.
func regionPair(t testing.TB) (us, eu *fsm) {
	t.Helper()
	apply := func(f *fsm, typ string, payload any) {
		t.Helper()
		if err, ok := applyRaw(f, mustCmd(t, typ, payload)).(error); ok {
			t.Fatalf("%s: %v", typ, err)
		}
	}
	us, eu = newFSM(nil), newFSM(nil)
	apply(us, cmdRegionInit, regionInitCmd{Self: "us-east", Domain: "us", Endpoints: []string{"http://us-east.test:8181"}, Primary: true, Time: t0})
	apply(eu, cmdRegionInit, regionInitCmd{Self: "eu-west", Domain: "eu", Endpoints: []string{"http://eu-west.test:8181"}, Time: t0})
	apply(us, cmdRegionPut, regionPutCmd{Region: region("eu-central", "eu", "")})
	apply(us, cmdRegionPut, regionPutCmd{Region: region("eu-west", "eu", "eu-central")})
	apply(us, cmdTenantPut, tenantPutCmd{Tenant: api.Tenant{ID: "acme-eu", Home: "eu-west"}})
	apply(us, cmdBundlePublish, publishCmd{Files: files("a", "1"), Hash: "h1", Time: t0})
	apply(us, cmdKillSet, killSetCmd{Kill: api.KillSwitch{ID: "k1", Scope: api.KillGlobal, Reason: "r", By: "b", CreatedAt: t0, Active: true}})
	g, _ := (&Store{fsm: us}).GlobalState()
	apply(eu, cmdGlobalReset, g)
	return us, eu
}

// checkReadable fails unless f's region state can be read and survives a
// snapshot round trip: what the API and a restart do with it.
func checkReadable(t *testing.T, f *fsm) {
	t.Helper()
	s := &Store{fsm: f}
	v, ok := s.Region()
	if !ok {
		t.Fatal("not in multi-region mode")
	}
	for _, tn := range v.Tenants {
		_, _ = v.Serving(tn.ID)
	}
	_, _ = s.GlobalState()
	roundTrip(t, f)
}

// FuzzDecodeGlobalState: any bytes a primary (or an impostor) sends as a
// reset either fail to decode, or are applied as a global.reset without a
// panic: refused, with the state unchanged, or accepted, with a state
// that can be read and snapshotted.
func FuzzDecodeGlobalState(f *testing.F) {
	us, _ := regionPair(f)
	g, _ := (&Store{fsm: us}).GlobalState()
	real, err := json.Marshal(g)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(real)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"epoch":1,"primary":"us-east","log":[],"regions":{},"epochs":[]}`))
	f.Add([]byte(`{"epoch":1,"primary":"us-east","log":[{"gv":1,"epoch":1,"type":"entities.put","payload":{}}]}`))
	f.Add([]byte(`{"epoch":2,"primary":"x","versions":[null],"orchestras":[null],"kills":[null],"tokens":[null]}`))
	f.Add([]byte(`{"epoch":2,"primary":"x","regions":{"a":null},"tenants":{"t":null}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := DecodeGlobalState(data)
		if err != nil {
			return
		}
		cmd, err := encodeCommand(cmdGlobalReset, g)
		if err != nil {
			t.Fatalf("a decoded global state does not encode: %v", err)
		}
		_, eu := regionPair(t)
		before := dump(t, eu)
		switch r := applyRaw(eu, cmd).(type) {
		case error:
			if !bytes.Equal(dump(t, eu), before) {
				t.Fatalf("refused reset (%v) changed the state", r)
			}
		case applyResult:
			checkReadable(t, eu)
		default:
			t.Fatalf("response %T", r)
		}
	})
}

// globalFuzzTypes are the entry types FuzzGlobalApply picks from: global
// ones, and tenant data that the stream must never carry.
var globalFuzzTypes = []string{
	cmdBundlePublish, cmdRegionPut, cmdRegionFailover, cmdTenantPut, cmdEpochBegin,
	cmdKillSet, cmdKillLift, cmdTokenCreate, cmdTokenRevoke, cmdOrchestraPut,
	cmdEntitiesPut, cmdAgentRegister, cmdApprovalCreate, cmdSandboxPlace, cmdGlobalReset, cmdEpochPromise, "x", "",
}

// FuzzGlobalApply: any entry of the global stream applied at a secondary
// never panics; a refused one changes nothing, and a type that is not
// global state is always refused.
func FuzzGlobalApply(f *testing.F) {
	idx := func(typ string) uint8 {
		for i, t := range globalFuzzTypes {
			if t == typ {
				return uint8(i)
			}
		}
		panic(typ)
	}
	put, _ := json.Marshal(regionPutCmd{Region: region("us-west", "us", "")})
	tenant, _ := json.Marshal(tenantPutCmd{Tenant: api.Tenant{ID: "acme-us", Home: "us-east"}})
	publish, _ := json.Marshal(publishCmd{Files: files("a", "2"), Hash: "h2", Time: t0})
	begin, _ := json.Marshal(epochBeginCmd{Epoch: 2, Primary: "eu-west", Base: 7, Time: t0})
	kill, _ := json.Marshal(killSetCmd{Kill: api.KillSwitch{ID: "k2", Scope: api.KillGlobal, Reason: "r", By: "b", CreatedAt: t0, Active: true}})
	tkill, _ := json.Marshal(killSetCmd{Kill: api.KillSwitch{ID: "k3", Scope: "tenant", Target: "acme-eu", Reason: "r", By: "b", CreatedAt: t0, Active: true}})
	ents := []byte(`{"entities":[{"type":"doc","id":"d1","properties":{"tenant":"acme-eu"}}]}`)
	for _, s := range []struct {
		gv, epoch, source uint64
		typ               string
		payload           []byte
	}{
		{8, 1, 1, cmdRegionPut, put},
		{8, 1, 1, cmdTenantPut, tenant},
		{8, 1, 1, cmdBundlePublish, publish},
		{8, 2, 2, cmdEpochBegin, begin},
		{8, 1, 1, cmdKillSet, kill},
		{8, 1, 1, cmdKillSet, tkill},
		{8, 1, 1, cmdEntitiesPut, ents},
		{3, 1, 1, cmdTenantPut, tenant}, // already applied, and differs
		{9, 1, 1, cmdRegionPut, put},    // a gap
		{8, 1, 0, cmdRegionPut, put},    // a stale source
		{8, 1, 1, cmdRegionPut, []byte(`null`)},
		{8, 1, 1, cmdEpochBegin, []byte(`{"epoch":99,"primary":"x","base":7}`)}, // not the entry's epoch
	} {
		f.Add(s.gv, s.epoch, s.source, idx(s.typ), s.payload)
	}
	f.Fuzz(func(t *testing.T, gv, epoch, source uint64, typ uint8, payload []byte) {
		if !json.Valid(payload) {
			// A payload is JSON inside the entry's JSON: other bytes
			// cannot be sent.
			return
		}
		e := api.GlobalEntry{GlobalVersion: gv, Epoch: epoch, Type: globalFuzzTypes[int(typ)%len(globalFuzzTypes)], Payload: payload}
		_, eu := regionPair(t)
		before := dump(t, eu)
		cmd := mustCmd(t, cmdGlobalApply, globalApplyCmd{SourceEpoch: source, Entry: e})
		switch r := applyRaw(eu, cmd).(type) {
		case error:
			if !bytes.Equal(dump(t, eu), before) {
				t.Fatalf("refused entry %+v (%v) changed the state", e, r)
			}
		case applyResult:
			if !globalTypes[e.Type] {
				t.Fatalf("entry of type %q (not global state) was applied", e.Type)
			}
			if reg := eu.st.region; e.Type == cmdEpochBegin && r.Skipped == "" && (reg.Epoch != e.Epoch || reg.Promised < reg.Epoch) {
				t.Fatalf("begin entry %+v made epoch %d current (promised %d)", e, reg.Epoch, reg.Promised)
			}
			checkReadable(t, eu)
		default:
			t.Fatalf("response %T", r)
		}
	})
}

// FuzzStandbyApply: any tenant-data batch a home (or an impostor) sends
// is applied at the standby without a panic: refused with the state
// unchanged, or accepted with a readable state; data of a tenant that is
// not the home's is never accepted.
func FuzzStandbyApply(f *testing.F) {
	f.Add([]byte(`{"source":"eu-west","prev":0,"revision":5,"changes":[{"revision":5,"tenant":"acme-eu","put":{"type":"doc","id":"d1","properties":{"tenant":"acme-eu"}}}]}`))
	f.Add([]byte(`{"source":"eu-west","prev":0,"revision":5,"changes":[{"revision":5,"tenant":"acme-eu","delete":{"type":"doc","id":"d1"}}]}`))
	f.Add([]byte(`{"source":"eu-west","prev":0,"revision":5,"changes":[{"revision":5,"tenant":"acme-eu","agent":{"agent":{"id":"a1","tenant":"acme-eu"},"digests":{}}}]}`))
	f.Add([]byte(`{"source":"eu-west","prev":0,"revision":5,"changes":[{"revision":5,"tenant":"other","put":{"type":"doc","id":"d1","properties":{"tenant":"other"}}}]}`))
	f.Add([]byte(`{"source":"us-east","prev":0,"revision":1,"changes":[]}`))
	f.Add([]byte(`{"source":"eu-west","prev":0,"revision":5,"changes":[{"revision":5,"tenant":"acme-eu"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var p standbyApplyCmd
		if json.Unmarshal(data, &p) != nil {
			return
		}
		for _, typ := range []string{cmdStandbyApply, cmdStandbyReset} {
			us, _ := regionPair(t)
			sb := newFSM(nil)
			if err, ok := applyRaw(sb, mustCmd(t, cmdRegionInit, regionInitCmd{Self: "eu-central", Domain: "eu", Time: t0})).(error); ok {
				t.Fatal(err)
			}
			g, _ := (&Store{fsm: us}).GlobalState()
			if err, ok := applyRaw(sb, mustCmd(t, cmdGlobalReset, g)).(error); ok {
				t.Fatal(err)
			}
			before := dump(t, sb)
			var payload any = p
			if typ == cmdStandbyReset {
				payload = standbyResetCmd{Source: p.Source, Revision: p.Revision, Changes: p.Changes}
			}
			switch r := applyRaw(sb, mustCmd(t, typ, payload)).(type) {
			case error:
				if !bytes.Equal(before, dump(t, sb)) {
					t.Fatalf("a refused %s changed the state: %v", typ, r)
				}
			default:
				if (&Store{fsm: sb}).StandbyCursor(p.Source) == 0 {
					break // at or behind the cursor: skipped, nothing applied
				}
				for _, c := range p.Changes {
					if c.Tenant != "acme-eu" {
						t.Fatalf("%s accepted data of tenant %q from %s", typ, c.Tenant, p.Source)
					}
				}
				for k, props := range sb.st.entities {
					if tenantOf(props) != "acme-eu" {
						t.Fatalf("%s stored %v of tenant %q", typ, k, tenantOf(props))
					}
				}
				checkReadable(t, sb)
			}
		}
	})
}
