package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aibos/kernel/internal/certs"
	"github.com/aibos/kernel/internal/node"
	"github.com/aibos/kernel/internal/node/nodetest"
)

func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestTLSCommands: the CA and certificates the CLI makes are what the
// kernel expects, keys are private, nothing is overwritten, and the CLI
// reaches an https node with --tls-ca or $AIBOS_CA.
func TestTLSCommands(t *testing.T) {
	dir := t.TempDir()
	if code, _, errs := runCLI("tls", "ca", "create", "--dir", dir); code != exitOK {
		t.Fatalf("ca create: %d %s", code, errs)
	}
	if code, _, errs := runCLI("tls", "ca", "create", "--dir", dir); code != exitInvalid || !strings.Contains(errs, "exists") {
		t.Fatalf("ca create over an existing CA: %d %s", code, errs)
	}
	if code, _, errs := runCLI("tls", "cert", "create", "--node", "n1", "--dir", dir); code != exitOK {
		t.Fatalf("cert create --node: %d %s", code, errs)
	}
	if code, _, errs := runCLI("tls", "cert", "create", "--operator", "alice", "--dir", dir); code != exitOK {
		t.Fatalf("cert create --operator: %d %s", code, errs)
	}
	for _, k := range []string{"ca.key", "n1.key", "alice.key"} {
		fi, err := os.Stat(filepath.Join(dir, k))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v, want mode 0600", k, fi.Mode(), err)
		}
	}
	pool, err := certs.LoadPool(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if id, err := certs.VerifyNode([]*x509.Certificate{readCert(t, filepath.Join(dir, "n1.crt"))}, pool, time.Now()); err != nil || id != "n1" {
		t.Fatalf("node certificate: %q %v", id, err)
	}
	if _, err := certs.VerifyNode([]*x509.Certificate{readCert(t, filepath.Join(dir, "alice.crt"))}, pool, time.Now()); err == nil {
		t.Fatal("the operator certificate passes for a node's")
	}

	ident, err := certs.LoadNode(filepath.Join(dir, "n1.crt"), filepath.Join(dir, "n1.key"), filepath.Join(dir, "ca.crt"), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := nodetest.Config(t, "n1")
	cfg.Security = node.Security{Node: ident}
	n, err := node.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx, cancel := context.WithTimeout(context.Background(), nodetest.WaitLong)
	defer cancel()
	if err := n.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AIBOS_TOKEN", nodetest.Token(n))
	if code, out, errs := runCLI("cluster", "status", "--server", n.URL(), "--tls-ca", filepath.Join(dir, "ca.crt")); code != exitOK || !strings.Contains(out, "leader n1") {
		t.Fatalf("cluster status --tls-ca: %d %s %s", code, out, errs)
	}
	if code, _, errs := runCLI("cluster", "status", "--server", n.URL()); code == exitOK || !strings.Contains(errs, "certificate") {
		t.Fatalf("cluster status without the CA: %d %s", code, errs)
	}
	t.Setenv("AIBOS_CA", filepath.Join(dir, "ca.crt"))
	if code, out, errs := runCLI("cluster", "status", "--server", n.URL()); code != exitOK || !strings.Contains(out, "leader n1") {
		t.Fatalf("cluster status with AIBOS_CA: %d %s %s", code, out, errs)
	}

	// A node that requires client certificates: the operator's works.
	if code, _, errs := runCLI("tls", "cert", "create", "--node", "n2", "--dir", dir); code != exitOK {
		t.Fatalf("cert create --node n2: %d %s", code, errs)
	}
	ident2, err := certs.LoadNode(filepath.Join(dir, "n2.crt"), filepath.Join(dir, "n2.key"), filepath.Join(dir, "ca.crt"), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg2 := nodetest.Config(t, "n2")
	cfg2.Security = node.Security{Node: ident2, ClientCAs: pool}
	n2 := nodetest.Start(t, cfg2)
	t.Setenv("AIBOS_TOKEN", nodetest.Token(n2))
	if code, _, errs := runCLI("cluster", "status", "--server", n2.URL()); code == exitOK {
		t.Fatalf("cluster status without a client certificate: %d %s", code, errs)
	}
	if code, out, errs := runCLI("cluster", "status", "--server", n2.URL(),
		"--tls-client-cert", filepath.Join(dir, "alice.crt"), "--tls-client-key", filepath.Join(dir, "alice.key")); code != exitOK || !strings.Contains(out, "leader n2") {
		t.Fatalf("cluster status with the operator's certificate: %d %s %s", code, out, errs)
	}
}

// TestServeRefusesPlaintextOffLoopback: serve on every interface without
// TLS exits 2 before listening and says how to fix it.
func TestServeRefusesPlaintextOffLoopback(t *testing.T) {
	code, _, errs := runCLI("serve", "--http", "0.0.0.0:0", "--raft", "127.0.0.1:0", "--data", t.TempDir())
	if code != exitInvalid || !strings.Contains(errs, "--insecure-no-tls") || !strings.Contains(errs, "--tls-cert") {
		t.Fatalf("serve on 0.0.0.0 without TLS: %d %s", code, errs)
	}
	code, _, errs = runCLI("serve", "--node-cert", "x.crt", "--data", t.TempDir())
	if code != exitInvalid || !strings.Contains(errs, "go together") {
		t.Fatalf("serve with --node-cert alone: %d %s", code, errs)
	}
}
