package store

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

type raftDescription struct{}

func (raftDescription) String() string { return "Node at 127.0.0.1:8300 [Candidate]" }

// raft's log lines through the adapter read as hclog would print them:
// formatted values, Stringers as text, and one "node" key (the node's id).
func TestHCLoggerArgs(t *testing.T) {
	var buf bytes.Buffer
	base := slog.New(slog.NewJSONHandler(&buf, nil)).With("node", "n1")
	l := newHCLogger(base.With("component", "raft"))
	servers := []raft.Server{{Suffrage: raft.Voter, ID: "n1", Address: "127.0.0.1:8300"}}
	l.Info("initial configuration", "index", 0, "servers", hclog.Fmt("%+v", servers))
	l.Info("entering candidate state", "node", raftDescription{}, "term", 2)
	l.Named("snapshot").With("size", hclog.Hex(255)).Warn("quoted", "path", hclog.Quote("a b"))

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines:\n%s", len(lines), buf.String())
	}
	for _, line := range lines {
		if n := strings.Count(line, `"node":`); n != 1 {
			t.Errorf("%d \"node\" keys in %s", n, line)
		}
	}
	var first, second, third map[string]any
	for i, m := range []*map[string]any{&first, &second, &third} {
		if err := json.Unmarshal([]byte(lines[i]), m); err != nil {
			t.Fatal(err)
		}
	}
	if s, ok := first["servers"].(string); !ok || !strings.Contains(s, "ID:n1") || strings.Contains(s, "%") {
		t.Errorf("servers: %#v, want the formatted list (%s)", first["servers"], lines[0])
	}
	if second["raft_node"] != "Node at 127.0.0.1:8300 [Candidate]" || second["node"] != "n1" {
		t.Errorf("raft's node: %s", lines[1])
	}
	if third["size"] != "0xff" || third["path"] != `"a b"` || third["logger"] != "snapshot" {
		t.Errorf("wrappers: %s", lines[2])
	}
}
