package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aibos/kernel/internal/audit"
)

// writeAuditLog writes n records into DATA/audit and returns DATA.
func writeAuditLog(t *testing.T, n int) string {
	t.Helper()
	data := t.TempDir()
	l, err := audit.Open(audit.Config{Dir: filepath.Join(data, "audit"), Node: "n1", SegmentBytes: 2 << 10})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		r := &audit.Record{Kind: audit.KindDecision, Agent: fmt.Sprint("agent-", i%3), Action: fmt.Sprintf("crm.read.%03d", i),
			Decision: "allow", Version: 2}
		if _, err := l.AppendSync(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return data
}

func runAudit(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(append([]string{"audit"}, args...), strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestAuditVerifyFindsTampering(t *testing.T) {
	data := writeAuditLog(t, 40)
	if code, out, errs := runAudit("verify", "--data", data); code != exitOK || !strings.HasPrefix(out, "ok: 40 records") {
		t.Fatalf("intact log: exit %d\n%s%s", code, out, errs)
	}
	// Change record 17's action in place: its segment's checksum breaks.
	segs, _ := filepath.Glob(filepath.Join(data, "audit", "*.audit"))
	var seg string
	var raw []byte
	for _, s := range segs {
		b, _ := os.ReadFile(s)
		if i := bytes.Index(b, []byte("crm.read.016")); i >= 0 {
			b[i+len("crm.read.01")] = '9'
			seg, raw = s, b
			break
		}
	}
	if seg == "" {
		t.Fatal("record not found in the segments")
	}
	os.WriteFile(seg, raw, 0o644)
	code, out, errs := runAudit("verify", "--data", data)
	if code != exitFailed {
		t.Fatalf("tampered log: exit %d\n%s%s", code, out, errs)
	}
	want := "PROBLEM " + filepath.Base(seg) + " seq 17 offset "
	if !strings.Contains(out, want) || !strings.Contains(out, "checksum") {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
}

func TestAuditQueryAndExport(t *testing.T) {
	data := writeAuditLog(t, 30)
	code, out, errs := runAudit("query", "--data", data, "--agent", "agent-1", "--limit", "3", "--desc")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var r audit.Record
	if len(lines) != 3 || json.Unmarshal([]byte(lines[0]), &r) != nil || r.Seq != 29 || r.Agent != "agent-1" {
		t.Fatalf("query output:\n%s", out)
	}
	code, out, _ = runAudit("export", "--data", data, "--since", "1h")
	if code != exitOK || strings.Count(out, "\n") != 30 {
		t.Fatalf("export: exit %d, %d lines", code, strings.Count(out, "\n"))
	}

	// The same through a node's handler, on loopback.
	l, err := audit.Open(audit.Config{Dir: filepath.Join(data, "audit")})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	srv := httptest.NewServer(l.Handler())
	defer srv.Close()
	code, out, errs = runAudit("query", "--server", srv.URL, "--action", "crm.read.004")
	if code != exitOK || json.Unmarshal([]byte(out), &r) != nil || r.Seq != 5 {
		t.Fatalf("remote query: exit %d %s%s", code, out, errs)
	}
	code, out, _ = runAudit("export", "--server", srv.URL, "--limit", "4")
	if code != exitOK || strings.Count(out, "\n") != 4 {
		t.Fatalf("remote export: exit %d\n%s", code, out)
	}
	code, out, _ = runAudit("verify", "--server", srv.URL)
	if code != exitOK || !strings.HasPrefix(out, "ok: 30 records") {
		t.Fatalf("remote verify: exit %d\n%s", code, out)
	}
}

func TestAuditUsageErrors(t *testing.T) {
	data := writeAuditLog(t, 1)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "Usage"},
		{[]string{"bogus"}, "unknown subcommand"},
		{[]string{"verify", "--data", t.TempDir()}, "data directory"},
		{[]string{"query", "--data", data, "--since", "yesterday"}, "RFC 3339"},
		{[]string{"query", "--data", data, "--server", "http://127.0.0.1:1"}, "not both"},
		{[]string{"query", "--data", data, "--limit", "20000"}, "limit"},
		{[]string{"verify", "extra"}, "unexpected argument"},
	} {
		code, _, errs := runAudit(tc.args...)
		if code != exitInvalid || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, errs, tc.want)
		}
	}
}
