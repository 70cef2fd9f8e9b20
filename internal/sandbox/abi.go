package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Bounds of what a guest can pass to a host call.
const (
	maxActionName = 256
	maxLogBytes   = 4 << 10
	maxTimerName  = 128
	maxTimers     = 64
	maxDelayMS    = 24 * 60 * 60 * 1000 // a day
	// maxInvokeBody matches the HTTP API's bound (gateway.MaxInvokeBody).
	maxInvokeBody = 1 << 20
)

// Error codes a host call leaves in the result buffer with a negative
// return; stable for guests.
const (
	codeBadArgument = "bad_argument"
	codeQuota       = "host_call_quota"
	codeNotFound    = "not_found"
	codeStateQuota  = "state_quota"
	codeUnavailable = "unavailable"
	codeStaleEpoch  = "stale_epoch"
)

// memory is the part of a guest's memory the decoders read: wazero's
// api.Memory has it.
type memory interface {
	Read(offset, byteCount uint32) ([]byte, bool)
}

// hostError is a host call's refusal, as the guest decodes it.
type hostError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *hostError) Error() string { return e.Code + ": " + e.Message }

func badArg(format string, a ...any) *hostError {
	return &hostError{Code: codeBadArgument, Message: fmt.Sprintf(format, a...)}
}

// readBytes reads a guest buffer, bounded by max; the result aliases the
// guest's memory, so callers copy what they keep.
func readBytes(m memory, ptr, n uint32, max int, what string) ([]byte, *hostError) {
	if int64(n) > int64(max) {
		return nil, badArg("%s is %d bytes; at most %d", what, n, max)
	}
	if n == 0 {
		return nil, nil
	}
	b, ok := m.Read(ptr, n)
	if !ok {
		return nil, badArg("%s at [%d, %d) is outside the guest's memory", what, ptr, uint64(ptr)+uint64(n))
	}
	return b, nil
}

// readString reads a non-empty UTF-8 string.
func readString(m memory, ptr, n uint32, max int, what string) (string, *hostError) {
	b, err := readBytes(m, ptr, n, max, what)
	if err != nil {
		return "", err
	}
	if len(b) == 0 {
		return "", badArg("%s is empty", what)
	}
	if !utf8.Valid(b) {
		return "", badArg("%s is not valid UTF-8", what)
	}
	return string(b), nil
}

// decodeInvoke reads an invoke call's action name and body (an
// api.InvokeRequest, as POST /v1/actions/{name}/invoke takes; empty means
// {}). The body is checked to be one JSON object here; the gateway decodes
// it exactly as it decodes an HTTP body.
func decodeInvoke(m memory, namePtr, nameLen, bodyPtr, bodyLen uint32) (string, []byte, *hostError) {
	name, err := readString(m, namePtr, nameLen, maxActionName, "action name")
	if err != nil {
		return "", nil, err
	}
	body, err := readBytes(m, bodyPtr, bodyLen, maxInvokeBody, "invoke body")
	if err != nil {
		return "", nil, err
	}
	if len(body) > 0 {
		var obj map[string]json.RawMessage
		if e := json.Unmarshal(body, &obj); e != nil || obj == nil {
			return "", nil, badArg("invoke body is not a JSON object (an InvokeRequest: {input, resource?, context?, approval_id?})")
		}
	}
	return name, append([]byte(nil), body...), nil
}

// decodeTimer reads timer_set's name and delay.
func decodeTimer(m memory, ptr, n uint32, delayMS int64) (string, *hostError) {
	name, err := readString(m, ptr, n, maxTimerName, "timer name")
	if err != nil {
		return "", err
	}
	if delayMS < 0 || delayMS > maxDelayMS {
		return "", badArg("timer delay %d ms: between 0 and %d", delayMS, maxDelayMS)
	}
	return name, nil
}

var errNoMemory = errors.New("sandbox: guest has no memory export")
