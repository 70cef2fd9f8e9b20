//go:build wasip1

package guest

import (
	"encoding/json"
	"time"
	"unsafe"
)

// The host module aibos/v1; see internal/sandbox/DESIGN.md for the ABI.
// Every call that answers with bytes leaves them in the instance's result
// buffer and returns their length (negative: an error, whose JSON is in the
// buffer); result copies the buffer out.

//go:wasmimport aibos/v1 invoke
func hostInvoke(namePtr, nameLen, inPtr, inLen uint32) int32

//go:wasmimport aibos/v1 log
func hostLog(level int32, ptr, n uint32)

//go:wasmimport aibos/v1 kv_get
func hostKVGet(keyPtr, keyLen uint32) int32

//go:wasmimport aibos/v1 kv_put
func hostKVPut(keyPtr, keyLen, valPtr, valLen uint32) int32

//go:wasmimport aibos/v1 kv_delete
func hostKVDelete(keyPtr, keyLen uint32) int32

//go:wasmimport aibos/v1 now
func hostNow() int64

//go:wasmimport aibos/v1 timer_set
func hostTimerSet(namePtr, nameLen uint32, delayMS int64) int32

//go:wasmimport aibos/v1 timer_cancel
func hostTimerCancel(namePtr, nameLen uint32) int32

//go:wasmimport aibos/v1 result
func hostResult(ptr, n uint32) int32

func ptr(b []byte) uint32 {
	if len(b) == 0 {
		return 0
	}
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}

func sptr(s string) uint32 {
	if len(s) == 0 {
		return 0
	}
	return uint32(uintptr(unsafe.Pointer(unsafe.StringData(s))))
}

// take copies the result buffer of the last host call.
func take(n int32) []byte {
	if n < 0 {
		n = -n
	}
	b := make([]byte, n)
	if n > 0 {
		hostResult(ptr(b), uint32(n))
	}
	return b
}

var handler func(Tick) error

// Handle sets the function that runs every tick. Call it from init or
// main; a tick that arrives with no handler fails.
func Handle(f func(Tick) error) { handler = f }

// health is the agent's health check; nil is healthy.
var health func() error

// HandleHealth sets the agent's health check, which the kernel calls after
// start and periodically; an error marks the agent unhealthy.
func HandleHealth(f func() error) { health = f }

//go:wasmexport aibos_tick
func exportTick(n int32) int32 {
	t, err := DecodeTick(take(n))
	if err == nil {
		if handler == nil {
			Log(LevelError, "no tick handler: call guest.Handle in init or main")
			return 1
		}
		err = handler(t)
	}
	if err != nil {
		Log(LevelError, "tick failed: "+err.Error())
		return 1
	}
	return 0
}

//go:wasmexport aibos_health
func exportHealth() int32 {
	if health == nil {
		return 0
	}
	if err := health(); err != nil {
		Log(LevelWarn, "unhealthy: "+err.Error())
		return 1
	}
	return 0
}

// Log levels.
const (
	LevelDebug int32 = -4
	LevelInfo  int32 = 0
	LevelWarn  int32 = 4
	LevelError int32 = 8
)

// Log writes a line to the node's log, tagged with the agent.
func Log(level int32, msg string) { hostLog(level, sptr(msg), uint32(len(msg))) }

// Invoke asks the kernel to run action with input (marshalled to a JSON
// object; nil is {}). It answers the gateway's response for every outcome
// the gateway decided — denied, held for approval, failed at the backend —
// and an error only when the call could not be made at all (a host call
// quota, a bad input).
func Invoke(action string, input any) (Result, error) {
	body := []byte("{}")
	if input != nil {
		in, err := json.Marshal(input)
		if err != nil {
			return Result{}, err
		}
		body = append(append([]byte(`{"input":`), in...), '}')
	}
	return InvokeRaw(action, body)
}

// InvokeRaw sends body, an InvokeRequest exactly as POST
// /v1/actions/{name}/invoke takes it ({input, resource?, context?,
// approval_id?}).
func InvokeRaw(action string, body []byte) (Result, error) {
	n := hostInvoke(sptr(action), uint32(len(action)), ptr(body), uint32(len(body)))
	b := take(n)
	if n < 0 {
		return Result{}, DecodeError(b)
	}
	return DecodeResult(b)
}

// Get reads the agent's own key/value state (replicated by the kernel).
func Get(key string) ([]byte, error) {
	n := hostKVGet(sptr(key), uint32(len(key)))
	b := take(n)
	if n < 0 {
		e := DecodeError(b)
		if e.Code == "not_found" {
			return nil, ErrNotFound
		}
		return nil, e
	}
	return b, nil
}

// Put writes a key of the agent's state; the write is replicated before
// Put returns. Quotas: see internal/sandbox/DESIGN.md.
func Put(key string, value []byte) error {
	if n := hostKVPut(sptr(key), uint32(len(key)), ptr(value), uint32(len(value))); n < 0 {
		return DecodeError(take(n))
	}
	return nil
}

// Delete removes a key of the agent's state.
func Delete(key string) error {
	if n := hostKVDelete(sptr(key), uint32(len(key))); n < 0 {
		return DecodeError(take(n))
	}
	return nil
}

// Now is the kernel's clock.
func Now() time.Time { return time.Unix(0, hostNow()) }

// SetTimer asks for a timer tick named name after delay; setting a name
// again moves it.
func SetTimer(name string, delay time.Duration) error {
	if n := hostTimerSet(sptr(name), uint32(len(name)), delay.Milliseconds()); n < 0 {
		return DecodeError(take(n))
	}
	return nil
}

// CancelTimer cancels a timer; cancelling one that is not set is not an
// error.
func CancelTimer(name string) error {
	if n := hostTimerCancel(sptr(name), uint32(len(name))); n < 0 {
		return DecodeError(take(n))
	}
	return nil
}
