package sandbox

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
	wapi "github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/store"
)

// Origin marks host calls in the audit log.
const Origin = "sandbox"

// callState is the state of one call into the guest (a tick, its init or
// its health check), carried in the context wazero passes to host
// functions.
type callState struct {
	a      *agentRun
	calls  int
	max    int
	result []byte // what result copies out
}

type callKey struct{}

func withCall(ctx context.Context, cs *callState) context.Context {
	return context.WithValue(ctx, callKey{}, cs)
}

// instantiateHost defines aibos/v1 and the WASI functions in e. WASI is
// wazero's, with no filesystem, arguments or environment configured; the
// validator has refused every WASI import outside the allow-list.
func instantiateHost(ctx context.Context, e wazero.Runtime) error {
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, e); err != nil {
		return err
	}
	b := e.NewHostModuleBuilder(HostModule)
	b.NewFunctionBuilder().WithFunc(hostInvoke).Export("invoke")
	b.NewFunctionBuilder().WithFunc(hostLog).Export("log")
	b.NewFunctionBuilder().WithFunc(hostKVGet).Export("kv_get")
	b.NewFunctionBuilder().WithFunc(hostKVPut).Export("kv_put")
	b.NewFunctionBuilder().WithFunc(hostKVDelete).Export("kv_delete")
	b.NewFunctionBuilder().WithFunc(hostNow).Export("now")
	b.NewFunctionBuilder().WithFunc(hostTimerSet).Export("timer_set")
	b.NewFunctionBuilder().WithFunc(hostTimerCancel).Export("timer_cancel")
	b.NewFunctionBuilder().WithFunc(hostResult).Export("result")
	_, err := b.Instantiate(ctx)
	return err
}

// enter counts a host call against the tick's cap and checks the agent's
// epoch: a call that acts or reads state (all but log) is refused from a
// node the agent is no longer placed on in that epoch (place.go; the
// leader checks the calls that act again).
func enter(ctx context.Context) (*callState, *hostError) { return enterCall(ctx, true) }

func enterCall(ctx context.Context, fenced bool) (*callState, *hostError) {
	cs, _ := ctx.Value(callKey{}).(*callState)
	if cs == nil {
		return nil, &hostError{Code: codeUnavailable, Message: "host call outside a tick"}
	}
	cs.calls++
	if cs.calls > cs.max {
		return cs, &hostError{Code: codeQuota, Message: "more than sandbox.max_host_calls host calls in one tick; do the rest in the next tick (set a timer)"}
	}
	if !fenced {
		return cs, nil
	}
	cs.a.mu.Lock()
	epoch := cs.a.epoch
	cs.a.mu.Unlock()
	if herr := cs.a.r.fence(cs.a.id, cs.a.r.cfg.Node, epoch); herr != nil {
		return cs, herr
	}
	return cs, nil
}

// answer leaves b for result and returns its length; fail leaves an error
// and returns minus its length (at least -1).
func (cs *callState) answer(b []byte) int32 {
	cs.result = b
	return int32(len(b))
}

func (cs *callState) fail(e *hostError) int32 {
	b, _ := json.Marshal(e)
	if cs != nil {
		cs.result = b
	}
	return -int32(max(len(b), 1))
}

func failNoState(ctx context.Context, e *hostError) int32 {
	cs, _ := ctx.Value(callKey{}).(*callState)
	return cs.fail(e)
}

// invokeAnswer is the gateway's answer as the guest receives it.
type invokeAnswer struct {
	*api.InvokeResponse
	HTTPStatus int `json:"http_status"`
}

func hostInvoke(ctx context.Context, m wapi.Module, namePtr, nameLen, bodyPtr, bodyLen uint32) int32 {
	cs, herr := enter(ctx)
	if herr != nil {
		return failNoState(ctx, herr)
	}
	name, body, herr := decodeInvoke(m.Memory(), namePtr, nameLen, bodyPtr, bodyLen)
	if herr != nil {
		return cs.fail(herr)
	}
	b, herr := cs.a.r.act(ctx, cs.a.id, hostOp{Op: opInvoke, Epoch: cs.a.placed(), Action: name, Body: append([]byte(nil), body...)})
	if herr != nil {
		return cs.fail(herr)
	}
	return cs.answer(b)
}

func hostLog(ctx context.Context, m wapi.Module, level int32, ptr, n uint32) {
	cs, herr := enterCall(ctx, false)
	if herr != nil {
		return
	}
	b, herr := readBytes(m.Memory(), ptr, min(n, maxLogBytes), maxLogBytes, "log message")
	if herr != nil {
		return
	}
	cs.a.r.log.Log(ctx, slog.Level(level), strings.ToValidUTF8(string(b), "?"), "agent", cs.a.id, "origin", Origin)
}

func hostKVGet(ctx context.Context, m wapi.Module, ptr, n uint32) int32 {
	cs, herr := enter(ctx)
	if herr != nil {
		return failNoState(ctx, herr)
	}
	key, herr := readString(m.Memory(), ptr, n, store.MaxKVKeyBytes, "key")
	if herr != nil {
		return cs.fail(herr)
	}
	v, ok := cs.a.r.cfg.Store.AgentKV(cs.a.id, key)
	if !ok {
		return cs.fail(&hostError{Code: codeNotFound, Message: "no key " + key})
	}
	return cs.answer(v)
}

func kvWrite(ctx context.Context, cs *callState, key string, val []byte, del bool) int32 {
	if _, herr := cs.a.r.act(ctx, cs.a.id, hostOp{Op: opKV, Epoch: cs.a.placed(), Key: key, Value: val, Delete: del}); herr != nil {
		return cs.fail(herr)
	}
	return 0
}

func hostKVPut(ctx context.Context, m wapi.Module, kp, kn, vp, vn uint32) int32 {
	cs, herr := enter(ctx)
	if herr != nil {
		return failNoState(ctx, herr)
	}
	key, herr := readString(m.Memory(), kp, kn, store.MaxKVKeyBytes, "key")
	if herr != nil {
		return cs.fail(herr)
	}
	val, herr := readBytes(m.Memory(), vp, vn, store.MaxKVValueBytes, "value")
	if herr != nil {
		return cs.fail(herr)
	}
	return kvWrite(ctx, cs, key, append([]byte(nil), val...), false)
}

func hostKVDelete(ctx context.Context, m wapi.Module, kp, kn uint32) int32 {
	cs, herr := enter(ctx)
	if herr != nil {
		return failNoState(ctx, herr)
	}
	key, herr := readString(m.Memory(), kp, kn, store.MaxKVKeyBytes, "key")
	if herr != nil {
		return cs.fail(herr)
	}
	return kvWrite(ctx, cs, key, nil, true)
}

func hostNow(ctx context.Context) int64 {
	cs, _ := ctx.Value(callKey{}).(*callState)
	if cs == nil {
		return 0
	}
	return cs.a.r.cfg.Now().UnixNano()
}

func hostTimerSet(ctx context.Context, m wapi.Module, ptr, n uint32, delayMS int64) int32 {
	cs, herr := enter(ctx)
	if herr != nil {
		return failNoState(ctx, herr)
	}
	name, herr := decodeTimer(m.Memory(), ptr, n, delayMS)
	if herr != nil {
		return cs.fail(herr)
	}
	if herr := cs.a.setTimer(ctx, name, time.Duration(delayMS)*time.Millisecond); herr != nil {
		return cs.fail(herr)
	}
	return 0
}

func hostTimerCancel(ctx context.Context, m wapi.Module, ptr, n uint32) int32 {
	cs, herr := enter(ctx)
	if herr != nil {
		return failNoState(ctx, herr)
	}
	name, herr := readString(m.Memory(), ptr, n, maxTimerName, "timer name")
	if herr != nil {
		return cs.fail(herr)
	}
	if herr := cs.a.cancelTimer(ctx, name); herr != nil {
		return cs.fail(herr)
	}
	return 0
}

// hostResult copies the result buffer out; it is not counted as a host
// call (it completes the one before).
func hostResult(ctx context.Context, m wapi.Module, ptr, n uint32) int32 {
	cs, _ := ctx.Value(callKey{}).(*callState)
	if cs == nil {
		return -1
	}
	k := min(int(n), len(cs.result))
	if k > 0 && !m.Memory().Write(ptr, cs.result[:k]) {
		return -1
	}
	return int32(k)
}

// logWriter sends a guest's stdout and stderr to the node's log, a line
// per write, bounded.
type logWriter struct {
	log   *slog.Logger
	agent string
}

func (w *logWriter) Write(p []byte) (int, error) {
	s := string(p[:min(len(p), maxLogBytes)])
	w.log.Info(strings.ToValidUTF8(strings.TrimRight(s, "\n"), "?"), "agent", w.agent, "origin", Origin, "stream", "stdio")
	return len(p), nil
}
