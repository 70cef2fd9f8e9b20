package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/aibos/kernel/api"
)

func mustCmd(t testing.TB, typ string, payload any) []byte {
	t.Helper()
	b, err := encodeCommand(typ, payload)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// seedCommands are valid commands of every type, applied in order to a
// fresh state machine.
func seedCommands(t testing.TB) [][]byte {
	return [][]byte{
		mustCmd(t, cmdBundlePublish, publishCmd{Files: files("a", "1"), Hash: "h1", Time: t0}),
		mustCmd(t, cmdBundlePublish, publishCmd{Files: files("a", "2", "b", "3"), Hash: "h2", Time: t0}),
		mustCmd(t, cmdBundleRollback, rollbackCmd{To: 1, Message: "back", Time: t0}),
		mustCmd(t, cmdEntitiesPut, entitiesPutCmd{Entities: []api.Entity{
			{Type: "user", ID: "u1", Properties: map[string]any{"roles": []any{"a"}}},
			{Type: "table", ID: "t1"},
		}}),
		mustCmd(t, cmdEntityDelete, entityDeleteCmd{Type: "table", ID: "t1"}),
		mustCmd(t, cmdNodeSet, nodeSetCmd{ID: "n1", HTTP: "h", Raft: "r"}),
		mustCmd(t, cmdNodeSet, nodeSetCmd{ID: "n2", HTTP: "h2", Raft: "r2"}),
		mustCmd(t, cmdNodeRemove, nodeRemoveCmd{ID: "n2"}),
	}
}

func applyRaw(f *fsm, data []byte) any {
	return f.Apply(&raft.Log{Type: raft.LogCommand, Data: data})
}

func seededFSM(t testing.TB) *fsm {
	f := newFSM(nil)
	for i, c := range seedCommands(t) {
		if err, ok := applyRaw(f, c).(error); ok {
			t.Fatalf("seed %d: %v", i, err)
		}
	}
	return f
}

func TestApplyRejectsBadCommands(t *testing.T) {
	for _, tc := range []struct {
		name string
		data string
		want error
	}{
		{"unknown type", `{"type":"agent.register","payload":{"id":"a"}}`, ErrBadCommand},
		{"no type", `{"payload":{}}`, ErrBadCommand},
		{"not json", `}{`, ErrBadCommand},
		{"empty", ``, ErrBadCommand},
		{"null", `null`, ErrBadCommand},
		{"no payload", `{"type":"bundle.publish"}`, ErrBadCommand},
		{"payload wrong shape", `{"type":"entities.put","payload":[1,2]}`, ErrBadCommand},
		{"publish no files", `{"type":"bundle.publish","payload":{"files":[]}}`, ErrBadCommand},
		{"publish duplicate file", `{"type":"bundle.publish","payload":{"files":[{"name":"a"},{"name":"a"}]}}`, ErrBadCommand},
		{"publish unnamed file", `{"type":"bundle.publish","payload":{"files":[{"data":"eA=="}]}}`, ErrBadCommand},
		{"rollback to 0", `{"type":"bundle.rollback","payload":{"to":0}}`, ErrNoSuchVersion},
		{"rollback to future", `{"type":"bundle.rollback","payload":{"to":18446744073709551615}}`, ErrNoSuchVersion},
		{"entities empty", `{"type":"entities.put","payload":{"entities":[]}}`, ErrBadCommand},
		{"entity null", `{"type":"entities.put","payload":{"entities":[null]}}`, ErrBadCommand},
		{"entity no id", `{"type":"entities.put","payload":{"entities":[{"type":"u"}]}}`, ErrBadCommand},
		{"delete missing", `{"type":"entity.delete","payload":{"type":"u","id":"nope"}}`, ErrNotFound},
		{"node no id", `{"type":"node.set","payload":{"http":"x"}}`, ErrBadCommand},
		{"remove unknown node", `{"type":"node.remove","payload":{"id":"zz"}}`, ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := seededFSM(t)
			before, rev := dump(t, f), f.applied.Load()
			res := applyRaw(f, []byte(tc.data))
			err, _ := res.(error)
			if !errors.Is(err, tc.want) {
				t.Fatalf("response %v, want %v", res, tc.want)
			}
			if !bytes.Equal(dump(t, f), before) || f.applied.Load() != rev {
				t.Fatal("state changed")
			}
		})
	}
}

func TestApplyResults(t *testing.T) {
	var seen []Change
	f := newFSM(func(c Change) {
		// OnApply runs before the revision is visible.
		if got := seen; len(got) > 0 && got[len(got)-1].Revision >= c.Revision {
			panic("revisions not increasing")
		}
		seen = append(seen, c)
	})
	for i, c := range seedCommands(t) {
		res, ok := applyRaw(f, c).(applyResult)
		if !ok {
			t.Fatalf("seed %d: %v", i, applyRaw(f, c))
		}
		if res.Revision != uint64(i+1) || f.applied.Load() != uint64(i+1) {
			t.Fatalf("seed %d: revision %d applied %d", i, res.Revision, f.applied.Load())
		}
	}
	want := []string{"bundle", "bundle", "bundle", "entities", "entity_delete", "node", "node", "node"}
	if got := kindsOf(seen); !reflect.DeepEqual(got, want) {
		t.Fatalf("kinds %v", got)
	}
	rb := seen[2].Version
	if rb.Version != 3 || rb.RollbackOf != 1 || rb.Parent != 2 || rb.Hash != "h1" || !reflect.DeepEqual(rb.Files, files("a", "1")) {
		t.Fatalf("rollback version %+v", rb)
	}
	// Non-command entries (configuration, barrier, noop) do nothing.
	if r := f.Apply(&raft.Log{Type: raft.LogNoop}); r != nil || f.applied.Load() != 8 {
		t.Fatalf("noop: %v", r)
	}
}

// TestSnapshotRoundTrip: persist + restore gives back the same state, and
// restore reports the current version.
func TestSnapshotRoundTrip(t *testing.T) {
	f := seededFSM(t)
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := snap.(*fsmSnapshot).write(&buf); err != nil {
		t.Fatal(err)
	}
	var got Change
	g := newFSM(func(c Change) { got = c })
	if err := g.Restore(readCloser{&buf}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dump(t, g), dump(t, f)) {
		t.Fatalf("restored state differs:\n%s\nwant\n%s", dump(t, g), dump(t, f))
	}
	if got.Kind != ChangeRestore || got.Revision != 8 || got.Version == nil || got.Version.Version != 3 {
		t.Fatalf("restore change %+v", got)
	}
	if g.applied.Load() != 8 {
		t.Fatalf("applied after restore %d", g.applied.Load())
	}

	// A corrupt snapshot leaves the state alone.
	before := dump(t, g)
	if err := g.Restore(readCloser{bytes.NewReader([]byte("garbage"))}); err == nil {
		t.Fatal("restored garbage")
	}
	if !bytes.Equal(dump(t, g), before) {
		t.Fatal("failed restore changed the state")
	}
}

func TestDecodeSnapshotRejects(t *testing.T) {
	ver := func(v uint64) string {
		b, _ := json.Marshal(snapshotRecord{Version: &api.BundleVersion{VersionInfo: api.VersionInfo{Version: v}}})
		return string(b)
	}
	for _, tc := range []struct{ name, data string }{
		{"empty", ``},
		{"future format", `{"format":2}`},
		{"short", `{"format":1,"versions":1}`},
		{"versions out of order", `{"format":1,"versions":2}` + "\n" + ver(1) + "\n" + ver(3)},
		{"wrong record kind", `{"format":1,"nodes":1}` + "\n" + ver(1)},
		{"entity without id", `{"format":1,"entities":1}` + "\n" + `{"entity":{"type":"u"}}`},
		{"two fields", `{"format":1,"nodes":1}` + "\n" + `{"node":{"id":"n"},"entity":{"type":"u","id":"x"}}`},
		{"unknown field", `{"format":1,"nodes":1}` + "\n" + `{"agent":{}}`},
		{"trailing", `{"format":1}` + "\n" + `{}`},
		{"negative", `{"format":1,"nodes":-1}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := decodeSnapshot(bytes.NewReader([]byte(tc.data))); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

type readCloser struct {
	r interface{ Read([]byte) (int, error) }
}

func (r readCloser) Read(p []byte) (int, error) { return r.r.Read(p) }
func (r readCloser) Close() error               { return nil }

func TestHashFiles(t *testing.T) {
	for _, tc := range []struct {
		name  string
		a, b  []api.File
		equal bool
	}{
		{"order does not matter", files("a", "1", "b", "2"), files("b", "2", "a", "1"), true},
		{"content matters", files("a", "1"), files("a", "2"), false},
		{"name matters", files("a", "1"), files("b", "1"), false},
		{"boundaries matter", files("ab", "c"), files("a", "bc"), false},
		{"split files differ from joined", files("a", "xy"), files("a", "x", "b", "y"), false},
		{"empty data vs none", []api.File{{Name: "a"}}, []api.File{{Name: "a", Data: []byte{}}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]api.File(nil), tc.b...)
			ha, hb := HashFiles(tc.a), HashFiles(tc.b)
			if (ha == hb) != tc.equal {
				t.Fatalf("%s vs %s", ha, hb)
			}
			if !reflect.DeepEqual(in, tc.b) {
				t.Fatal("HashFiles reordered its input")
			}
			if len(ha) != 64 {
				t.Fatalf("hash %q is not hex sha256", ha)
			}
		})
	}
}

// FuzzApply feeds arbitrary log entries to a seeded state machine: it must
// never panic; a rejected entry changes nothing; an accepted one moves the
// revision by exactly one.
func FuzzApply(f *testing.F) {
	for _, c := range seedCommands(f) {
		f.Add(c)
	}
	for _, s := range []string{
		`{"type":"bundle.rollback","payload":{"to":2}}`,
		`{"type":"entities.put","payload":{"entities":[{"type":"u","id":"1","properties":{"n":1e400}}]}}`,
		`{"type":"x"}`, `{}`, `[]`, `"str"`, `{"type":"node.set","payload":null}`,
		`{"type":"approval.consume","payload":{"id":"ap-pending","invocation_id":"i","time":"2025-01-02T03:05:05Z"}}`,
		`{"type":"kill.set","payload":{"kill":{"id":"k","scope":"tenant","target":"acme","reason":"r","by":"b","created_at":"2025-01-02T03:04:05Z","active":true}}}`,
		`{"type":"sandbox.place","payload":{"placements":[{"agent":"a1","node":"n1","from":0}],"time":"2025-01-02T03:04:05Z"}}`,
		`{"type":"sandbox.timer.set","payload":{"agent":"a1","epoch":1,"op":"set","name":"t","due":"2025-01-02T03:04:05Z"}}`,
		`{"type":"sandbox.kv.put","payload":{"agent":"a1","epoch":1,"key":"k","value":"dg=="}}`,
	} {
		f.Add([]byte(s))
	}
	for _, c := range gatewaySeedCommands(f) {
		f.Add(c)
	}
	for _, c := range gatewayFuzzSeeds(f) {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := gatewayFSM(t)
		before, rev := dump(t, m), m.applied.Load()
		switch r := applyRaw(m, data).(type) {
		case error:
			if !bytes.Equal(dump(t, m), before) || m.applied.Load() != rev {
				t.Fatalf("rejected entry (%v) changed the state", r)
			}
		case applyResult:
			if r.Revision != rev+1 || m.applied.Load() != rev+1 {
				t.Fatalf("accepted entry moved revision %d → %d", rev, r.Revision)
			}
			// What was applied must survive a snapshot round trip.
			snap, _ := m.Snapshot()
			var buf bytes.Buffer
			if err := snap.(*fsmSnapshot).write(&buf); err != nil {
				t.Fatalf("persist: %v", err)
			}
			g := newFSM(nil)
			if err := g.Restore(readCloser{&buf}); err != nil {
				t.Fatalf("restore of an applied state: %v", err)
			}
			if !bytes.Equal(dump(t, g), dump(t, m)) {
				t.Fatal("snapshot round trip differs")
			}
		default:
			t.Fatalf("response %T", r)
		}
	})
}

// FuzzDecodeSnapshot: arbitrary snapshot bytes never panic the decoder.
func FuzzDecodeSnapshot(f *testing.F) {
	m := gatewayFSM(f)
	m.mu.RLock()
	s := m.captureLocked()
	m.mu.RUnlock()
	var buf bytes.Buffer
	if err := s.encode(&buf); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte(`{"format":1,"entities":1}` + "\n" + `{"entity":{"type":"u","id":"x"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = decodeSnapshot(bytes.NewReader(data))
	})
}

func BenchmarkEntity(b *testing.B) {
	m := newFSM(nil)
	var es []api.Entity
	for i := range 10000 {
		es = append(es, api.Entity{Type: "user", ID: fmt.Sprint("u", i), Properties: map[string]any{"i": i}})
	}
	if err, ok := applyRaw(m, mustCmd(b, cmdEntitiesPut, entitiesPutCmd{Entities: es})).(error); ok {
		b.Fatal(err)
	}
	s := &Store{fsm: m}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, ok := s.Entity("user", "u4242"); !ok {
				b.Fatal("missing")
			}
		}
	})
}
