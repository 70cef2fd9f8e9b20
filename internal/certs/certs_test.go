package certs

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func mustCA(t *testing.T) (*CA, *x509.CertPool) {
	t.Helper()
	c, k, err := NewCA("test", time.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ca.crt"), c, 0o600)
	os.WriteFile(filepath.Join(dir, "ca.key"), k, 0o600)
	ca, err := LoadCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	pool, err := LoadPool(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	return ca, pool
}

func leaf(t *testing.T, ca *CA, r Request) *x509.Certificate {
	t.Helper()
	c, _, err := ca.Issue(r, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(c)
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestVerifyNode(t *testing.T) {
	ca, pool := mustCA(t)
	other, _ := mustCA(t)
	past := time.Now().Add(-48 * time.Hour)
	cases := []struct {
		name    string
		cert    *x509.Certificate
		wantID  string
		notNode bool // refused as not a node's (rather than by the chain)
	}{
		{name: "node", cert: leaf(t, ca, Request{NodeID: "n1"}), wantID: "n1"},
		{name: "operator of the same CA", cert: leaf(t, ca, Request{Operator: "alice"}), notNode: true},
		{name: "node of another CA", cert: leaf(t, other, Request{NodeID: "n1"})},
		{name: "expired node", cert: leaf(t, ca, Request{NodeID: "n1", NotBefore: past, Validity: time.Hour})},
		{name: "not yet valid", cert: leaf(t, ca, Request{NodeID: "n1", NotBefore: time.Now().Add(time.Hour)})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := VerifyNode([]*x509.Certificate{tc.cert}, pool, time.Now())
			if tc.wantID != "" {
				if err != nil || id != tc.wantID {
					t.Fatalf("VerifyNode = %q, %v; want %q", id, err, tc.wantID)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted as node %q", id)
			}
			if errors.Is(err, ErrNotNode) != tc.notNode {
				t.Fatalf("err %v: ErrNotNode %v, want %v", err, errors.Is(err, ErrNotNode), tc.notNode)
			}
		})
	}
	if _, err := VerifyNode(nil, pool, time.Now()); !errors.Is(err, ErrNotNode) {
		t.Fatalf("no certificate: %v", err)
	}
}

func TestIssueNeedsOneName(t *testing.T) {
	ca, _ := mustCA(t)
	for _, r := range []Request{{}, {NodeID: "n1", Operator: "alice"}, {NodeID: "a/b"}} {
		if _, _, err := ca.Issue(r, time.Now()); err == nil {
			t.Errorf("Issue(%+v) succeeded", r)
		}
	}
}

// TestReloaderKeepsOldOnBadPair: a certificate replaced before its key
// (a mismatched pair) keeps the old pair in use; once the key follows,
// the new pair is served.
func TestReloaderKeepsOldOnBadPair(t *testing.T) {
	ca, _ := mustCA(t)
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "n.crt"), filepath.Join(dir, "n.key")
	c1, k1, _ := ca.Issue(Request{NodeID: "n1"}, time.Now())
	os.WriteFile(crt, c1, 0o600)
	os.WriteFile(key, k1, 0o600)
	r, err := NewReloader(crt, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := r.Current().Leaf.SerialNumber
	c2, k2, _ := ca.Issue(Request{NodeID: "n1"}, time.Now())
	os.WriteFile(crt+".tmp", c2, 0o600)
	os.Rename(crt+".tmp", crt)
	if got := r.Current().Leaf.SerialNumber; got.Cmp(first) != 0 {
		t.Fatalf("mismatched pair served: serial %v", got)
	}
	os.WriteFile(key+".tmp", k2, 0o600)
	os.Rename(key+".tmp", key)
	if got := r.Current().Leaf.SerialNumber; got.Cmp(first) == 0 {
		t.Fatal("new pair not picked up")
	}
}
