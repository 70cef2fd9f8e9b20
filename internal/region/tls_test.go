package region_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/auth"
	"github.com/aibos/kernel/internal/certs"
	"github.com/aibos/kernel/internal/node"
	"github.com/aibos/kernel/internal/node/nodetest"
	"github.com/aibos/kernel/internal/region"
)

// TestRegionsOverMutualTLS: two regions whose nodes have certificates of
// one CA follow each other over HTTPS with client certificates; a caller
// with the region token but no node certificate gets nothing of the
// global stream.
func TestRegionsOverMutualTLS(t *testing.T) {
	dir := t.TempDir()
	caPEM, caKey, err := certs.NewCA("regions CA", time.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	caFile, keyFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	for f, b := range map[string][]byte{caFile: caPEM, keyFile: caKey} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ca, err := certs.LoadCA(caFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	identity := func(id string) *certs.Node {
		c, k, err := ca.Issue(certs.Request{NodeID: id, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		cf, kf := filepath.Join(dir, id+".crt"), filepath.Join(dir, id+".key")
		os.WriteFile(cf, c, 0o600)
		os.WriteFile(kf, k, 0o600)
		n, err := certs.LoadNode(cf, kf, caFile, nil)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	secret, accessor, err := auth.NewOperatorToken(nil)
	if err != nil {
		t.Fatal(err)
	}
	start := func(id, domain string, join []string) *node.Node {
		c := nodetest.Config(t, id+"-n1")
		c.Region, c.HTTPAddr = id, freeAddr(t, "127.0.0.1")
		c.Security.Node = identity(id + "-n1")
		c.Regions = node.RegionConfig{Domain: domain, Join: join, Token: secret, Endpoints: []string{"https://" + c.HTTPAddr}, Lease: 2 * time.Second}
		return nodetest.Start(t, c)
	}
	us := start("us-east", "us", nil)
	ctx, cancel := context.WithTimeout(context.Background(), nodetest.WaitLong)
	defer cancel()
	if _, err := us.Store.CreateToken(ctx, api.Token{Accessor: accessor, Principal: "regions", Roles: []string{auth.RoleRegion}, CreatedAt: time.Now().UTC(), CreatedBy: "test"}, auth.Hash(secret)); err != nil {
		t.Fatal(err)
	}
	eu := start("eu-west", "eu", []string{us.URL()})

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	c, err := client.New([]string{us.URL()}, client.Options{Token: us.RootToken(), TLS: &tls.Config{RootCAs: pool}, RetryFor: nodetest.WaitLong})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Publish(ctx, bundle(1), client.PublishOptions{})
	if err != nil {
		t.Fatalf("publish at the primary: %v (a majority is both regions: eu-west must follow over mTLS)", err)
	}
	ec, err := client.New([]string{eu.URL()}, client.Options{Token: eu.RootToken(), TLS: &tls.Config{RootCAs: pool}, RetryFor: nodetest.WaitLong})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(nodetest.WaitLong)
	for {
		vs, err := ec.Versions(ctx)
		if err == nil && len(vs) == 1 && vs[0].Hash == res.Hash {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("eu-west's versions %+v (%v)", vs, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Both regions registered: a publish is confirmed by eu-west too.
	var reg api.Regions
	for time.Now().Before(deadline) {
		if err := getTLS(ec, &reg); err == nil && len(reg.Regions) == 2 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(reg.Regions) != 2 {
		t.Fatalf("registry %+v", reg)
	}
	if _, err := c.Publish(ctx, bundle(2), client.PublishOptions{}); err != nil {
		t.Fatalf("publish confirmed by both regions: %v", err)
	}

	// The region token without a node certificate: refused.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for _, path := range []string{region.StreamPath + "?region=eu-west", region.StandbyPath + "?region=eu-west"} {
		req, _ := http.NewRequest(http.MethodGet, us.URL()+path, nil)
		req.Header.Set("Authorization", "Bearer "+secret)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%s with the token but no node certificate: %d, want 403", path, resp.StatusCode)
		}
	}
}

func getTLS(c *client.Client, out *api.Regions) error {
	r, err := c.Regions(context.Background())
	if err == nil {
		*out = r
	}
	return err
}
