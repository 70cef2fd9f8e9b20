package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/aibos/kernel/internal/node/nodetest"
)

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "1048576": 1 << 20, "512MiB": 512 << 20, "10GiB": 10 << 30, "2 TiB": 2 << 40,
		"5GB": 5e9, "100KB": 100e3, "64B": 64,
	} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5GiB", "ten", "GiB", "9999999999TiB"} {
		if _, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q) accepted", in)
		}
	}
}

// A second serve on a running node's data directory stops at once and
// says the directory is in use, by whom, and what to do.
func TestServeDataDirInUse(t *testing.T) {
	cfg := nodetest.Config(t, "n1")
	nodetest.Start(t, cfg)
	var out, errb bytes.Buffer
	start := time.Now()
	code := run([]string{"serve", "--data", cfg.DataDir, "--http", "127.0.0.1:0", "--raft", "127.0.0.1:0"}, nil, &out, &errb)
	took := time.Since(start)
	msg := errb.String()
	if code != exitInvalid || !strings.Contains(msg, "in use by another") || !strings.Contains(msg, cfg.DataDir) || !strings.Contains(msg, "--data") {
		t.Fatalf("serve on a directory in use: exit %d, stderr %q", code, msg)
	}
	if strings.Contains(msg, "timeout") || took > 3*time.Second {
		t.Errorf("serve waited %s for the directory (stderr %q); want an answer at once", took, msg)
	}
}

// FuzzParseBytes: --audit-max-bytes takes a size from the command line;
// whatever it is given, parseBytes refuses it or returns a size ≥ 0.
func FuzzParseBytes(f *testing.F) {
	for _, s := range []string{"0", "512MiB", "10GiB", "2 TiB", "5GB", "-1", "9999999999TiB", "1.5GiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := parseBytes(s); err == nil && n < 0 {
			t.Fatalf("parseBytes(%q) = %d", s, n)
		}
	})
}
