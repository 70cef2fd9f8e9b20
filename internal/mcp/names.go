// Package mcp is the kernel's MCP gateway. Upstream, it keeps one MCP
// client session per mcp orchestra (a process it starts over stdio, or a
// streamable HTTP server), pins every tool's definition by digest and makes
// each tool a catalog action; the gateway's pipeline performs those actions
// through it. Downstream, it serves /mcp (streamable HTTP) to agents, who
// authenticate with their aibos_ token: tools/list shows what the agent may
// call, tools/call runs the gateway's pipeline, every other method is
// decided with the AuthZEN COAZ-MCP binding's default mapping. See
// DESIGN.md.
package mcp

import (
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/aibos/kernel/internal/policy"
)

// encodedPrefix starts the action suffix of a tool whose name is outside
// the action grammar: "x--" and the hex digits of the name's bytes.
const encodedPrefix = "x--"

// ToolAction is the catalog action of an orchestra's tool:
// "<orchestra>.<tool>". A tool name made of letters, digits, '_', '-' and
// '.' (with no empty dot-separated part) is kept as it is; any other name,
// and a name that starts with "x--", becomes "x--" followed by the
// lowercase hex of its UTF-8 bytes ("get weather" → "x--6765742077656174686572"),
// so the mapping is reversible (ToolName) and never collides.
func ToolAction(orchestra, tool string) (string, error) {
	suffix := tool
	if !plainToolName(tool) {
		suffix = encodedPrefix + hex.EncodeToString([]byte(tool))
	}
	name := orchestra + "." + suffix
	if err := policy.ValidateActionName(name); err != nil {
		return "", fmt.Errorf("tool %q of orchestra %q: %w", tool, orchestra, err)
	}
	return name, nil
}

// ToolName is the tool of an action of orchestra, the inverse of ToolAction.
func ToolName(orchestra, action string) (string, error) {
	suffix, ok := strings.CutPrefix(action, orchestra+".")
	if !ok || suffix == "" {
		return "", fmt.Errorf("action %q is not in orchestra %q", action, orchestra)
	}
	if h, ok := strings.CutPrefix(suffix, encodedPrefix); ok {
		b, err := hex.DecodeString(h)
		if err != nil {
			return "", fmt.Errorf("action %q: %q after %q is not hex: %w", action, h, encodedPrefix, err)
		}
		return string(b), nil
	}
	return suffix, nil
}

func plainToolName(t string) bool {
	if t == "" || strings.HasPrefix(t, encodedPrefix) {
		return false
	}
	for seg := range strings.SplitSeq(t, ".") {
		if seg == "" {
			return false
		}
		for _, c := range seg {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
				return false
			}
		}
	}
	return true
}
