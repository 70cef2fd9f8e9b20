package systemtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/node"
	"github.com/aibos/kernel/internal/store"
)

// waitLong bounds every wait for the cluster to reach a state. Generous:
// elections on a loaded 2-core machine under -race can take seconds, and
// nothing here asserts how long anything took.
const waitLong = 30 * time.Second

type clusterConfig struct {
	timings         store.Timings
	minRevisionWait time.Duration
}

type clusterOption func(*clusterConfig)

// withTimings sets the raft timings of every node.
func withTimings(tm store.Timings) clusterOption {
	return func(c *clusterConfig) { c.timings = tm }
}

// withMinRevisionWait bounds how long a node holds a min_revision request.
func withMinRevisionWait(d time.Duration) clusterOption {
	return func(c *clusterConfig) { c.minRevisionWait = d }
}

// cluster is a set of in-process kernel nodes on loopback, each behind its
// own Raft proxy on one network.
type cluster struct {
	t       *testing.T
	cfg     clusterConfig
	net     *network
	logs    *logSink
	dir     string
	members []*member // appended only by the test goroutine, before any concurrency
}

// member is one node of a cluster across crashes and restarts: its
// configuration (addresses, data dir) stays, the running *node.Node changes.
type member struct {
	id    string
	proxy *raftProxy

	mu      sync.Mutex
	cfg     node.Config // guarded by mu; HTTPAddr is fixed after the first start
	running *node.Node  // guarded by mu; nil while down

	// incarnation counts starts, so a caller can tell whether two answers
	// came from the same run of the node.
	incarnation atomic.Uint64
}

// startCluster starts n voting nodes: n1 bootstraps, the others join it.
// It returns once every node is ready. The cluster is torn down when the
// test ends.
func startCluster(t *testing.T, n int, opts ...clusterOption) *cluster {
	t.Helper()
	c := &cluster{t: t, net: newNetwork(), logs: &logSink{}}
	for _, o := range opts {
		o(&c.cfg)
	}
	// TempDir first: its removal then runs after the nodes are down.
	c.dir = t.TempDir()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("node logs (warnings and errors, newest last):\n%s", c.logs.String())
		}
	})
	t.Cleanup(c.shutdown)
	for i := 1; i <= n; i++ {
		c.add(fmt.Sprintf("n%d", i), false)
	}
	for _, m := range c.members {
		c.waitReady(m)
	}
	return c
}

// add starts a new node and joins it to the cluster (through n1's HTTP
// address; a follower forwards the join to the leader).
func (c *cluster) add(id string, nonVoter bool) *member {
	c.t.Helper()
	raftAddr, err := freeAddr()
	if err != nil {
		c.t.Fatal(err)
	}
	proxy, err := c.net.newProxy(id, raftAddr)
	if err != nil {
		c.t.Fatal(err)
	}
	m := &member{id: id, proxy: proxy}
	m.cfg = node.Config{
		NodeID:          id,
		HTTPAddr:        "127.0.0.1:0",
		RaftAddr:        raftAddr,
		RaftAdvertise:   proxy.Addr(),
		DataDir:         filepath.Join(c.dir, id),
		NonVoter:        nonVoter,
		Logger:          slog.New(slog.NewTextHandler(c.logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Timings:         c.cfg.timings,
		MinRevisionWait: c.cfg.minRevisionWait,
		JoinTimeout:     waitLong,
		RootPrincipal:   "systemtest", // who the tests' writes are by
	}
	if len(c.members) > 0 {
		m.cfg.Join = c.members[0].httpAddr()
		m.cfg.Token = c.members[0].token()
	}
	c.members = append(c.members, m)
	if err := m.start(); err != nil {
		c.t.Fatalf("start %s: %v", id, err)
	}
	return m
}

// freeAddr returns a loopback address with a port that was free a moment
// ago. The node must bind its Raft port itself, and with RaftAdvertise set
// it reports the advertised address, not the bound one; so the port is
// chosen here.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// start runs the node with its configuration. A restart binds the same
// ports again; one may be briefly taken (an outgoing connection can get it
// as its local port), so binding is retried for a while.
// token is the cluster's root operator token: the one n1 wrote when it
// bootstrapped, or the one a joining member was given.
func (m *member) token() string {
	m.mu.Lock()
	cfg := m.cfg
	m.mu.Unlock()
	if cfg.Token != "" {
		return cfg.Token
	}
	b, _ := os.ReadFile(filepath.Join(cfg.DataDir, node.RootTokenFile))
	return strings.TrimSpace(string(b))
}

func (m *member) start() error {
	m.mu.Lock()
	cfg, running := m.cfg, m.running != nil
	m.mu.Unlock()
	if running {
		return fmt.Errorf("%s is already running", m.id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	for {
		n, err := node.Start(ctx, cfg)
		if err == nil {
			m.mu.Lock()
			m.running = n
			m.cfg.HTTPAddr = n.HTTPAddr()
			m.mu.Unlock()
			m.incarnation.Add(1)
			return nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) || ctx.Err() != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// node returns the running node, nil while it is down.
func (m *member) node() *node.Node {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.running
}

func (m *member) httpAddr() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cfg.HTTPAddr
}

// URL is the node's base URL; it stays the same across restarts.
func (m *member) URL() string { return "http://" + m.httpAddr() }

// dataDir is the node's data directory.
func (m *member) dataDir() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cfg.DataDir
}

// kill crashes the node (no leadership transfer, connections cut).
func (m *member) kill() {
	m.mu.Lock()
	n := m.running
	m.running = nil
	m.mu.Unlock()
	if n != nil {
		_ = n.Kill()
	}
}

// stop shuts the node down gracefully.
func (m *member) stop() error {
	m.mu.Lock()
	n := m.running
	m.running = nil
	m.mu.Unlock()
	if n == nil {
		return nil
	}
	return n.Close()
}

// isLeader reports whether the node runs and leads.
func (m *member) isLeader() bool {
	n := m.node()
	return n != nil && n.Store.IsLeader()
}

// applied is the node's applied revision, 0 while it is down.
func (m *member) applied() uint64 {
	if n := m.node(); n != nil {
		return n.Store.AppliedRevision()
	}
	return 0
}

// shutdown crashes every node (fast; the data dirs are thrown away) and
// closes the proxies.
func (c *cluster) shutdown() {
	for _, m := range c.members {
		m.kill()
	}
	for _, m := range c.members {
		m.proxy.Close()
	}
}

func (c *cluster) waitReady(m *member) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	n := m.node()
	if n == nil {
		c.t.Fatalf("%s is not running", m.id)
	}
	if err := n.WaitReady(ctx); err != nil {
		c.t.Fatalf("%s: %v", m.id, err)
	}
}

// eventually polls f until it returns nil, and fails the test with f's last
// error if that does not happen within timeout.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// leaderAmong waits until exactly one of ms leads and every other running,
// non-isolated member of ms follows it, and returns the leader.
func (c *cluster) leaderAmong(ms ...*member) *member {
	c.t.Helper()
	if len(ms) == 0 {
		ms = c.members
	}
	var leader *member
	eventually(c.t, waitLong, "a leader everyone agrees on", func() error {
		leader = nil
		for _, m := range ms {
			if m.isLeader() {
				if leader != nil {
					return fmt.Errorf("both %s and %s lead", leader.id, m.id)
				}
				leader = m
			}
		}
		if leader == nil {
			return errors.New("no leader")
		}
		for _, m := range ms {
			n := m.node()
			if n == nil || c.net.isIsolated(m.id) {
				continue
			}
			if got := n.Store.LeaderID(); got != leader.id {
				return fmt.Errorf("%s follows %q, not %s", m.id, got, leader.id)
			}
		}
		return nil
	})
	return leader
}

// others returns the members other than m.
func (c *cluster) others(m *member) []*member {
	var out []*member
	for _, o := range c.members {
		if o != m {
			out = append(out, o)
		}
	}
	return out
}

// waitConverged waits until every running member is ready and all have
// applied the same revision, at least min, and returns that revision.
func (c *cluster) waitConverged(min uint64) uint64 {
	c.t.Helper()
	var rev uint64
	eventually(c.t, waitLong, fmt.Sprintf("every node applies the same revision ≥ %d", min), func() error {
		rev = 0
		seen := false
		for _, m := range c.members {
			n := m.node()
			if n == nil {
				continue
			}
			if err := n.Store.Ready(); err != nil {
				return fmt.Errorf("%s: %w", m.id, err)
			}
			a := n.Store.AppliedRevision()
			if a < min {
				return fmt.Errorf("%s applied %d", m.id, a)
			}
			if seen && a != rev {
				return fmt.Errorf("%s applied %d, another node %d", m.id, a, rev)
			}
			rev, seen = a, true
		}
		return nil
	})
	return rev
}

// client returns a client of the given members, retrying like the SDK's
// default (5 s while there is no leader or a node is unreachable).
func (c *cluster) client(ms ...*member) *client.Client {
	c.t.Helper()
	return newClient(c.t, 0, ms...)
}

// strictClient makes one attempt per call, against one node: what a call
// answers is what that node answered.
func (c *cluster) strictClient(m *member) *client.Client {
	c.t.Helper()
	return newClient(c.t, -1, m)
}

func newClient(t *testing.T, retryFor time.Duration, ms ...*member) *client.Client {
	t.Helper()
	var urls []string
	for _, m := range ms {
		urls = append(urls, m.URL())
	}
	cl, err := client.New(urls, client.Options{
		RetryFor:   retryFor,
		HTTPClient: &http.Client{Timeout: 20 * time.Second},
		Token:      ms[0].token(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// getJSON GETs a node's URL and decodes the answer, or returns the API
// error as a *client.Error.
func getJSON(ctx context.Context, m *member, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+m.token())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var eb api.ErrorBody
		_ = json.Unmarshal(data, &eb)
		return &client.Error{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
	}
	return json.Unmarshal(data, out)
}

// versionsAt lists the bundle versions a node holds once it has applied
// minRevision (GET /v1/policies/versions?min_revision=).
func versionsAt(ctx context.Context, m *member, minRevision uint64) ([]api.VersionInfo, error) {
	var resp struct {
		Versions []api.VersionInfo `json:"versions"`
	}
	err := getJSON(ctx, m, fmt.Sprintf("%s/v1/policies/versions?min_revision=%d", m.URL(), minRevision), &resp)
	return resp.Versions, err
}

// appliedAt asks a node over HTTP for the revision it has applied.
func appliedAt(ctx context.Context, m *member) (uint64, error) {
	var cl api.Cluster
	if err := getJSON(ctx, m, m.URL()+"/v1/cluster", &cl); err != nil {
		return 0, err
	}
	for _, n := range cl.Nodes {
		if n.ID == m.id {
			return n.AppliedRevision, nil
		}
	}
	return 0, fmt.Errorf("%s does not list itself in /v1/cluster", m.id)
}

// retryLater reports whether err says the write was not carried out for
// now: no leader, or a node still replaying after a start.
func retryLater(err error) bool { return isCode(err, "no_leader") || isCode(err, "not_ready") }

// isCode reports whether err is an API error with the given code.
func isCode(err error, code string) bool {
	var ae *client.Error
	return errors.As(err, &ae) && ae.Code == code
}

// putEntities upserts ents through cl until a write is acknowledged. After
// a write with an unknown outcome (leadership changed while committing,
// which a loaded machine makes likely) it writes again: upserting the same
// values twice leaves the same state.
func putEntities(t *testing.T, ctx context.Context, cl *client.Client, ents ...api.Entity) uint64 {
	t.Helper()
	var rev uint64
	eventually(t, waitLong, "an acknowledged write", func() error {
		var err error
		rev, err = cl.PutEntities(ctx, ents)
		if err != nil && writeOutcome(err) == outcomeNotApplied && !retryLater(err) {
			t.Fatalf("write refused: %v", err)
		}
		return err
	})
	return rev
}

// publish publishes bundle(tag) through cl exactly once. After an unknown
// outcome it looks for the bundle's hash among the versions of a converged
// cluster before it publishes again, so that versions stay 1, 2, 3, ...
func (c *cluster) publish(ctx context.Context, cl *client.Client, tag string) api.PublishResponse {
	t := c.t
	t.Helper()
	files := bundle(tag)
	hash := store.HashFiles(files)
	var resp api.PublishResponse
	eventually(t, waitLong, "an acknowledged publish of "+tag, func() error {
		var err error
		resp, err = cl.Publish(ctx, files, client.PublishOptions{Message: tag})
		switch writeOutcome(err) {
		case outcomeOK:
			return nil
		case outcomeNotApplied:
			if !retryLater(err) {
				t.Fatalf("publish refused: %v", err)
			}
			return err
		}
		rev := c.waitConverged(0)
		for _, m := range c.members {
			if m.node() == nil {
				continue
			}
			vs, verr := versionsAt(ctx, m, rev)
			if verr != nil {
				return fmt.Errorf("%v; then listing versions: %w", err, verr)
			}
			for _, v := range vs {
				if v.Hash == hash {
					resp = api.PublishResponse{Version: v.Version, Revision: v.Revision, Hash: v.Hash}
					return nil
				}
			}
			break
		}
		return err
	})
	return resp
}

// bundleYAML is a small valid bundle; %s makes each publish distinct.
const bundleYAML = `kind: Policy
name: systemtest
layer: platform
description: %s
rules:
  - name: readers-query
    effect: allow
    actions: ["data.query"]
    when: has(subject.properties.roles) && "reader" in subject.properties.roles
`

func bundle(tag string) []api.File {
	return []api.File{{Name: "bundle.yaml", Data: fmt.Appendf(nil, bundleYAML, tag)}}
}

// queryBy asks whether subject agent/id may run data.query.
func queryBy(id string, minRevision uint64) api.CheckRequest {
	return api.CheckRequest{
		Subject:     api.Entity{Type: "agent", ID: id},
		Action:      api.Action{Name: "data.query"},
		Resource:    api.Entity{Type: "table", ID: "t1"},
		MinRevision: minRevision,
	}
}

// logSink keeps the newest node log output in memory, to print when a test
// fails. Nodes keep logging from raft goroutines after a test ends; a
// buffer (unlike t.Log) does not mind.
type logSink struct {
	mu  sync.Mutex
	buf []byte // guarded by mu
}

const logSinkMax = 256 << 10

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf = append(s.buf, p...)
	if over := len(s.buf) - logSinkMax; over > 0 {
		s.buf = s.buf[over:]
	}
	return len(p), nil
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.TrimSpace(string(s.buf))
}
