package store

import (
	"bytes"
	"errors"
	"testing"

	"github.com/aibos/kernel/api"
)

func agentManifest(id, version string, caps ...string) api.AgentManifest {
	return api.AgentManifest{
		ID: id, Name: "Agent " + id, Tenant: "acme", Owner: "alice", Version: version,
		Capabilities: caps, Labels: map[string]string{"team": "data"},
		Skills:    []api.AgentSkill{{ID: "sql", Name: "SQL", Tags: []string{"query"}}},
		Endpoints: []api.AgentEndpoint{{URL: "https://a.example/a2a", Protocol: "a2a"}},
		Sandbox:   map[string]any{"network": "none"},
	}
}

func applyOK(t *testing.T, f *fsm, typ string, payload any) applyResult {
	t.Helper()
	switch r := applyRaw(f, mustCmd(t, typ, payload)).(type) {
	case applyResult:
		return r
	case error:
		t.Fatalf("%s: %v", typ, r)
	}
	t.Fatalf("%s: no result", typ)
	return applyResult{}
}

func applyErr(t *testing.T, f *fsm, want error, typ string, payload any) {
	t.Helper()
	before := dump(t, f)
	err, _ := applyRaw(f, mustCmd(t, typ, payload)).(error)
	if !errors.Is(err, want) {
		t.Fatalf("%s: got %v, want %v", typ, err, want)
	}
	if !bytes.Equal(dump(t, f), before) {
		t.Fatalf("rejected %s changed the state", typ)
	}
}

func TestAgentCommands(t *testing.T) {
	f := newFSM(nil)
	r := applyOK(t, f, cmdAgentRegister, agentRegisterCmd{Manifest: agentManifest("a1", "1", "data.*"), TokenHash: TokenHash("tok1"), Time: t0})
	if a := r.Agent; a.State != api.AgentActive || !a.HasCredential || a.Revision != 1 || len(a.Versions) != 1 {
		t.Fatalf("registered %+v", a)
	}
	props := f.st.agents["a1"].props
	if props["tenant"] != "acme" || props["version"] != "1" || props["state"] != api.AgentActive {
		t.Fatalf("props %v", props)
	}

	// A version is immutable; a bad manifest, an unknown agent and a
	// credential in use are refused, and none of them changes anything.
	applyErr(t, f, ErrAgentConflict, cmdAgentRegister, agentRegisterCmd{Manifest: agentManifest("a1", "1", "*"), TokenHash: "x", Time: t0})
	applyErr(t, f, ErrBadCommand, cmdAgentRegister, agentRegisterCmd{Manifest: agentManifest("a2", "1", "data.**"), TokenHash: "x", Time: t0})
	applyErr(t, f, ErrBadCommand, cmdAgentRegister, agentRegisterCmd{Manifest: agentManifest("a2", "", "data.*"), TokenHash: "x", Time: t0})
	applyErr(t, f, ErrBadCommand, cmdAgentRegister, agentRegisterCmd{Manifest: agentManifest("a2", "1"), Time: t0})
	applyErr(t, f, ErrAgentConflict, cmdAgentRegister, agentRegisterCmd{Manifest: agentManifest("a2", "1"), TokenHash: TokenHash("tok1"), Time: t0})
	applyErr(t, f, ErrNotFound, cmdAgentUpdate, agentUpdateCmd{ID: "nope", Time: t0})
	applyErr(t, f, ErrNotFound, cmdAgentRetire, agentRetireCmd{ID: "nope", Time: t0})

	// A new version replaces the record, keeps the history and takes the
	// new credential.
	r = applyOK(t, f, cmdAgentRegister, agentRegisterCmd{Manifest: agentManifest("a1", "2", "data.query"), TokenHash: TokenHash("tok2"), Time: t0})
	if a := r.Agent; a.Version != "2" || len(a.Versions) != 2 || a.Capabilities[0] != "data.query" {
		t.Fatalf("new version %+v", a)
	}
	if _, ok := f.st.agentTokens[TokenHash("tok1")]; ok {
		t.Fatal("old credential still indexed")
	}

	desc := "reads tables"
	r = applyOK(t, f, cmdAgentUpdate, agentUpdateCmd{ID: "a1", Description: &desc, Labels: map[string]string{}, Time: t0})
	if a := r.Agent; a.Description != desc || a.Labels != nil || a.Owner != "alice" {
		t.Fatalf("updated %+v", a)
	}
	applyOK(t, f, cmdAgentCredentialSet, agentCredentialCmd{ID: "a1", TokenHash: TokenHash("tok3"), Time: t0})
	if f.st.agentTokens[TokenHash("tok3")] != "a1" || len(f.st.agentTokens) != 1 {
		t.Fatalf("tokens %v", f.st.agentTokens)
	}
	applyOK(t, f, cmdAgentRegister, agentRegisterCmd{Manifest: agentManifest("b1", "1"), TokenHash: TokenHash("b"), Time: t0})
	r = applyOK(t, f, cmdAgentRetire, agentRetireCmd{ID: "a1", Time: t0})
	if a := r.Agent; a.State != api.AgentRetired || a.HasCredential {
		t.Fatalf("retired %+v", a)
	}
	if f.st.agents["a1"].props["state"] != api.AgentRetired {
		t.Fatal("policies do not see the retirement")
	}
	applyErr(t, f, ErrAgentConflict, cmdAgentRetire, agentRetireCmd{ID: "a1", Time: t0})
	applyErr(t, f, ErrAgentConflict, cmdAgentCredentialSet, agentCredentialCmd{ID: "a1", TokenHash: "y", Time: t0})
	applyErr(t, f, ErrAgentConflict, cmdAgentRegister, agentRegisterCmd{Manifest: agentManifest("a1", "3"), TokenHash: "z", Time: t0})

	// Snapshot round trip: equal bytes, and the derived token index and
	// properties come back.
	snap, _ := f.Snapshot()
	var buf bytes.Buffer
	if err := snap.(*fsmSnapshot).write(&buf); err != nil {
		t.Fatal(err)
	}
	g := newFSM(nil)
	if err := g.Restore(readCloser{&buf}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dump(t, g), dump(t, f)) {
		t.Fatalf("restored state differs:\n%s\nwant\n%s", dump(t, g), dump(t, f))
	}
	if g.st.agentTokens[TokenHash("b")] != "b1" || len(g.st.agentTokens) != 1 || g.st.agents["a1"].props["state"] != api.AgentRetired {
		t.Fatalf("restored index %v", g.st.agentTokens)
	}
}

func TestSnapshotWithoutAgentsUnchanged(t *testing.T) {
	// A state without agents encodes without the agents header field, as
	// before the registry existed.
	if b := dump(t, seededFSM(t)); bytes.Contains(b, []byte(`"agents"`)) {
		t.Fatalf("snapshot without agents mentions them: %s", b)
	}
}
