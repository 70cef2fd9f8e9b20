package mcp_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/audit"
	"github.com/aibos/kernel/internal/node/nodetest"
)

func TestListFilteredAndPrefixed(t *testing.T) {
	e := setup(t)
	s := e.goClient("bot", nil)
	// The SDK serves 2026-07-28 only statelessly; the kernel keeps
	// sessions, so a client negotiates 2025-11-25.
	if v := s.InitializeResult().ProtocolVersion; v != "2025-11-25" {
		t.Errorf("the Go SDK's client speaks %s with the kernel, want 2025-11-25", v)
	}
	bot := toolNames(t, s)
	for _, want := range []string{"everything.echo", "everything.get-sum", "everything.trigger-long-running-operation", "fs.write_file", "fs.read_text_file"} {
		if !slices.Contains(bot, want) {
			t.Errorf("bot's tools/list lacks %s: %v", want, bot)
		}
	}
	if slices.Contains(bot, "everything.get-env") {
		t.Errorf("bot's list shows everything.get-env, which policy denies it outright: %v", bot)
	}
	if got := toolNames(t, e.goClient("narrow", nil)); !slices.Equal(got, []string{"everything.echo"}) {
		t.Errorf("narrow (capability everything.echo) lists %v, want only everything.echo", got)
	}
}

func TestAllowDenyGo(t *testing.T) {
	e := setup(t)
	t.Setenv("AIBOS_KERNEL_SECRET", "kernel-env-must-not-leak")
	s := e.goClient("bot", nil)
	if r := call(t, s, "everything.echo", map[string]any{"message": "hello kernel"}); r.IsError || !strings.Contains(text(r), "hello kernel") {
		t.Errorf("echo: %+v %q", r, text(r))
	}
	if r := call(t, s, "everything.get-sum", map[string]any{"a": 2, "b": 40}); r.IsError || !strings.Contains(text(r), "42") {
		t.Errorf("get-sum: %q", text(r))
	}
	r := call(t, s, "everything.get-env", map[string]any{})
	if !r.IsError || errCode(r) != "denied" || strings.Contains(text(r), "kernel-env-must-not-leak") {
		t.Errorf("get-env as bot: want denied, got %v %q", errCode(r), text(r))
	}
	// Even where policy allows it, the server sees only its declared env.
	r = call(t, e.goClient("admin", nil), "everything.get-env", map[string]any{})
	if r.IsError || !strings.Contains(text(r), "only-this") || strings.Contains(text(r), "kernel-env-must-not-leak") || strings.Contains(text(r), "PATH") {
		t.Errorf("get-env as admin: want only the declared environment, got %q", text(r))
	}
	// An invalid input is refused by the kernel before the server.
	if r := call(t, s, "everything.get-sum", map[string]any{"a": "x"}); !r.IsError || errCode(r) != "invalid_input" {
		t.Errorf("get-sum with a string: %v %q", errCode(r), text(r))
	}
}

func TestRateLimit(t *testing.T) {
	e := setup(t)
	s := e.goClient("bot", nil)
	for i := range 2 {
		if r := call(t, s, "everything.get-annotated-message", map[string]any{"messageType": "success"}); r.IsError {
			t.Fatalf("call %d: %q", i, text(r))
		}
	}
	r := call(t, s, "everything.get-annotated-message", map[string]any{"messageType": "success"})
	if !r.IsError || errCode(r) != "rate_limited" || !strings.Contains(text(r), "resets at") {
		t.Errorf("third call: want rate_limited with the reset time, got %v %q", errCode(r), text(r))
	}
}

func TestUnknownMethodAndOtherMethods(t *testing.T) {
	e := setup(t)
	s := e.goClient("bot", nil)
	// resources/list is decided as mcp.resources.list (allowed here).
	if _, err := s.ListResources(context.Background(), nil); err != nil {
		t.Errorf("resources/list: %v", err)
	}
	res := e.tsClient("bot", []map[string]any{{"method": "aibos/unknown"}, {"method": "ping"}})
	if res[0]["error"] == nil {
		t.Errorf("unknown method: want an error, got %v", res[0])
	}
	if res[1]["error"] != nil {
		t.Errorf("ping: want it passed, got %v", res[1])
	}
}

func TestStructuredContentAndCancellationForwarded(t *testing.T) {
	e := setup(t)
	s := e.goClient("bot", nil)
	r := call(t, s, "everything.get-structured-content", map[string]any{"location": "Chicago"})
	if r.IsError || r.StructuredContent == nil {
		t.Fatalf("get-structured-content: want structuredContent, got %+v %q", r, text(r))
	}
	// The client gives up: the kernel cancels the server's request and
	// records the invocation as cancelled.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	_, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "everything.trigger-long-running-operation", Arguments: map[string]any{"duration": 30, "steps": 30}})
	if err == nil || time.Since(start) > 20*time.Second {
		t.Fatalf("cancelled call: %v after %s", err, time.Since(start))
	}
	deadline := time.Now().Add(nodetest.WaitLong)
	for {
		recs, _ := e.n.Audit.Query(audit.Filter{Kind: "mcp", Action: "everything.trigger-long-running-operation"})
		if len(recs) > 0 && recs[0].Status == api.InvocationCancelled {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no cancelled record: %+v", recs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestServerMethodsAudited: a method other than tools/call is decided as
// mcp.<method> on this server as its resource, and recorded.
func TestServerMethodsAudited(t *testing.T) {
	e := setup(t)
	s := e.goClient("narrow", nil)
	toolNames(t, s)
	recs, err := e.n.Audit.Query(audit.Filter{Kind: "mcp", Action: "mcp.tools.list"})
	if err != nil || len(recs) == 0 {
		t.Fatalf("no record of tools/list: %v %v", recs, err)
	}
	if r := recs[0]; r.Agent != "narrow" || r.Decision != "allow" || r.Resource != "mcp_server:"+e.url() || !strings.Contains(r.Reason, "session") {
		t.Fatalf("record of tools/list: %+v", r)
	}
}
