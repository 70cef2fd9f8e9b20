package region_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/auth"
	"github.com/aibos/kernel/internal/node"
	"github.com/aibos/kernel/internal/node/nodetest"
	"github.com/aibos/kernel/internal/regiontest"
	"github.com/aibos/kernel/internal/server"
)

// A federation of three regions × three nodes on loopback, each region on
// its own 127.0.x.0/24, with delaying proxies between them: 40 ms each way
// between domains, 10 ms inside one (us-east ↔ eu-*, eu-west ↔
// eu-central). Every region reaches every other through proxies of its
// own (Via), so one region's link can be cut alone; clients reach a region
// through its registry endpoints, proxies too.

const (
	crossDomain = 40 * time.Millisecond
	inDomain    = 10 * time.Millisecond
	nodesPer    = 3
)

type regionSpec struct {
	id, domain, standby string
	net                 int // 127.0.<net>.0/24
}

var threeRegions = []regionSpec{
	{id: "us-east", domain: "us", net: 11},
	{id: "eu-west", domain: "eu", standby: "eu-central", net: 12},
	{id: "eu-central", domain: "eu", net: 13},
}

type fedRegion struct {
	regionSpec
	cfgs  []node.Config
	nodes []*node.Node // nil where stopped
	// front are the proxies the registry lists (clients' way in); via
	// [src] the proxies region src reaches this one through.
	front []*regiontest.Proxy
	via   map[string][]*regiontest.Proxy
	root  string // the region's root token
	logs  string // the directory of its nodes' log files
}

type federation struct {
	t       *testing.T
	regions map[string]*fedRegion
	order   []string
	tokens  map[string]string // each region's token (principal region:ID)
}

// freeAddr reserves a port on ip by listening and closing.
func freeAddr(t *testing.T, ip string) string {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func urls(ps []*regiontest.Proxy) []string {
	var out []string
	for _, p := range ps {
		out = append(out, "http://"+p.Addr())
	}
	return out
}

func delay(a, b regionSpec) time.Duration {
	if a.domain == b.domain {
		return inDomain
	}
	return crossDomain
}

// startFederation starts the regions, the first as primary.
func startFederation(t *testing.T, specs []regionSpec, mod func(region string, c *node.Config)) *federation {
	t.Helper()
	f := &federation{t: t, regions: map[string]*fedRegion{}}
	// Each region's token, made at the primary (so global), named for
	// the region: a standby receives tenant data only with its own.
	secrets, accessors := map[string]string{}, map[string]string{}
	for _, s := range specs {
		secret, accessor, err := auth.NewOperatorToken(nil)
		if err != nil {
			t.Fatal(err)
		}
		secrets[s.id], accessors[s.id] = secret, accessor
	}
	f.tokens = secrets
	// Addresses first: proxies need their targets, and nodes their
	// endpoints, before anything starts.
	for _, s := range specs {
		r := &fedRegion{regionSpec: s, via: map[string][]*regiontest.Proxy{}, logs: t.TempDir()}
		for i := range nodesPer {
			ip := fmt.Sprintf("127.0.%d.%d", s.net, i+1)
			c := nodetest.Config(t, fmt.Sprintf("%s-n%d", s.id, i+1))
			c.HTTPAddr, c.RaftAddr = freeAddr(t, ip), freeAddr(t, ip)
			c.Region = s.id
			r.cfgs = append(r.cfgs, c)
		}
		f.regions[s.id] = r
		f.order = append(f.order, s.id)
	}
	for _, s := range specs {
		r := f.regions[s.id]
		for i, c := range r.cfgs {
			p, err := regiontest.NewProxy(fmt.Sprintf("127.0.%d.%d:0", s.net, 100+i), c.HTTPAddr, crossDomain)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			r.front = append(r.front, p)
			for _, o := range specs {
				if o.id == s.id {
					continue
				}
				// Region o reaches s through proxies on o's own network.
				p, err := regiontest.NewProxy(fmt.Sprintf("127.0.%d.%d:0", o.net, 150+10*s.net%100+i), c.HTTPAddr, delay(s, o))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { p.Close() })
				r.via[o.id] = append(r.via[o.id], p)
			}
		}
	}
	primary := f.regions[specs[0].id]
	for _, s := range specs {
		r := f.regions[s.id]
		for i := range r.cfgs {
			c := &r.cfgs[i]
			c.Regions = node.RegionConfig{
				Domain: s.domain, Endpoints: urls(r.front), Standby: s.standby, Token: secrets[s.id],
				Via: map[string][]string{}, Lease: 2 * time.Second, FailoverAfter: 5 * time.Second,
			}
			for _, o := range specs {
				if o.id != s.id {
					c.Regions.Via[o.id] = urls(f.regions[o.id].via[s.id])
				}
			}
			if r != primary {
				c.Regions.Join = c.Regions.Via[primary.id]
			}
			logf, err := os.Create(filepath.Join(r.logs, c.NodeID+".log"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { logf.Close() })
			c.Logger = slog.New(slog.NewJSONHandler(logf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			if mod != nil {
				mod(s.id, c)
			}
		}
	}
	for _, id := range f.order {
		r := f.regions[id]
		r.nodes = make([]*node.Node, nodesPer)
		for i := range r.cfgs {
			if i > 0 {
				r.cfgs[i].Join = r.cfgs[0].HTTPAddr
				r.cfgs[i].Token = r.root
			}
			r.nodes[i] = nodetest.Start(t, r.cfgs[i])
			if i == 0 {
				r.root = r.nodes[0].RootToken()
			}
		}
		if r == primary {
			// The region token, with a secret every node was given: made
			// at the primary, so global.
			for _, s := range specs {
				ctx, cancel := context.WithTimeout(context.Background(), nodetest.WaitLong)
				_, err := r.nodes[0].Store.CreateToken(ctx, api.Token{Accessor: accessors[s.id], Principal: server.StandbyPrincipal(s.id), Roles: []string{auth.RoleRegion}, CreatedAt: time.Now().UTC(), CreatedBy: "test"}, auth.Hash(secrets[s.id]))
				cancel()
				if err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			f.dumpLogs()
		}
	})
	f.waitConverged()
	return f
}

// dumpLogs prints the warnings and errors of every node's log.
func (f *federation) dumpLogs() {
	for _, id := range f.order {
		files, _ := filepath.Glob(filepath.Join(f.regions[id].logs, "*.log"))
		for _, fn := range files {
			b, _ := os.ReadFile(fn)
			var lines []string
			for _, l := range strings.Split(string(b), "\n") {
				if strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, `"level":"ERROR"`) || strings.Contains(l, "region:") || strings.Contains(l, "global stream") {
					lines = append(lines, l)
				}
			}
			if len(lines) > 80 {
				lines = lines[len(lines)-80:]
			}
			f.t.Logf("%s:\n%s", filepath.Base(fn), strings.Join(lines, "\n"))
		}
	}
}

// client is an SDK client of region id (its root token unless token).
func (f *federation) client(id, token string) *client.Client {
	f.t.Helper()
	r := f.regions[id]
	if token == "" {
		token = r.root
	}
	var us []string
	for _, n := range r.nodes {
		if n != nil {
			us = append(us, n.URL())
		}
	}
	c, err := client.New(us, client.Options{RetryFor: nodetest.WaitLong, Token: token})
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

// running reports whether any node of the region runs.
func (r *fedRegion) running() bool {
	for _, n := range r.nodes {
		if n != nil {
			return true
		}
	}
	return false
}

// live is a running node of region id.
func (f *federation) live(id string) *node.Node {
	for _, n := range f.regions[id].nodes {
		if n != nil {
			return n
		}
	}
	f.t.Fatalf("region %s has no running node", id)
	return nil
}

func (f *federation) leader(id string) (int, *node.Node) {
	f.t.Helper()
	deadline := time.Now().Add(nodetest.WaitLong)
	for time.Now().Before(deadline) {
		for i, n := range f.regions[id].nodes {
			if n != nil && n.Store.IsLeader() {
				return i, n
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.t.Fatalf("region %s has no leader", id)
	return 0, nil
}

// getJSON GETs path from node n as token into out and returns the status.
func getJSON(t *testing.T, n *node.Node, token, path string, out any) int {
	t.Helper()
	return doJSON(t, n.URL(), token, http.MethodGet, path, nil, out)
}

func doJSON(t *testing.T, base, token, method, path string, in, out any) int {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = strings.NewReader(string(b))
	}
	req, err := http.NewRequest(method, base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	hc := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if raw, ok := out.(*[]byte); ok {
		*raw = data
	} else if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, data)
		}
	}
	return resp.StatusCode
}

// regions is the registry as region id's node n answers it.
func (f *federation) registry(n *node.Node, root string) api.Regions {
	var got api.Regions
	if st := getJSON(f.t, n, root, "/v1/regions", &got); st != http.StatusOK {
		f.t.Fatalf("GET /v1/regions: %d", st)
	}
	return got
}

// waitConverged waits until every running region has every region
// registered (with its standby) and every running node has applied the
// global version of the primary of the newest epoch.
func (f *federation) waitConverged() {
	f.t.Helper()
	f.waitFor("the regions to converge", func() (bool, string) {
		var gvs []string
		var want, epoch uint64
		for _, id := range f.order {
			r := f.regions[id]
			if !r.running() {
				continue
			}
			reg := f.registry(f.live(id), r.root)
			if reg.Primary == id && reg.Epoch >= epoch {
				want, epoch = reg.GlobalVersion, reg.Epoch
			}
			gvs = append(gvs, fmt.Sprintf("%s:%d/e%d(%d regions)", id, reg.GlobalVersion, reg.Epoch, len(reg.Regions)))
			if len(reg.Regions) != len(f.order) {
				return false, strings.Join(gvs, " ")
			}
			for _, rr := range reg.Regions {
				if s := f.regions[rr.ID].standby; s != "" && rr.Standby != s {
					return false, rr.ID + " has no standby yet"
				}
			}
		}
		for _, id := range f.order {
			if !f.regions[id].running() {
				continue
			}
			for _, n := range f.regions[id].nodes {
				if n == nil {
					continue
				}
				if reg := f.registry(n, f.regions[id].root); reg.GlobalVersion != want || reg.Epoch != epoch {
					return false, fmt.Sprintf("%s at %d/e%d, want %d/e%d (%s)", n.Config().NodeID, reg.GlobalVersion, reg.Epoch, want, epoch, strings.Join(gvs, " "))
				}
			}
		}
		return true, ""
	})
}

func (f *federation) waitFor(what string, cond func() (bool, string)) {
	f.t.Helper()
	deadline := time.Now().Add(nodetest.WaitLong)
	last := ""
	for time.Now().Before(deadline) {
		ok, why := cond()
		if ok {
			return
		}
		last = why
		time.Sleep(50 * time.Millisecond)
	}
	f.t.Fatalf("timed out waiting for %s: %s", what, last)
}

// cut partitions region id from every other region (both ways) and from
// its clients' front proxies; heal ends it.
func (f *federation) cut(id string, on bool) {
	set := func(p *regiontest.Proxy) {
		if on {
			p.Cut()
		} else {
			p.Heal()
		}
	}
	r := f.regions[id]
	for _, ps := range r.via {
		for _, p := range ps {
			set(p)
		}
	}
	for _, o := range f.regions {
		for _, p := range o.via[id] {
			set(p)
		}
	}
}

// cutLink partitions src from dst only (src's calls to dst).
func (f *federation) cutLink(src, dst string, on bool) {
	for _, p := range f.regions[dst].via[src] {
		if on {
			p.Cut()
		} else {
			p.Heal()
		}
	}
}

func (f *federation) kill(id string, i int) {
	r := f.regions[id]
	r.nodes[i].Kill()
	r.nodes[i] = nil
}

func (f *federation) restart(id string, i int) {
	r := f.regions[id]
	c := r.cfgs[i]
	if i > 0 {
		c.Join, c.Token = r.cfgs[0].HTTPAddr, r.root
	}
	r.nodes[i] = nodetest.Start(f.t, c)
}

// restartAll restarts every stopped node of region id at once (a node
// alone cannot elect a leader of a three-node region).
func (f *federation) restartAll(id string) {
	r := f.regions[id]
	var wg sync.WaitGroup
	errs := make([]error, len(r.nodes))
	for i, n := range r.nodes {
		if n != nil {
			continue
		}
		c := r.cfgs[i]
		if i > 0 {
			c.Join, c.Token = r.cfgs[0].HTTPAddr, r.root
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			nn, err := node.Start(context.Background(), c)
			if err != nil {
				errs[i] = err
				return
			}
			f.t.Cleanup(func() { nn.Close() })
			r.nodes[i] = nn
		}(i)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			f.t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), nodetest.WaitLong)
	defer cancel()
	for _, n := range r.nodes {
		if err := n.WaitReady(ctx); err != nil {
			f.t.Fatal(err)
		}
	}
}

// versions is region id's bundle history as its node n answers it.
func versions(t *testing.T, n *node.Node, token string) []api.VersionInfo {
	t.Helper()
	var vs struct {
		Versions []api.VersionInfo `json:"versions"`
	}
	if st := getJSON(t, n, token, "/v1/policies/versions", &vs); st != http.StatusOK {
		t.Fatalf("versions: %d", st)
	}
	return vs.Versions
}

func bundle(i int) []api.File {
	return []api.File{{Name: "policy.yaml", Data: []byte(fmt.Sprintf(`kind: Policy
name: p
layer: tenant
rules:
  - name: r%d
    effect: allow
    actions: ["data.read"]
`, i))}}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func bundleBody(i int) io.Reader { return strings.NewReader(string(bundle(i)[0].Data)) }
