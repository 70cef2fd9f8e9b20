package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/aibos/kernel/api"
)

func modulePut(agent, version string, wasm []byte) sandboxModulePutCmd {
	sum := sha256.Sum256(wasm)
	return sandboxModulePutCmd{Agent: agent, Version: version, SHA256: hex.EncodeToString(sum[:]), Wasm: wasm, Time: t0}
}

func TestSandboxCommands(t *testing.T) {
	f := newFSM(nil)
	applyOK(t, f, cmdAgentRegister, agentRegisterCmd{Manifest: agentManifest("a1", "1", "data.*"), TokenHash: TokenHash("tok1"), Time: t0})

	// Modules: the newest two are kept; a version other than the current
	// one, a bad digest, an unknown agent and an oversized module are
	// refused without a change.
	for _, b := range []string{"m1", "m2", "m3"} {
		applyOK(t, f, cmdSandboxModulePut, modulePut("a1", "1", []byte(b)))
	}
	r := f.st.sandbox["a1"]
	if len(r.Modules) != 2 || string(r.Modules[0].Wasm) != "m2" || string(r.Modules[1].Wasm) != "m3" {
		t.Fatalf("modules kept: %+v", r.Modules)
	}
	applyErr(t, f, ErrAgentConflict, cmdSandboxModulePut, modulePut("a1", "2", []byte("x")))
	bad := modulePut("a1", "1", []byte("x"))
	bad.SHA256 = strings.Repeat("0", 64)
	applyErr(t, f, ErrBadCommand, cmdSandboxModulePut, bad)
	applyErr(t, f, ErrNotFound, cmdSandboxModulePut, modulePut("nobody", "1", []byte("x")))
	applyErr(t, f, ErrBadCommand, cmdSandboxModulePut, modulePut("a1", "1", make([]byte, MaxModuleBytes+1)))

	// Run state and status.
	applyOK(t, f, cmdSandboxRunSet, sandboxRunSetCmd{Agent: "a1", Desired: api.SandboxRun, Time: t0})
	applyErr(t, f, ErrBadCommand, cmdSandboxRunSet, sandboxRunSetCmd{Agent: "a1", Desired: "maybe"})
	applyOK(t, f, cmdSandboxStatusSet, sandboxStatusSetCmd{Agent: "a1", State: api.RuntimeBackoff, Node: "n1", Restarts: 2, LastError: "trap", Time: t0})

	// Key/value quotas.
	applyOK(t, f, cmdSandboxKVPut, sandboxKVPutCmd{Agent: "a1", Key: "k", Value: []byte("v")})
	applyErr(t, f, ErrQuota, cmdSandboxKVPut, sandboxKVPutCmd{Agent: "a1", Key: "big", Value: make([]byte, MaxKVValueBytes+1)})
	applyErr(t, f, ErrBadCommand, cmdSandboxKVPut, sandboxKVPutCmd{Agent: "a1", Key: ""})
	for i := 0; i < MaxKVBytes/MaxKVValueBytes-1; i++ {
		applyOK(t, f, cmdSandboxKVPut, sandboxKVPutCmd{Agent: "a1", Key: "fill" + string(rune('a'+i)), Value: make([]byte, MaxKVValueBytes)})
	}
	applyErr(t, f, ErrQuota, cmdSandboxKVPut, sandboxKVPutCmd{Agent: "a1", Key: "one-more", Value: make([]byte, MaxKVValueBytes)})
	applyOK(t, f, cmdSandboxKVPut, sandboxKVPutCmd{Agent: "a1", Key: "filla", Delete: true})
	applyOK(t, f, cmdSandboxKVPut, sandboxKVPutCmd{Agent: "a1", Key: "one-more", Value: make([]byte, MaxKVValueBytes)})

	// The snapshot carries all of it, and both replicas apply the next
	// command alike.
	g := roundTrip(t, f)
	if !bytes.Equal(dump(t, f), dump(t, g)) {
		t.Fatal("snapshot round trip changed the sandbox state")
	}
	gr := g.st.sandbox["a1"]
	if gr.Desired != api.SandboxRun || gr.Status.Restarts != 2 || len(gr.Modules) != 2 || string(gr.KV["k"]) != "v" {
		t.Fatalf("restored desired %q, %d restarts, %d modules, k=%q", gr.Desired, gr.Status.Restarts, len(gr.Modules), gr.KV["k"])
	}
	next := mustCmd(t, cmdSandboxKVPut, sandboxKVPutCmd{Agent: "a1", Key: "k", Value: []byte("w")})
	applyRaw(f, next)
	applyRaw(g, next)
	if !bytes.Equal(dump(t, f), dump(t, g)) {
		t.Fatal("replicas diverged after restore")
	}
}

// A status report of an older epoch, applied after a newer one, is stale
// and changes nothing (a deposed leader's "stopped" after the new
// leader's "running").
func TestSandboxStatusOfOlderEpochIsStale(t *testing.T) {
	f := newFSM(nil)
	applyOK(t, f, cmdAgentRegister, agentRegisterCmd{Manifest: agentManifest("a1", "1", "data.*"), TokenHash: TokenHash("tok1"), Time: t0})
	applyOK(t, f, cmdSandboxStatusSet, sandboxStatusSetCmd{Agent: "a1", State: api.RuntimeRunning, Node: "n2", Epoch: 3, Time: t0})
	applyOK(t, f, cmdSandboxStatusSet, sandboxStatusSetCmd{Agent: "a1", State: api.RuntimeStopped, Node: "n1", Epoch: 2, Time: t0})
	if got := f.st.sandbox["a1"].Status; got.State != api.RuntimeRunning || got.Node != "n2" || got.Epoch != 3 {
		t.Fatalf("status %+v; want the epoch 3 report", got)
	}
	applyOK(t, f, cmdSandboxStatusSet, sandboxStatusSetCmd{Agent: "a1", State: api.RuntimeStopped, Node: "n2", Epoch: 3, Time: t0})
	if got := f.st.sandbox["a1"].Status; got.State != api.RuntimeStopped {
		t.Fatalf("status %+v; a report of the same epoch applies", got)
	}
}
