package main

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestCredentialOrder: --token-file, then $AIBOS_TOKEN, then
// ./data/root-token, then none.
func TestCredentialOrder(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	fileTok := filepath.Join(dir, "tok")
	if err := os.WriteFile(fileTok, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	get := func(args ...string) string {
		t.Helper()
		fs := newFlags("x", "", io.Discard, io.Discard)
		serverFlag(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		tok, err := credential(fs.FlagSet)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	t.Setenv("AIBOS_TOKEN", "")
	if tok := get(); tok != "" {
		t.Fatalf("nothing anywhere: %q", tok)
	}
	if err := os.MkdirAll("data", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("data", "root-token"), []byte("from-data\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok := get(); tok != "from-data" {
		t.Fatalf("./data/root-token: %q", tok)
	}
	t.Setenv("AIBOS_TOKEN", "from-env")
	if tok := get(); tok != "from-env" {
		t.Fatalf("$AIBOS_TOKEN: %q", tok)
	}
	if tok := get("--token-file", fileTok); tok != "from-file" {
		t.Fatalf("--token-file: %q", tok)
	}
	fs := newFlags("x", "", io.Discard, io.Discard)
	serverFlag(fs)
	_ = fs.Parse([]string{"--token-file", filepath.Join(dir, "missing")})
	if _, err := credential(fs.FlagSet); err == nil {
		t.Fatal("a missing --token-file is not an error")
	}
}
