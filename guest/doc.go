// Package guest is the kernel's guest SDK for agents that run inside the
// kernel's WebAssembly sandbox (internal/sandbox). Build an agent with the
// standard Go toolchain:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o agent.wasm .
//
// and deploy it with `aibos agent deploy ID --module agent.wasm`. The
// agent's program registers its tick handler in main's init or in main
// itself (main runs once, when the instance starts):
//
//	func main() {}
//	func init() {
//		guest.Handle(func(t guest.Tick) error {
//			out, err := guest.Invoke("data.query", map[string]any{"table": "t1"})
//			...
//		})
//	}
//
// The only door out of the sandbox is the host module "aibos/v1": every
// Invoke is an action decided, metered and audited by the kernel's gateway
// exactly like POST /v1/actions/{name}/invoke, with the agent as subject.
// The guest never holds a credential, has no filesystem, sockets or
// environment, and never blocks: to wait, it sets a timer and returns.
//
// The wire types in this file build on every platform (the kernel and the
// fuzz tests decode them); the host calls build for GOOS=wasip1 only.
package guest

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Kinds of tick.
const (
	TickStart   = "start"   // the instance started (deploy, start, wake after a crash)
	TickMessage = "message" // a message was sent to the agent
	TickTimer   = "timer"   // a timer the agent set fired
)

// Tick is one event the kernel delivers to the agent.
type Tick struct {
	Kind string `json:"kind"`
	// Seq numbers the agent's ticks, from 1, per instance.
	Seq uint64 `json:"seq"`
	// Version is the agent version this instance runs.
	Version string `json:"version"`
	// Timer is the name of the timer that fired (Kind timer).
	Timer string `json:"timer,omitempty"`
	// Message is the message's body (Kind message).
	Message json.RawMessage `json:"message,omitempty"`
	// Config is the manifest's sandbox.config: the only environment a
	// guest has.
	Config map[string]any `json:"config,omitempty"`
}

// DecodeTick decodes a tick as the kernel sends it.
func DecodeTick(b []byte) (Tick, error) {
	var t Tick
	if err := json.Unmarshal(b, &t); err != nil {
		return Tick{}, fmt.Errorf("guest: tick: %w", err)
	}
	switch t.Kind {
	case TickStart, TickMessage, TickTimer:
	default:
		return Tick{}, fmt.Errorf("guest: tick: unknown kind %q", t.Kind)
	}
	return t, nil
}

// Result is what Invoke answers: the gateway's api.InvokeResponse, of
// which the guest sees the fields below.
type Result struct {
	InvocationID string          `json:"invocation_id"`
	Action       string          `json:"action"`
	Agent        string          `json:"agent"`
	Status       string          `json:"status"`
	Decision     string          `json:"decision"`
	Version      uint64          `json:"version"`
	Reasons      []Reason        `json:"reasons,omitempty"`
	Result       json.RawMessage `json:"result,omitempty"`
	ApprovalID   string          `json:"approval_id,omitempty"`
	ArgsDigest   string          `json:"args_digest"`
	Cost         float64         `json:"cost,omitempty"`
	Error        *Error          `json:"error,omitempty"`
	// HTTPStatus is the status the same call gets over HTTP.
	HTTPStatus int `json:"http_status"`
}

// Reason is one rule that determined a decision.
type Reason struct {
	Policy  string `json:"policy,omitempty"`
	Rule    string `json:"rule,omitempty"`
	Layer   string `json:"layer,omitempty"`
	Effect  string `json:"effect,omitempty"`
	Message string `json:"message,omitempty"`
}

// Error is an error of the gateway or of a host call: a stable code and a
// message that says what to do.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// ErrNotFound is returned by Get for a key that is not set.
var ErrNotFound = errors.New("guest: key not found")

// DecodeResult decodes the answer of an invoke host call.
func DecodeResult(b []byte) (Result, error) {
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return Result{}, fmt.Errorf("guest: invoke result: %w", err)
	}
	return r, nil
}

// DecodeError decodes the error a host call left after returning a
// negative status.
func DecodeError(b []byte) *Error {
	var e Error
	if err := json.Unmarshal(b, &e); err != nil || e.Code == "" {
		return &Error{Code: "host_error", Message: string(b)}
	}
	return &e
}
