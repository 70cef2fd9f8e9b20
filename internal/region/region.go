// Package region runs a cluster as one region of a multi-region
// deployment: it puts the store in multi-region mode, follows the
// primary's global stream on the region's leader, serves that stream when
// this region is the primary, holds the primary's lease, promotes this
// region with the agreement of a majority of regions, and streams tenant
// data to the region's standby. See DESIGN.md in this directory.
package region

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/broadcast"
	"github.com/aibos/kernel/internal/store"
)

// Config configures a Manager.
type Config struct {
	Store *store.Store
	// Self and Domain are the region's id and residency domain.
	Self, Domain string
	// Endpoints are the base URLs this region is reached at, as the
	// registry lists them.
	Endpoints []string
	// Standby is the region (of the same domain) this one names as its
	// standby when it registers; "" for none.
	Standby string
	// Join are base URLs of the primary (or of any region that knows
	// it); empty: this region is the first primary.
	Join []string
	// Token is the credential for calls to other regions: an operator
	// token with the region role, made at the primary (tokens made at the
	// primary are global).
	Token string
	// TLS is the client configuration of calls to other regions (mutual
	// TLS with a certificate of the deployment's CA); nil: plain HTTP.
	TLS *tls.Config
	// Via are the endpoints this region reaches a region at, where they
	// are not the registry's (a private link between two regions).
	Via map[string][]string
	// Lease is how long the primary may write global state after a
	// majority of regions last acknowledged it (default 2 s). Heartbeat
	// is how often it tells followers it is alive (default 200 ms).
	Lease, Heartbeat time.Duration
	// FailoverAfter is how long a standby waits without hearing from its
	// home region before it asks the primary to fail the home over
	// (default 10 s; negative: never automatically).
	FailoverAfter time.Duration
	Logger        *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Manager is the multi-region runtime of one node. Every node runs one;
// only the region's leader acts on other regions.
type Manager struct {
	cfg  Config
	st   *store.Store
	log  *slog.Logger
	http *http.Client

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu sync.Mutex
	// acks: when each other region last acknowledged this (primary)
	// region's stream, and the global version it had applied then, on
	// this node (the leader serves the stream); ackWait is broadcast on
	// every ack.
	acks    map[string]ack
	ackWait broadcast.Notifier
	// repoint is broadcast when this region promised a newer epoch: the
	// follower drops its source and connects to the new one.
	repoint broadcast.Notifier
	// notBefore: no lease before this time (a promotion waits out the
	// old primary's lease).
	notBefore time.Time
	// follower's view of its primary.
	follow followState
	// standby's view of the home regions it stands by.
	standby map[string]*api.StandbyStatus

	streams atomic.Int64 // open global streams served
}

type ack struct {
	at time.Time
	gv uint64
}

type followState struct {
	connected      bool
	source         string
	primaryVersion uint64
	lastContact    time.Time
	err            string
}

// New starts the runtime; Close stops it.
func New(cfg Config) (*Manager, error) {
	if err := store.ValidRegionID(cfg.Self); err != nil {
		return nil, fmt.Errorf("region: --region: %v", err)
	}
	if err := store.ValidRegionID(cfg.Domain); err != nil {
		return nil, fmt.Errorf("region: --domain: %v", strings.Replace(err.Error(), "region id", "domain", 1))
	}
	if len(cfg.Join) > 0 && cfg.Token == "" {
		return nil, errors.New("region: following a primary needs a token valid there (--region-token-file): make one at the primary with aibos token create --role region")
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 2 * time.Second
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 200 * time.Millisecond
	}
	if cfg.FailoverAfter == 0 {
		cfg.FailoverAfter = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg.TLS
	m := &Manager{
		cfg: cfg, st: cfg.Store, log: cfg.Logger.With("region", cfg.Self),
		http: &http.Client{Transport: tr, Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
		acks:    map[string]ack{},
		standby: map[string]*api.StandbyStatus{},
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.st.SetGlobalGate(m.GlobalWriteAllowed)
	m.st.SetGlobalCommit(m.waitCommitted)
	m.wg.Add(1)
	go m.run()
	return m, nil
}

// Close stops the runtime's loops and streams and waits for them.
func (m *Manager) Close() error {
	m.cancel()
	m.wg.Wait()
	m.st.SetGlobalGate(nil)
	m.st.SetGlobalCommit(nil)
	return nil
}

// Self is the region's id.
func (m *Manager) Self() string { return m.cfg.Self }

// run is the leader's loop: initialise, register, follow or lead.
func (m *Manager) run() {
	defer m.wg.Done()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var follower, standby context.CancelFunc
	stop := func(c *context.CancelFunc) {
		if *c != nil {
			(*c)()
			*c = nil
		}
	}
	defer stop(&follower)
	defer stop(&standby)
	var followerDone, standbyDone chan struct{}
	var leaderSince, lastDiscover time.Time
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-tick.C:
		}
		if !m.st.IsLeader() {
			stop(&follower)
			stop(&standby)
			leaderSince = time.Time{}
			continue
		}
		v, ok := m.st.Region()
		if !ok {
			m.initialise()
			continue
		}
		if !v.IsPrimary && follower == nil {
			var ctx context.Context
			ctx, follower = context.WithCancel(m.ctx)
			followerDone = make(chan struct{})
			m.wg.Add(1)
			go func(done chan struct{}) {
				defer m.wg.Done()
				defer close(done)
				m.followLoop(ctx)
			}(followerDone)
		}
		if v.IsPrimary && follower != nil {
			stop(&follower)
		}
		if follower != nil {
			select {
			case <-followerDone:
				follower = nil
			default:
			}
		}
		if standby == nil && m.standsBy(&v) {
			var ctx context.Context
			ctx, standby = context.WithCancel(m.ctx)
			standbyDone = make(chan struct{})
			m.wg.Add(1)
			go func(done chan struct{}) {
				defer m.wg.Done()
				defer close(done)
				m.standbyLoop(ctx)
			}(standbyDone)
		}
		if standby != nil {
			select {
			case <-standbyDone:
				standby = nil
			default:
			}
		}
		if v.IsPrimary {
			m.registerSelf(&v)
			if leaderSince.IsZero() {
				leaderSince = time.Now()
			}
			// A primary that has not held its lease for a while (it was
			// cut off, or restarted after another region was promoted)
			// asks the others whether a newer epoch began.
			if time.Since(leaderSince) > m.cfg.Lease && time.Since(lastDiscover) > time.Second && m.GlobalWriteAllowed() != nil {
				lastDiscover = time.Now()
				m.discover(m.ctx)
			}
		}
	}
}

// initialise puts the store in multi-region mode: as the first primary
// without Join, else as a region waiting to follow.
func (m *Manager) initialise() {
	ctx, cancel := context.WithTimeout(m.ctx, 5*time.Second)
	defer cancel()
	if err := m.st.InitRegion(ctx, m.cfg.Self, m.cfg.Domain, m.cfg.Endpoints, len(m.cfg.Join) == 0, m.cfg.Now().UTC()); err != nil {
		m.log.Warn("region: init", "err", err)
		return
	}
	m.log.Info("multi-region mode", "domain", m.cfg.Domain, "primary", len(m.cfg.Join) == 0)
}

// registerSelf keeps this region's own registry entry (endpoints,
// standby) as configured, on the primary.
func (m *Manager) registerSelf(v *store.RegionView) {
	want := m.selfEntry()
	have := v.Region(m.cfg.Self)
	if have != nil && slices.Equal(have.Endpoints, want.Endpoints) && (have.Standby == want.Standby || want.Standby == "") {
		return
	}
	if want.Standby == "" && have != nil {
		want.Standby = have.Standby
	}
	if want.Standby != "" && v.Region(want.Standby) == nil {
		return // registered once its standby is
	}
	ctx, cancel := context.WithTimeout(m.ctx, 5*time.Second)
	defer cancel()
	if _, _, err := m.st.PutRegion(ctx, want); err != nil {
		m.log.Warn("region: register self", "err", err)
	}
}

func (m *Manager) selfEntry() api.Region {
	return api.Region{ID: m.cfg.Self, Domain: m.cfg.Domain, Endpoints: m.cfg.Endpoints, Standby: m.cfg.Standby}
}

// GlobalWriteAllowed is the store's gate for global writes here: the
// primary writes only while it holds its lease.
func (m *Manager) GlobalWriteAllowed() error {
	v, ok := m.st.Region()
	if !ok || !v.IsPrimary {
		return nil // the state machine refuses it, with the reason
	}
	if until := m.leaseUntil(&v); m.cfg.Now().After(until) {
		since := "yet"
		if !until.IsZero() {
			since = "since " + until.Add(-m.cfg.Lease).UTC().Format(time.RFC3339Nano)
		}
		return fmt.Errorf("%w: region %s has not heard from a majority of the %d regions %s (it holds no lease): it writes no global state until they follow it, or another region is promoted",
			store.ErrStaleRegionEpoch, v.Self, len(v.Regions), since)
	}
	return nil
}

// leaseUntil is until when the primary may write: Lease after the ack
// that makes a majority with itself (forever with no other region).
func (m *Manager) leaseUntil(v *store.RegionView) time.Time {
	n := len(v.Regions)
	if n <= 1 {
		return time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	need := n/2 + 1 - 1 // other regions beside itself
	m.mu.Lock()
	defer m.mu.Unlock()
	var times []time.Time
	for _, r := range v.Regions {
		if r.ID == v.Self {
			continue
		}
		if a, ok := m.acks[r.ID]; ok {
			times = append(times, a.at)
		}
	}
	if len(times) < need {
		return time.Time{}
	}
	sort.Slice(times, func(i, j int) bool { return times[i].After(times[j]) })
	until := times[need-1].Add(m.cfg.Lease)
	if until.Before(m.notBefore) {
		return time.Time{}
	}
	return until
}

// waitCommitted waits until a majority of regions (this one included)
// has applied global version gv: a global write is acknowledged only
// then, so that no promotion (which needs a majority too, and a candidate
// at least as far as each voter) can lose it. Bounded by twice the lease:
// a primary that cannot reach a majority for that long loses its lease.
func (m *Manager) waitCommitted(ctx context.Context, gv uint64) error {
	ctx, cancel := context.WithTimeout(ctx, 2*m.cfg.Lease)
	defer cancel()
	for {
		ch := m.ackWait.Wait()
		n, have, ok := m.committed(gv)
		if ok {
			return nil
		}
		// Waiting past the lease is pointless: without it the write
		// cannot be confirmed by this primary any more.
		v, _ := m.st.Region()
		lapse := time.Until(m.leaseUntil(&v))
		if lapse <= 0 {
			cancel()
		}
		select {
		case <-ch:
		case <-time.After(max(lapse, time.Millisecond)):
		case <-ctx.Done():
			return fmt.Errorf("%w: global version %d is applied in %d of %d regions, not a majority: it is lost if another region is promoted before they apply it; read the versions before writing again",
				store.ErrGlobalUnconfirmed, gv, have, n)
		}
	}
}

// committed reports whether a majority of the registry has applied gv.
func (m *Manager) committed(gv uint64) (n, have int, ok bool) {
	v, inMode := m.st.Region()
	if !inMode {
		return 1, 1, true
	}
	members := m.st.RegionsBefore(gv)
	n, have = len(members), 1
	m.mu.Lock()
	for _, id := range members {
		if id != v.Self && m.acks[id].gv >= gv {
			have++
		}
	}
	m.mu.Unlock()
	return n, have, n <= 1 || have >= n/2+1
}

// Status is the answer of GET /v1/replication.
func (m *Manager) Status() api.Replication {
	v, ok := m.st.Region()
	out := api.Replication{Region: m.cfg.Self, Domain: m.cfg.Domain}
	if !ok {
		out.Error = "not in multi-region mode yet"
		return out
	}
	out.Primary, out.Epoch, out.GlobalVersion = v.Primary, v.Epoch, v.GlobalVersion
	out.Quarantined = len(v.Quarantined)
	out.Role = api.RoleSecondary
	m.mu.Lock()
	f := m.follow
	for _, s := range m.standby {
		out.Standby = append(out.Standby, *s)
	}
	m.mu.Unlock()
	sort.Slice(out.Standby, func(i, j int) bool { return out.Standby[i].Source < out.Standby[j].Source })
	if v.IsPrimary {
		out.Role = api.RolePrimary
		out.Connected = true
		if !m.st.IsLeader() {
			out.Error = "this node is not the region's leader: the lease is held on the leader"
		} else if u := m.leaseUntil(&v); !u.IsZero() {
			out.LeaseUntil = u
		}
		return out
	}
	out.Connected, out.LastContact, out.PrimaryVersion, out.Error = f.connected, f.lastContact, f.primaryVersion, f.err
	if f.primaryVersion > v.GlobalVersion {
		out.LagVersions = f.primaryVersion - v.GlobalVersion
	}
	if !m.st.IsLeader() {
		out.Error = "this node is not the region's leader, which follows the primary"
	}
	return out
}

// endpointsOf are the endpoints this region calls region id at: Via's,
// else the registry's.
func (m *Manager) endpointsOf(v *store.RegionView, id string) []string {
	if eps := m.cfg.Via[id]; len(eps) > 0 {
		return eps
	}
	if r := v.Region(id); r != nil {
		return r.Endpoints
	}
	return nil
}

// Endpoints returns the endpoints of a region of the registry.
func (m *Manager) Endpoints(id string) []string {
	v, ok := m.st.Region()
	if !ok {
		return nil
	}
	if r := v.Region(id); r != nil {
		return r.Endpoints
	}
	return nil
}

// call sends a JSON request to the first endpoint of the list that
// answers, and decodes a 2xx answer into out.
func (m *Manager) call(ctx context.Context, endpoints []string, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = b
	}
	var last error
	for _, ep := range endpoints {
		req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(ep, "/")+path, bytes.NewReader(body))
		if err != nil {
			return err
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		req.Header.Set("Authorization", "Bearer "+m.cfg.Token)
		resp, err := m.http.Do(req)
		if err != nil {
			last = err
			continue
		}
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			var eb api.ErrorBody
			if json.Unmarshal(data, &eb) == nil && eb.Error.Code != "" {
				last = &RemoteError{Endpoint: ep, Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
			} else {
				last = &RemoteError{Endpoint: ep, Status: resp.StatusCode, Message: strings.TrimSpace(string(data))}
			}
			if resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusMisdirectedRequest {
				continue // another node of the region may be its leader
			}
			return last
		}
		if out != nil {
			if err := json.Unmarshal(data, out); err != nil {
				return fmt.Errorf("region: answer of %s%s: %w", ep, path, err)
			}
		}
		return nil
	}
	if last == nil {
		last = errors.New("no endpoint")
	}
	return last
}

// RemoteError is another region's error answer.
type RemoteError struct {
	Endpoint      string
	Status        int
	Code, Message string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("region %s: %d %s: %s", e.Endpoint, e.Status, e.Code, e.Message)
}
