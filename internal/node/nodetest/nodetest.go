// Package nodetest starts real kernel nodes for tests in other packages:
// real Raft, real HTTP, loopback addresses on free ports, data in the
// test's temporary directory, shut down when the test ends.
package nodetest

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/loopback"
	"github.com/aibos/kernel/internal/node"
)

// WaitLong bounds every wait: generous, since elections and publishes on a
// loaded 2-core machine under -race can take seconds. Tests built on this
// package never assert how long anything took.
const WaitLong = 60 * time.Second

// RootPrincipal is the principal of a test cluster's root token (and so
// of Client): the name tests attribute their publishes to.
const RootPrincipal = "test"

// Config is a node on loopback with free ports (Raft on a random IP of
// 127.0.0.0/8, see package loopback) and a temporary data dir.
func Config(t testing.TB, id string) node.Config {
	return node.Config{NodeID: id, HTTPAddr: "127.0.0.1:0", RaftAddr: loopback.RaftAddr(), DataDir: t.TempDir(), RootPrincipal: RootPrincipal}
}

// Start starts a node, waits until it is ready, and closes it when the test
// ends.
func Start(t testing.TB, cfg node.Config) *node.Node {
	t.Helper()
	n, err := node.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), WaitLong)
	defer cancel()
	if err := n.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return n
}

// Cluster starts voters+nonVoters nodes n1, n2, ...: the first bootstraps,
// the others join it, the last nonVoters as non-voting replicas. mod, if
// set, adjusts each node's configuration before it starts.
func Cluster(t testing.TB, voters, nonVoters int, mod func(*node.Config)) []*node.Node {
	t.Helper()
	var nodes []*node.Node
	for i := range voters + nonVoters {
		cfg := Config(t, fmt.Sprintf("n%d", i+1))
		if i > 0 {
			cfg.Join = nodes[0].HTTPAddr()
			cfg.NonVoter = i >= voters
			cfg.Token = nodes[0].RootToken()
		}
		if mod != nil {
			mod(&cfg)
		}
		nodes = append(nodes, Start(t, cfg))
	}
	return nodes
}

// Client is an SDK client for nodes that retries for up to WaitLong,
// authenticated with the cluster's root token (see Token).
func Client(t testing.TB, nodes ...*node.Node) *client.Client {
	t.Helper()
	return TokenClient(t, Token(nodes[0]), nodes...)
}

// TokenClient is an SDK client for nodes that retries for up to WaitLong
// and authenticates with token ("" for none).
func TokenClient(t testing.TB, token string, nodes ...*node.Node) *client.Client {
	t.Helper()
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.URL())
	}
	c, err := client.New(urls, client.Options{RetryFor: WaitLong, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Token is the cluster's root operator token as node n knows it: the one
// it wrote when it bootstrapped, or the credential it joined with
// (Cluster gives joining nodes the root token).
func Token(n *node.Node) string {
	if tok := n.RootToken(); tok != "" {
		return tok
	}
	return n.Config().Token
}

// ClientAs is a client of nodes authenticated as principal with roles: a
// new operator token, made with the root token.
func ClientAs(t testing.TB, principal string, roles []string, nodes ...*node.Node) *client.Client {
	t.Helper()
	return TokenClient(t, NewToken(t, nodes[0], principal, roles...), nodes...)
}

// NewToken makes an operator token for principal with roles through n,
// with the root token, and returns its secret.
func NewToken(t testing.TB, n *node.Node, principal string, roles ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitLong)
	defer cancel()
	tc, err := Client(t, n).CreateToken(ctx, principal, roles, nil, 0)
	if err != nil {
		t.Fatalf("nodetest: token for %s: %v", principal, err)
	}
	return tc.Secret
}

// Authorize sets the root token of n's cluster on a request made by hand.
func Authorize(req *http.Request, n *node.Node) *http.Request {
	req.Header.Set("Authorization", "Bearer "+Token(n))
	return req
}
