package region

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/store"
)

// StreamPath is the global stream's route: a WebSocket served by the
// primary region's leader, resumed from (global version, epoch).
const StreamPath = "/v1/regions/stream"

// Message types of the global stream.
const (
	msgEntries   = "entries"   // primary → follower: entries in order
	msgReset     = "reset"     // primary → follower: the whole global state
	msgHeartbeat = "heartbeat" // primary → follower: alive, at gv
	msgError     = "error"     // primary → follower: why it closes
	msgAck       = "ack"       // follower → primary: applied up to gv
)

// streamMsg is one message of the global stream.
type streamMsg struct {
	Type          string             `json:"type"`
	Epoch         uint64             `json:"epoch,omitempty"`
	Primary       string             `json:"primary,omitempty"`
	GlobalVersion uint64             `json:"gv,omitempty"`
	Entries       []api.GlobalEntry  `json:"entries,omitempty"`
	State         *store.GlobalState `json:"state,omitempty"`
	Code          string             `json:"code,omitempty"`
	Message       string             `json:"message,omitempty"`
	// Region is the follower's id (ack).
	Region string `json:"region,omitempty"`
}

// maxStreamMessage bounds a stream message: a reset carries every bundle
// version.
const maxStreamMessage = 256 << 20

// maxEntriesPerMessage bounds the entries of one message.
const maxEntriesPerMessage = 256

// StreamRequest is a follower's position, from the stream's query.
type StreamRequest struct {
	Region string // the follower
	From   uint64 // the global version it applied
	Epoch  uint64 // the epoch of its entry at From
	// Promised and PromisedTo: the newest epoch it follows, and whose.
	Promised   uint64
	PromisedTo string
}

// ParseStreamRequest reads a stream request's query: region, from,
// epoch, promised, promised_to.
func ParseStreamRequest(q url.Values) (StreamRequest, error) {
	var sr StreamRequest
	sr.Region = q.Get("region")
	if err := store.ValidRegionID(sr.Region); err != nil {
		return sr, fmt.Errorf("region: %v", err)
	}
	for _, f := range []struct {
		name string
		to   *uint64
	}{{"from", &sr.From}, {"epoch", &sr.Epoch}, {"promised", &sr.Promised}} {
		v := q.Get(f.name)
		if v == "" {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return sr, fmt.Errorf("%s %q is not a number", f.name, v)
		}
		*f.to = n
	}
	if sr.PromisedTo = q.Get("promised_to"); sr.PromisedTo != "" {
		if err := store.ValidRegionID(sr.PromisedTo); err != nil {
			return sr, fmt.Errorf("promised_to: %v", err)
		}
	}
	return sr, nil
}

func (sr StreamRequest) query() string {
	q := url.Values{}
	q.Set("region", sr.Region)
	q.Set("from", strconv.FormatUint(sr.From, 10))
	q.Set("epoch", strconv.FormatUint(sr.Epoch, 10))
	q.Set("promised", strconv.FormatUint(sr.Promised, 10))
	if sr.PromisedTo != "" {
		q.Set("promised_to", sr.PromisedTo)
	}
	return q.Encode()
}

// ServeStream serves the global stream to a follower on w (after the
// server authorized it). Only the primary's leader serves it.
func (m *Manager) ServeStream(w http.ResponseWriter, r *http.Request) {
	sr, err := ParseStreamRequest(r.URL.Query())
	if err != nil {
		writeErr(w, http.StatusBadRequest, api.CodeBadRequest, "global stream: "+err.Error())
		return
	}
	v, ok := m.leading(w, "the global stream")
	if !ok {
		return
	}
	switch {
	case sr.Promised > v.Promised && sr.PromisedTo != "" && sr.PromisedTo != m.cfg.Self:
		// The follower knows a newer epoch than this region: learn it, so
		// a stale primary stops writing at once.
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		err := m.st.PromiseEpoch(ctx, sr.Promised, sr.PromisedTo)
		cancel()
		m.log.Warn("region: learnt a newer epoch from a follower", "epoch", sr.Promised, "primary", sr.PromisedTo, "err", err)
		writeErr(w, http.StatusConflict, api.CodeStaleEpoch, fmt.Sprintf("region %s follows epoch %d (primary %s); this region is in epoch %d", sr.Region, sr.Promised, sr.PromisedTo, v.Epoch))
		return
	case !v.IsPrimary:
		writeErr(w, http.StatusConflict, api.CodeNotPrimary, fmt.Sprintf("region %s is not the primary; follow %s (epoch %d)", m.cfg.Self, v.Following(), v.Promised))
		return
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return
	}
	c.SetReadLimit(1 << 16)
	m.streams.Add(1)
	defer m.streams.Add(-1)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(m.ctx, cancel)() // Close ends served streams too
	go m.readAcks(ctx, cancel, c, sr.Region)
	err = m.serveStream(ctx, c, sr)
	if err != nil && ctx.Err() == nil {
		_ = wsjson.Write(ctx, c, streamMsg{Type: msgError, Code: api.CodeStaleEpoch, Message: err.Error()})
	}
	c.Close(websocket.StatusNormalClosure, "")
}

func (m *Manager) serveStream(ctx context.Context, c *websocket.Conn, sr StreamRequest) error {
	from := sr.From
	v, _ := m.st.Region()
	if from == 0 || from > v.GlobalVersion || m.st.EntryEpoch(from) != sr.Epoch {
		// A new follower, or one whose log is not a prefix of ours: the
		// whole global state, and it quarantines what it has beyond it.
		g, _ := m.st.GlobalState()
		if err := wsjson.Write(ctx, c, streamMsg{Type: msgReset, Epoch: g.Epoch, Primary: g.Primary, GlobalVersion: uint64(len(g.Log)), State: &g}); err != nil {
			return nil
		}
		from = uint64(len(g.Log))
	}
	for {
		v, ok := m.st.Region()
		if !ok || !v.IsPrimary || !m.st.IsLeader() {
			return fmt.Errorf("region %s stopped being the primary (epoch %d, primary %s)", m.cfg.Self, v.Promised, v.Following())
		}
		entries, gv := m.st.GlobalEntries(from, maxEntriesPerMessage)
		if len(entries) > 0 {
			if err := wsjson.Write(ctx, c, streamMsg{Type: msgEntries, Epoch: v.Epoch, Primary: v.Self, GlobalVersion: gv, Entries: entries}); err != nil {
				return nil
			}
			from = entries[len(entries)-1].GlobalVersion
			continue
		}
		wait, cancel := context.WithTimeout(ctx, m.cfg.Heartbeat)
		err := m.st.WaitForGlobalVersion(wait, from+1)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			continue
		}
		if err := wsjson.Write(ctx, c, streamMsg{Type: msgHeartbeat, Epoch: v.Epoch, Primary: v.Self, GlobalVersion: gv}); err != nil {
			return nil
		}
	}
}

// readAcks records the follower's acknowledgements: each renews the
// primary's lease by that region.
func (m *Manager) readAcks(ctx context.Context, cancel context.CancelFunc, c *websocket.Conn, region string) {
	defer cancel()
	for {
		var msg streamMsg
		if err := wsjson.Read(ctx, c, &msg); err != nil {
			return
		}
		if msg.Type != msgAck {
			continue
		}
		if v, _ := m.st.Region(); msg.Epoch != v.Epoch {
			continue // it follows another epoch: no lease, no commit
		}
		m.mu.Lock()
		m.acks[region] = ack{at: m.cfg.Now(), gv: msg.GlobalVersion}
		m.mu.Unlock()
		m.ackWait.Broadcast()
	}
}

// followLoop follows the primary's stream while this node leads a
// secondary region, reconnecting (and looking for a newer epoch among the
// regions) when the stream ends.
func (m *Manager) followLoop(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		v, ok := m.st.Region()
		if !ok || v.IsPrimary {
			return
		}
		err := m.followOnce(ctx, &v)
		if ctx.Err() != nil {
			return
		}
		m.mu.Lock()
		m.follow.connected = false
		if err != nil {
			m.follow.err = err.Error()
		}
		lost := m.cfg.Now().Sub(m.follow.lastContact)
		m.mu.Unlock()
		if err != nil {
			m.log.Debug("region: global stream", "err", err)
		}
		if lost > 2*m.cfg.Heartbeat || err != nil {
			m.discover(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// sourceEndpoints are the endpoints of the region this one follows; before
// the first reset (no registry yet), the configured Join URLs.
func (m *Manager) sourceEndpoints(v *store.RegionView) (string, []string) {
	src := v.Following()
	if src != "" && src != m.cfg.Self {
		if eps := m.endpointsOf(v, src); len(eps) > 0 {
			return src, eps
		}
	}
	return src, m.cfg.Join
}

// followOnce runs one connection of the global stream, until it fails.
func (m *Manager) followOnce(ctx context.Context, v *store.RegionView) error {
	src, eps := m.sourceEndpoints(v)
	if src == m.cfg.Self {
		return errors.New("this region promised itself an epoch it has not begun (a promotion that did not finish): promote again")
	}
	if len(eps) == 0 {
		return errors.New("no primary known: start with --join URL of the primary")
	}
	// A promise of a newer epoch (a vote, or an epoch learnt) ends this
	// connection, or its dialling, at once: the source changed.
	repointed := m.repoint.Wait()
	ctx, cancelConn := context.WithCancel(ctx)
	defer cancelConn()
	go func() {
		select {
		case <-repointed:
			cancelConn()
		case <-ctx.Done():
		}
	}()
	sr := StreamRequest{Region: m.cfg.Self, From: v.GlobalVersion, Epoch: v.LastEpoch, Promised: v.Promised, PromisedTo: v.PromisedTo}
	c, err := m.dial(ctx, eps, StreamPath+"?"+sr.query())
	if err != nil {
		return err
	}
	defer c.CloseNow()
	m.mu.Lock()
	m.follow.connected, m.follow.source, m.follow.err = true, src, ""
	m.mu.Unlock()
	var lastRegister time.Time
	for {
		// A read must not outlive a silent primary: heartbeats come every
		// Heartbeat, so a few missed ones mean it is gone (or cut off).
		rctx, cancel := context.WithTimeout(ctx, 5*m.cfg.Heartbeat+time.Second)
		var msg streamMsg
		err := wsjson.Read(rctx, c, &msg)
		cancel()
		if err != nil {
			return fmt.Errorf("global stream from %s: %w", src, err)
		}
		cur, _ := m.st.Region()
		if msg.Epoch < cur.Promised {
			return fmt.Errorf("%s sends epoch %d; this region follows epoch %d", src, msg.Epoch, cur.Promised)
		}
		m.mu.Lock()
		m.follow.lastContact = m.cfg.Now()
		m.follow.primaryVersion = max(m.follow.primaryVersion, msg.GlobalVersion)
		m.mu.Unlock()
		switch msg.Type {
		case msgReset:
			if msg.State == nil {
				return errors.New("reset without state")
			}
			actx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := m.st.ResetGlobal(actx, *msg.State)
			cancel()
			if err != nil {
				return fmt.Errorf("reset from %s: %w", src, err)
			}
			m.log.Info("region: global state reset from the primary", "primary", msg.Primary, "epoch", msg.Epoch, "global_version", msg.GlobalVersion)
			m.mu.Lock()
			m.follow.primaryVersion = msg.GlobalVersion
			m.mu.Unlock()
			m.registerRemote(ctx, src)
		case msgEntries:
			actx, cancel := context.WithTimeout(ctx, 30*time.Second)
			_, err := m.st.ApplyGlobal(actx, msg.Epoch, msg.Entries)
			cancel()
			if err != nil {
				return fmt.Errorf("apply entries from %s: %w", src, err)
			}
		case msgHeartbeat:
		case msgError:
			return fmt.Errorf("%s: %s: %s", src, msg.Code, msg.Message)
		default:
			continue
		}
		now, _ := m.st.Region()
		if m.needsRegistering(&now) && time.Since(lastRegister) > time.Second {
			lastRegister = time.Now()
			go m.registerRemote(ctx, src)
		}
		if now.Promised > msg.Epoch {
			return fmt.Errorf("promised epoch %d meanwhile", now.Promised)
		}
		if err := wsjson.Write(ctx, c, streamMsg{Type: msgAck, Region: m.cfg.Self, GlobalVersion: now.GlobalVersion, Epoch: now.Promised}); err != nil {
			return fmt.Errorf("ack to %s: %w", src, err)
		}
	}
}

// needsRegistering reports whether the registry lacks this region's
// entry as configured (its standby only once that is registered).
func (m *Manager) needsRegistering(v *store.RegionView) bool {
	want := m.selfEntry()
	have := v.Region(m.cfg.Self)
	if have == nil || strings.Join(have.Endpoints, ",") != strings.Join(want.Endpoints, ",") {
		return true
	}
	return want.Standby != "" && have.Standby != want.Standby && v.Region(want.Standby) != nil
}

// registerRemote adds (or updates) this region's registry entry at the
// primary.
func (m *Manager) registerRemote(ctx context.Context, primary string) {
	v, _ := m.st.Region()
	if !m.needsRegistering(&v) {
		return
	}
	want := m.selfEntry()
	if want.Standby != "" && v.Region(want.Standby) == nil {
		want.Standby = "" // named once the standby is registered
	}
	_, eps := m.sourceEndpoints(&v)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := m.call(cctx, eps, http.MethodPost, "/v1/regions", want, nil); err != nil {
		m.log.Warn("region: register with the primary", "primary", primary, "err", err)
	}
}

// discover asks every region of the registry which epoch it follows; a
// newer one than this region's is learnt (promised), so the follower
// moves to its primary and a stale primary stops writing.
func (m *Manager) discover(ctx context.Context) {
	v, ok := m.st.Region()
	if !ok {
		return
	}
	best, bestPrimary := v.Promised, ""
	for _, r := range v.Regions {
		if r.ID == m.cfg.Self {
			continue
		}
		var got api.Regions
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := m.call(cctx, m.endpointsOf(&v, r.ID), http.MethodGet, "/v1/regions", nil, &got)
		cancel()
		if err != nil {
			continue
		}
		if got.Epoch > best && got.Primary != "" {
			best, bestPrimary = got.Epoch, got.Primary
		}
	}
	if bestPrimary == "" {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := m.st.PromiseEpoch(cctx, best, bestPrimary); err != nil {
		m.log.Warn("region: learn epoch", "epoch", best, "primary", bestPrimary, "err", err)
		return
	}
	m.repoint.Broadcast()
	m.log.Info("region: follows a newer epoch", "epoch", best, "primary", bestPrimary)
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: api.ErrorDetail{Code: code, Message: msg}})
}

// dial opens a WebSocket to the first of eps that takes it, at path, with
// the region token. An answer of 409 (not the primary, or a stale one)
// ends the attempt: the caller looks for the newest epoch instead.
func (m *Manager) dial(ctx context.Context, eps []string, path string) (*websocket.Conn, error) {
	last := errors.New("no endpoint")
	for _, ep := range eps {
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, resp, err := websocket.Dial(dctx, strings.TrimSuffix(ep, "/")+path, &websocket.DialOptions{
			HTTPClient: m.http, HTTPHeader: http.Header{"Authorization": {"Bearer " + m.cfg.Token}},
			CompressionMode: websocket.CompressionDisabled,
		})
		cancel()
		if err == nil {
			c.SetReadLimit(maxStreamMessage)
			return c, nil
		}
		last = fmt.Errorf("dial %s: %w", ep, err)
		if resp != nil && resp.StatusCode == http.StatusConflict {
			return nil, last
		}
	}
	return nil, last
}

// leading answers 503 unless this node leads a region in multi-region
// mode: only the leader serves the streams.
func (m *Manager) leading(w http.ResponseWriter, what string) (store.RegionView, bool) {
	v, ok := m.st.Region()
	switch {
	case !ok:
		writeErr(w, http.StatusServiceUnavailable, api.CodeNotReady, "region "+m.cfg.Self+" is not in multi-region mode yet")
		return v, false
	case !m.st.IsLeader():
		writeErr(w, http.StatusServiceUnavailable, api.CodeNoLeader, "this node is not the leader of region "+m.cfg.Self+"; the leader serves "+what+" (try another endpoint)")
		return v, false
	}
	return v, true
}
