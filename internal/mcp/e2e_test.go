package mcp_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func TestListFilteredAndPrefixed(t *testing.T) {
	e := setup(t)
	bot := toolNames(t, e.goClient("bot", nil))
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
	_ = mcp.Implementation{}
}
