package systemtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/certs"
	"github.com/aibos/kernel/internal/node"
	"github.com/aibos/kernel/internal/node/nodetest"
	"github.com/aibos/kernel/internal/server"
	"github.com/aibos/kernel/internal/store"
)

// pki is a cluster CA in a directory, issuing certificate files.
type pki struct {
	t    *testing.T
	dir  string
	ca   *certs.CA
	root string // the root token of the cluster startTLSCluster started
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	certPEM, keyPEM, err := certs.NewCA("test CA", time.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "ca.crt"), certPEM)
	writeFile(t, filepath.Join(dir, "ca.key"), keyPEM)
	ca, err := certs.LoadCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	return &pki{t: t, dir: dir, ca: ca}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (p *pki) caFile() string { return filepath.Join(p.dir, "ca.crt") }

func (p *pki) pool() *x509.CertPool {
	pool, err := certs.LoadPool(p.caFile())
	if err != nil {
		p.t.Fatal(err)
	}
	return pool
}

// issue writes NAME.crt and NAME.key for r and returns their paths.
func (p *pki) issue(name string, r certs.Request) (string, string) {
	p.t.Helper()
	if len(r.IPs) == 0 {
		r.IPs = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	certPEM, keyPEM, err := p.ca.Issue(r, time.Now())
	if err != nil {
		p.t.Fatal(err)
	}
	c, k := filepath.Join(p.dir, name+".crt"), filepath.Join(p.dir, name+".key")
	writeFile(p.t, c, certPEM)
	writeFile(p.t, k, keyPEM)
	return c, k
}

// nodeIdentity is a node identity for id, unchecked (so a test can give a
// node an expired or foreign certificate).
func (p *pki) nodeIdentity(name string, r certs.Request) *certs.Node {
	p.t.Helper()
	c, k := p.issue(name, r)
	rl, err := certs.NewReloader(c, k, nil)
	if err != nil {
		p.t.Fatal(err)
	}
	return &certs.Node{Cert: rl, CAs: p.pool()}
}

func (p *pki) tlsCert(name string, r certs.Request) tls.Certificate {
	p.t.Helper()
	c, k := p.issue(name, r)
	pair, err := tls.LoadX509KeyPair(c, k)
	if err != nil {
		p.t.Fatal(err)
	}
	return pair
}

// startTLSCluster starts n voters with node mTLS, n1 bootstrapping.
func startTLSCluster(t *testing.T, p *pki, n int) []*node.Node {
	t.Helper()
	var nodes []*node.Node
	for i := range n {
		id := fmt.Sprintf("n%d", i+1)
		cfg := nodetest.Config(t, id)
		c, k := p.issue(id, certs.Request{NodeID: id})
		ident, err := certs.LoadNode(c, k, p.caFile(), nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Security.Node = ident
		if i > 0 {
			cfg.Join = nodes[0].HTTPAddr()
			cfg.Token = p.root
		}
		nodes = append(nodes, nodetest.Start(t, cfg))
		if i == 0 {
			p.root = nodes[0].RootToken()
		}
	}
	return nodes
}

// tlsClient is an SDK client trusting the cluster CA.
func tlsClient(t *testing.T, p *pki, nodes ...*node.Node) *client.Client {
	t.Helper()
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.URL())
	}
	c, err := client.New(urls, client.Options{RetryFor: waitLong, TLS: &tls.Config{RootCAs: p.pool()}, Token: p.root})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func leaderOf(t *testing.T, nodes []*node.Node) *node.Node {
	t.Helper()
	var leader *node.Node
	eventually(t, waitLong, "a leader", func() error {
		for _, n := range nodes {
			if n.Store.IsLeader() {
				leader = n
				return nil
			}
		}
		return errors.New("no leader")
	})
	return leader
}

// TestTLSClusterReplicates: three nodes with node certificates form a
// cluster over mTLS (each joins as a non-voter and is promoted), and a
// write sent to a follower is forwarded to the leader and reaches every
// node.
func TestTLSClusterReplicates(t *testing.T) {
	p := newPKI(t)
	nodes := startTLSCluster(t, p, 3)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	for _, n := range nodes {
		if !strings.HasPrefix(n.URL(), "https://") {
			t.Fatalf("node %s serves %s, want https", n.Config().NodeID, n.URL())
		}
	}
	eventually(t, waitLong, "three voters", func() error {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second) // each try is short: eventually retries
		defer cancel()
		cl, err := tlsClient(t, p, nodes[0]).Cluster(cctx)
		if err != nil {
			return err
		}
		if len(cl.Nodes) != 3 {
			return fmt.Errorf("%d members", len(cl.Nodes))
		}
		for _, m := range cl.Nodes {
			if m.Role == "nonvoter" {
				return fmt.Errorf("%s is still a non-voter", m.ID)
			}
			if m.Status != api.NodeReady { // n1 probes its peers over TLS
				return fmt.Errorf("%s is %s: %s", m.ID, m.Status, m.Detail)
			}
		}
		return nil
	})
	var follower *node.Node
	for _, n := range nodes {
		if !n.Store.IsLeader() {
			follower = n
		}
	}
	rev, err := tlsClient(t, p, follower).PutEntities(ctx, []api.Entity{{Type: "table", ID: "t1", Properties: map[string]any{"region": "eu"}}})
	if err != nil {
		t.Fatalf("write through follower %s: %v", follower.Config().NodeID, err)
	}
	// The watch stream (a WebSocket) works over TLS too.
	events, err := tlsClient(t, p, follower).Watch(ctx, 0, client.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := tlsClient(t, p, follower).Publish(ctx, bundle("tls"), client.PublishOptions{Message: "over mTLS"})
	if err != nil {
		t.Fatalf("publish through follower: %v", err)
	}
	seen := false
	for ev := range events {
		if ev.Type == "bundle" && ev.Version == pub.Version {
			seen = true
			break
		}
	}
	if !seen {
		t.Fatalf("the watch over TLS ended without version %d", pub.Version)
	}
	// The forwarding marker from a client is dropped, not obeyed: the
	// follower still forwards (a plaintext cluster would answer 503).
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, follower.URL()+"/v1/entities",
		strings.NewReader(`{"entities":[{"type":"table","id":"t2"}]}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Aibos-Forwarded", "1")
	req.Header.Set("Authorization", "Bearer "+p.root)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.pool()}}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("write with a client's forwarding marker through follower: %d %s", resp.StatusCode, b)
	}
	for _, n := range nodes {
		if err := n.Store.WaitForRevision(ctx, rev); err != nil {
			t.Fatalf("%s: %v", n.Config().NodeID, err)
		}
		if _, ok := n.Store.Entity("table", "t1"); !ok {
			t.Fatalf("%s has not the entity written through %s", n.Config().NodeID, follower.Config().NodeID)
		}
	}
}

// TestTLSStrangersCannotJoin: a fourth node without a certificate, with a
// node certificate of another CA, with an expired one, or with an
// operator's client certificate of the cluster's own CA cannot join,
// neither by starting a node nor by calling the join endpoint of the
// leader or a follower; the membership stays the same.
func TestTLSStrangersCannotJoin(t *testing.T) {
	p := newPKI(t)
	foreign := newPKI(t)
	nodes := startTLSCluster(t, p, 3)
	leader := leaderOf(t, nodes)
	follower := nodes[0]
	if follower == leader {
		follower = nodes[1]
	}
	past := time.Now().Add(-48 * time.Hour)
	cases := []struct {
		name  string
		ident *certs.Node      // for a node started with it; nil: no TLS at all
		cert  *tls.Certificate // presented on a raw join request; nil: none
	}{
		{name: "no certificate"},
		{name: "foreign CA", ident: foreign.nodeIdentity("n4", certs.Request{NodeID: "n4"})}, // CAs set below
		{name: "expired", ident: p.nodeIdentity("n4-expired", certs.Request{NodeID: "n4", NotBefore: past, Validity: time.Hour})},
		{name: "operator certificate"},
	}
	// The foreign node trusts the cluster's CA, as an attacker who knows
	// it would, so the refusal is the cluster's.
	cases[1].ident.CAs = p.pool()
	foreignCert := foreign.tlsCert("n4-raw", certs.Request{NodeID: "n4"})
	expiredCert := p.tlsCert("n4-expired-raw", certs.Request{NodeID: "n4", NotBefore: past, Validity: time.Hour})
	operatorCert := p.tlsCert("alice", certs.Request{Operator: "alice"})
	cases[1].cert, cases[2].cert, cases[3].cert = &foreignCert, &expiredCert, &operatorCert

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name != "operator certificate" { // an operator certificate names no node to start
				cfg := nodetest.Config(t, "n4")
				cfg.Join = leader.HTTPAddr()
				cfg.JoinTimeout = 3 * time.Second
				cfg.Security.Node = tc.ident
				cfg.Token = p.root // even with the root token: the certificate decides
				n, err := node.Start(context.Background(), cfg)
				if err == nil {
					n.Close()
					t.Fatal("a fourth node joined")
				}
				t.Logf("start refused: %v", err)
			}
			// A raft address that answers, so only the certificate decides.
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			for _, target := range []*node.Node{leader, follower} {
				status, body, err := rawJoin(p, target, tc.cert, server.JoinRequest{ID: "n4", Raft: ln.Addr().String(), HTTP: "127.0.0.1:1"})
				if err == nil && status != http.StatusForbidden {
					t.Fatalf("join via %s with %s: %d %s, want 403 or a refused handshake", target.Config().NodeID, tc.name, status, body)
				}
				t.Logf("join via %s: status %d %s err %v", target.Config().NodeID, status, body, err)
			}
			// A client cannot claim to be a node that forwards for n4.
			status, body, err := rawJoin(p, leader, nil, server.JoinRequest{ID: "n4", Raft: ln.Addr().String(), HTTP: "127.0.0.1:1"},
				"X-Aibos-Forwarded", "1", "X-Aibos-Node", "n4")
			if err != nil || status != http.StatusForbidden {
				t.Fatalf("join with forged forwarding headers: %d %s %v, want 403", status, body, err)
			}
			members, err := leader.Store.Nodes()
			if err != nil {
				t.Fatal(err)
			}
			if len(members) != 3 {
				t.Fatalf("members after a refused join: %+v", members)
			}
		})
	}
}

func rawJoin(p *pki, target *node.Node, cert *tls.Certificate, req server.JoinRequest, hdr ...string) (int, string, error) {
	tc := &tls.Config{RootCAs: p.pool()}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	body, _ := json.Marshal(req)
	hreq, _ := http.NewRequest(http.MethodPost, target.URL()+"/v1/cluster/join", bytes.NewReader(body))
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Authorization", "Bearer "+p.root) // even with the root token: the certificate decides
	for i := 0; i+1 < len(hdr); i += 2 {
		hreq.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := hc.Do(hreq)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
}

// forgedAppendEntries is what a raw TCP client sends to take over a
// plaintext Raft port: an AppendEntries from an "attacker" with a huge
// term, in raft's own wire format (one type byte, then msgpack).
func forgedAppendEntries(w io.Writer) error {
	bw := bufio.NewWriter(w)
	if err := bw.WriteByte(0); err != nil { // rpcAppendEntries
		return err
	}
	req := raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("attacker"), Addr: []byte("127.0.0.1:1")},
		Term:      1 << 40,
	}
	if err := codec.NewEncoder(bw, &codec.MsgpackHandle{}).Encode(&req); err != nil {
		return err
	}
	return bw.Flush()
}

// forgedTimeoutNow asks the receiver to start an election at once.
func forgedTimeoutNow(w io.Writer) error {
	bw := bufio.NewWriter(w)
	if err := bw.WriteByte(3); err != nil { // rpcTimeoutNow
		return err
	}
	req := raft.TimeoutNowRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("attacker"), Addr: []byte("127.0.0.1:1")},
	}
	if err := codec.NewEncoder(bw, &codec.MsgpackHandle{}).Encode(&req); err != nil {
		return err
	}
	return bw.Flush()
}

// TestForgedAppendEntriesTakesPlaintext is the control of the next test:
// on a plaintext Raft port the forged message is accepted (the node takes
// the attacker's term), so the bytes are a well-formed attack.
func TestForgedAppendEntriesTakesPlaintext(t *testing.T) {
	n := nodetest.Start(t, nodetest.Config(t, "n1"))
	c, err := net.Dial("tcp", n.Store.RaftAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := forgedAppendEntries(c); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitLong, "the plaintext node to take the forged term", func() error {
		if got := n.Store.Term(); got != 1<<40 {
			return fmt.Errorf("term %d", got)
		}
		return nil
	})
}

// TestTLSRaftPortRefusesStrangers: plaintext garbage, the forged
// AppendEntries and TimeoutNow in plaintext, and the same messages over TLS with no
// certificate, a foreign CA's node certificate, an expired node
// certificate or an operator's certificate change nothing: every node keeps
// its term and the leader, and the cluster keeps accepting writes.
func TestTLSRaftPortRefusesStrangers(t *testing.T) {
	p := newPKI(t)
	foreign := newPKI(t)
	nodes := startTLSCluster(t, p, 3)
	leader := leaderOf(t, nodes)
	leaderID := leader.Config().NodeID
	terms := map[string]uint64{}
	for _, n := range nodes {
		terms[n.Config().NodeID] = n.Store.Term()
	}
	past := time.Now().Add(-48 * time.Hour)
	certsFor := map[string]*tls.Certificate{"no certificate": nil}
	fc := foreign.tlsCert("n9", certs.Request{NodeID: "n9"})
	ec := p.tlsCert("n9-expired", certs.Request{NodeID: "n9", NotBefore: past, Validity: time.Hour})
	oc := p.tlsCert("alice", certs.Request{Operator: "alice"})
	certsFor["foreign CA"], certsFor["expired"], certsFor["operator"] = &fc, &ec, &oc

	for _, target := range nodes {
		addr := target.Store.RaftAddr()
		// Plaintext: garbage, then the forged messages.
		for _, send := range []func(io.Writer) error{
			func(w io.Writer) error {
				_, err := w.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\xff garbage"))
				return err
			},
			forgedAppendEntries, forgedTimeoutNow,
		} {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			send(c)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			io.Copy(io.Discard, c) // the node closes the connection
			c.Close()
		}
		// TLS with a certificate that is not a node's of this cluster.
		for name, cert := range certsFor {
			tc := &tls.Config{InsecureSkipVerify: true}
			if cert != nil {
				tc.Certificates = []tls.Certificate{*cert}
			}
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, tc)
			if err != nil {
				t.Logf("%s: %s: handshake refused: %v", target.Config().NodeID, name, err)
				continue
			}
			// TLS 1.3: the client's handshake ends before the server has
			// checked its certificate; the refusal comes on the first read.
			forgedAppendEntries(c)
			forgedTimeoutNow(c)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, rerr := io.Copy(io.Discard, c)
			c.Close()
			if n > 0 {
				t.Fatalf("%s: %s: the Raft port answered %d bytes", target.Config().NodeID, name, n)
			}
			t.Logf("%s: %s: refused on read: %v", target.Config().NodeID, name, rerr)
		}
	}
	// Give a forged term time to spread if it had been taken.
	time.Sleep(time.Second)
	for _, n := range nodes {
		id := n.Config().NodeID
		if got := n.Store.Term(); got != terms[id] {
			t.Errorf("%s: term %d, was %d", id, got, terms[id])
		}
		if got := n.Store.LeaderID(); got != leaderID {
			t.Errorf("%s: leader %q, was %q", id, got, leaderID)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if _, err := tlsClient(t, p, nodes...).PutEntities(ctx, []api.Entity{{Type: "table", ID: "after"}}); err != nil {
		t.Fatalf("write after the attempts: %v", err)
	}
}

// TestTLSCertificateReload: replacing the HTTP certificate's files makes
// the next handshake get the new certificate, without a restart.
func TestTLSCertificateReload(t *testing.T) {
	p := newPKI(t)
	c, k := p.issue("http", certs.Request{NodeID: "n1"})
	rl, err := certs.NewReloader(c, k, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := nodetest.Config(t, "n1")
	cfg.Security.HTTPCert = rl
	n := nodetest.Start(t, cfg)
	serial := func() string {
		t.Helper()
		conn, err := tls.Dial("tcp", n.HTTPAddr(), &tls.Config{RootCAs: p.pool()})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	first := serial()
	// Write the new pair next to the old and rename it over, as cert
	// managers do.
	nc, nk := p.issue("http-new", certs.Request{NodeID: "n1"})
	if err := os.Rename(nk, k); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(nc, c); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	if second := serial(); second == first || second != leaf.SerialNumber.String() {
		t.Fatalf("after replacing the files: serial %s, first %s, want the new %s", second, first, leaf.SerialNumber)
	}
}

// TestInsecureListenerRefused: a node on a non-loopback address without
// TLS refuses to start, before it listens, and says how to fix it.
func TestInsecureListenerRefused(t *testing.T) {
	for _, tc := range []struct{ name, http, raft string }{
		{"http on every interface", "0.0.0.0:0", "127.0.0.1:0"},
		{"raft on every interface", "127.0.0.1:0", "0.0.0.0:0"},
		{"http on an empty host", ":0", "127.0.0.1:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := nodetest.Config(t, "n1")
			cfg.HTTPAddr, cfg.RaftAddr = tc.http, tc.raft
			n, err := node.Start(context.Background(), cfg)
			if err == nil {
				n.Close()
				t.Fatal("started without TLS off loopback")
			}
			if !errors.Is(err, node.ErrInsecureListener) || !strings.Contains(err.Error(), "--insecure-no-tls") {
				t.Fatalf("error %v: want ErrInsecureListener naming --insecure-no-tls", err)
			}
		})
	}
}

// TestJoinUnreachableRaftRefused is the probe that bricked a one-node
// cluster: a voter joined at an address where nothing listens. The join is
// refused, the membership is unchanged, and the cluster stays writable.
func TestJoinUnreachableRaftRefused(t *testing.T) {
	n := nodetest.Start(t, nodetest.Config(t, "n1"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	body, _ := json.Marshal(server.JoinRequest{ID: "ghost", Raft: dead, HTTP: "127.0.0.1:1"})
	req, _ := http.NewRequest(http.MethodPost, n.URL()+"/v1/cluster/join", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(nodetest.Authorize(req, n))
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(msg), "does not answer") {
		t.Fatalf("join at a dead raft address: %d %s, want 400 saying it does not answer", resp.StatusCode, msg)
	}
	members, err := n.Store.Nodes()
	if err != nil || len(members) != 1 {
		t.Fatalf("members %+v, %v", members, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if _, err := nodetest.Client(t, n).PutEntities(ctx, []api.Entity{{Type: "table", ID: "still-writable"}}); err != nil {
		t.Fatalf("write after the refused join: %v", err)
	}
}

// TestRecoverLostQuorum: a three-node cluster loses two nodes for good;
// the survivor cannot elect itself. Stopped, its configuration rewritten
// to itself alone with store.Recover, it restarts as a one-node cluster
// with its data and accepts writes.
func TestRecoverLostQuorum(t *testing.T) {
	nodes := nodetest.Cluster(t, 3, 0, nil)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	rev, err := nodetest.Client(t, nodes...).PutEntities(ctx, []api.Entity{{Type: "table", ID: "before"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if err := n.Store.WaitForRevision(ctx, rev); err != nil {
			t.Fatal(err)
		}
	}
	survivor := nodes[0]
	cfg := survivor.Config()
	nodes[1].Kill()
	nodes[2].Kill()
	eventually(t, waitLong, "the survivor to lose its leader", func() error {
		if id := survivor.Store.LeaderID(); id != "" {
			return fmt.Errorf("leader %s", id)
		}
		return nil
	})
	survivor.Kill()

	peers := []store.Peer{{ID: cfg.NodeID, Raft: cfg.RaftAddr}}
	if err := store.Recover(cfg.NodeID, cfg.DataDir, peers); err != nil {
		t.Fatal(err)
	}
	cfg.Join = ""
	n := nodetest.Start(t, cfg)
	if _, ok := n.Store.Entity("table", "before"); !ok {
		t.Fatal("the recovered node lost its data")
	}
	if _, err := nodetest.Client(t, n).PutEntities(ctx, []api.Entity{{Type: "table", ID: "after"}}); err != nil {
		t.Fatalf("write after recovery: %v", err)
	}
	members, err := n.Store.Nodes()
	if err != nil || len(members) != 1 {
		t.Fatalf("members after recovery: %+v %v", members, err)
	}
}

// TestTLSClientCA: with a client CA every HTTP client must present a
// certificate from it; an operator certificate of that CA is served, a
// client without one or with another CA's is refused at the handshake.
func TestTLSClientCA(t *testing.T) {
	p := newPKI(t)
	foreign := newPKI(t)
	c, k := p.issue("http", certs.Request{NodeID: "n1"})
	rl, err := certs.NewReloader(c, k, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := nodetest.Config(t, "n1")
	cfg.Security = node.Security{HTTPCert: rl, ClientCAs: p.pool()}
	n := nodetest.Start(t, cfg)
	alice := p.tlsCert("alice", certs.Request{Operator: "alice"})
	mallory := foreign.tlsCert("mallory", certs.Request{Operator: "mallory"})
	for _, tc := range []struct {
		name string
		cert *tls.Certificate
		ok   bool
	}{
		{"operator of the client CA", &alice, true},
		{"no certificate", nil, false},
		{"another CA", &mallory, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tcfg := &tls.Config{RootCAs: p.pool()}
			if tc.cert != nil {
				tcfg.Certificates = []tls.Certificate{*tc.cert}
			}
			hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tcfg}, Timeout: 10 * time.Second}
			defer hc.CloseIdleConnections()
			req, _ := http.NewRequest(http.MethodGet, n.URL()+"/v1/cluster", nil)
			resp, err := hc.Do(nodetest.Authorize(req, n))
			status := 0
			if err == nil {
				resp.Body.Close()
				status = resp.StatusCode
			}
			if tc.ok != (err == nil && status == http.StatusOK) {
				t.Fatalf("GET /v1/cluster: %d %v (want served: %v)", status, err, tc.ok)
			}
		})
	}
}

// TestTLSNodeCertificateReload: replacing a node's certificate files
// changes what its Raft port and its HTTP API present on the next
// handshake, and the node keeps working.
func TestTLSNodeCertificateReload(t *testing.T) {
	p := newPKI(t)
	c, k := p.issue("n1", certs.Request{NodeID: "n1"})
	ident, err := certs.LoadNode(c, k, p.caFile(), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := nodetest.Config(t, "n1")
	cfg.Security.Node = ident
	n := nodetest.Start(t, cfg)
	p.root = n.RootToken()
	peer := p.tlsCert("n9", certs.Request{NodeID: "n9"}) // another node of the cluster's CA
	serials := func() (raftSerial, httpSerial string) {
		t.Helper()
		rc, err := tls.Dial("tcp", n.Store.RaftAddr(), &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{peer}})
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		hc, err := tls.Dial("tcp", n.HTTPAddr(), &tls.Config{RootCAs: p.pool()})
		if err != nil {
			t.Fatal(err)
		}
		defer hc.Close()
		return rc.ConnectionState().PeerCertificates[0].SerialNumber.String(), hc.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	r1, h1 := serials()
	if r1 != h1 {
		t.Fatalf("raft %s and http %s: want the node certificate on both", r1, h1)
	}
	nc, nk := p.issue("n1-new", certs.Request{NodeID: "n1"})
	if err := os.Rename(nk, k); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(nc, c); err != nil {
		t.Fatal(err)
	}
	r2, h2 := serials()
	if r2 == r1 || h2 == h1 || r2 != h2 {
		t.Fatalf("after replacing the files: raft %s (was %s), http %s (was %s)", r2, r1, h2, h1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if _, err := tlsClient(t, p, n).PutEntities(ctx, []api.Entity{{Type: "table", ID: "after-reload"}}); err != nil {
		t.Fatalf("write after the reload: %v", err)
	}
}

// TestTLSRaftPortDropsSilentPeers: connections to the Raft port that never
// start a handshake are closed after the handshake timeout, and the node
// keeps working meanwhile.
func TestTLSRaftPortDropsSilentPeers(t *testing.T) {
	p := newPKI(t)
	nodes := startTLSCluster(t, p, 1)
	var conns []net.Conn
	for range 20 {
		c, err := net.Dial("tcp", nodes[0].Store.RaftAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if _, err := tlsClient(t, p, nodes...).PutEntities(ctx, []api.Entity{{Type: "table", ID: "while-silent"}}); err != nil {
		t.Fatalf("write while silent peers hold connections: %v", err)
	}
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(waitLong))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("silent connection %d: %v, want it closed by the node", i, err)
		}
	}
}
