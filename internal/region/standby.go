package region

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/store"
)

// StandbyPath is the tenant-data stream's route, served by a home region's
// leader to its standby (a region of the same domain), which applies it
// through its own Raft with the home's revision as cursor.
const StandbyPath = "/v1/regions/standby/stream"

// standbyMsg is one message of the tenant-data stream.
type standbyMsg struct {
	Type string `json:"type"` // changes | reset | heartbeat | error
	// Prev is the revision the changes follow, Revision the one they
	// bring the standby to.
	Prev     uint64               `json:"prev,omitempty"`
	Revision uint64               `json:"revision"`
	Changes  []store.TenantChange `json:"changes,omitempty"`
	Message  string               `json:"message,omitempty"`
}

const maxChangesPerMessage = 512

// standsBy reports whether this region is the standby of a region that is
// not failed over.
func (m *Manager) standsBy(v *store.RegionView) bool {
	return len(m.homes(v)) > 0
}

// homes are the regions this one stands by.
func (m *Manager) homes(v *store.RegionView) []api.Region {
	var out []api.Region
	for _, r := range v.Regions {
		if r.Standby == m.cfg.Self && r.ID != m.cfg.Self && r.Domain == m.cfg.Domain && !r.FailedOver {
			out = append(out, r)
		}
	}
	return out
}

// ServeStandby serves the tenant-data stream to this region's standby.
func (m *Manager) ServeStandby(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sb := q.Get("region")
	from, err := strconv.ParseUint(q.Get("from"), 10, 64)
	if err != nil && q.Get("from") != "" {
		writeErr(w, http.StatusBadRequest, api.CodeBadRequest, fmt.Sprintf("tenant-data stream: from %q is not a revision", q.Get("from")))
		return
	}
	v, ok := m.leading(w, "the tenant-data stream")
	if !ok {
		return
	}
	self := v.Region(m.cfg.Self)
	peer := v.Region(sb)
	switch {
	case self == nil || self.Standby == "" || self.Standby != sb:
		writeErr(w, http.StatusForbidden, api.CodeResidency, fmt.Sprintf("region %q is not the standby of %s: tenant data is streamed only to a region's standby", sb, m.cfg.Self))
		return
	case peer == nil || peer.Domain != self.Domain:
		writeErr(w, http.StatusForbidden, api.CodeResidency, fmt.Sprintf("region %s is not in domain %s: tenant data never leaves its domain", sb, self.Domain))
		return
	case self.FailedOver:
		writeErr(w, http.StatusConflict, api.CodeStaleEpoch, fmt.Sprintf("region %s was failed over to %s; it streams no tenant data", m.cfg.Self, sb))
		return
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return
	}
	c.SetReadLimit(1 << 12)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(m.ctx, cancel)()
	go func() {
		// The standby sends nothing; a read ends when it goes away.
		defer cancel()
		_, _, _ = c.Read(ctx)
	}()
	m.serveStandby(ctx, c, from)
	c.Close(websocket.StatusNormalClosure, "")
}

func (m *Manager) serveStandby(ctx context.Context, c *websocket.Conn, from uint64) {
	for ctx.Err() == nil {
		if !m.st.IsLeader() {
			_ = wsjson.Write(ctx, c, standbyMsg{Type: msgError, Message: "this node stopped leading region " + m.cfg.Self})
			return
		}
		changes, to, ok := m.st.TenantChanges(from, maxChangesPerMessage)
		if !ok {
			snap, rev := m.st.TenantSnapshot()
			if err := wsjson.Write(ctx, c, standbyMsg{Type: msgReset, Revision: rev, Changes: snap}); err != nil {
				return
			}
			from = rev
			continue
		}
		if len(changes) > 0 {
			if err := wsjson.Write(ctx, c, standbyMsg{Type: "changes", Prev: from, Revision: to, Changes: changes}); err != nil {
				return
			}
			from = to
			continue
		}
		wait, cancel := context.WithTimeout(ctx, m.cfg.Heartbeat)
		err := m.st.WaitForRevision(wait, m.st.AppliedRevision()+1)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if err := wsjson.Write(ctx, c, standbyMsg{Type: msgHeartbeat, Revision: m.st.AppliedRevision()}); err != nil {
				return
			}
		}
	}
}

// standbyLoop follows the tenant-data stream of every home this region
// stands by, while this node leads the region, and fails a home over when
// it has been silent for FailoverAfter.
func (m *Manager) standbyLoop(ctx context.Context) {
	running := map[string]context.CancelFunc{}
	defer func() {
		for _, c := range running {
			c()
		}
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		v, ok := m.st.Region()
		if !ok {
			continue
		}
		want := map[string]bool{}
		for _, h := range m.homes(&v) {
			want[h.ID] = true
			if running[h.ID] == nil {
				hctx, cancel := context.WithCancel(ctx)
				running[h.ID] = cancel
				m.wg.Add(1)
				go func(id string) {
					defer m.wg.Done()
					m.followHome(hctx, id)
				}(h.ID)
			}
		}
		for id, cancel := range running {
			if !want[id] {
				cancel()
				delete(running, id)
				m.mu.Lock()
				if s := m.standby[id]; s != nil {
					s.Connected, s.Serving = false, true
				}
				m.mu.Unlock()
			}
		}
	}
}

// followHome follows one home's tenant-data stream until ctx ends.
func (m *Manager) followHome(ctx context.Context, home string) {
	m.mu.Lock()
	st := m.standby[home]
	if st == nil {
		st = &api.StandbyStatus{Source: home}
		m.standby[home] = st
	}
	// Silence is counted from when this node started to follow: it may
	// have led the region before and followed the home then.
	st.LastContact = m.cfg.Now()
	m.mu.Unlock()
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		err := m.followHomeOnce(ctx, home)
		if ctx.Err() != nil {
			return
		}
		m.mu.Lock()
		st.Connected = false
		silent := m.cfg.Now().Sub(st.LastContact)
		m.mu.Unlock()
		m.log.Debug("region: tenant-data stream", "home", home, "err", err)
		if m.cfg.FailoverAfter > 0 && silent > m.cfg.FailoverAfter {
			m.failover(ctx, home, silent)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

func (m *Manager) followHomeOnce(ctx context.Context, home string) error {
	v, _ := m.st.Region()
	eps := m.endpointsOf(&v, home)
	from := m.st.StandbyCursor(home)
	c, err := m.dial(ctx, eps, fmt.Sprintf("%s?region=%s&from=%d", StandbyPath, m.cfg.Self, from))
	if err != nil {
		return err
	}
	defer c.CloseNow()
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*m.cfg.Heartbeat+time.Second)
		var msg standbyMsg
		err := wsjson.Read(rctx, c, &msg)
		cancel()
		if err != nil {
			return err
		}
		m.mu.Lock()
		st := m.standby[home]
		st.Connected, st.LastContact = true, m.cfg.Now()
		m.mu.Unlock()
		actx, acancel := context.WithTimeout(ctx, 30*time.Second)
		switch msg.Type {
		case "changes":
			err = m.st.ApplyStandby(actx, home, msg.Prev, msg.Revision, msg.Changes)
		case msgReset:
			err = m.st.ResetStandby(actx, home, msg.Revision, msg.Changes)
		case msgError:
			err = errors.New(msg.Message)
		}
		acancel()
		if err != nil {
			return err
		}
		m.mu.Lock()
		st.Revision = m.st.StandbyCursor(home)
		m.mu.Unlock()
	}
}

// failover asks the primary to declare home lost, so this region serves
// its tenants (a global write: every region routes them here then).
func (m *Manager) failover(ctx context.Context, home string, silent time.Duration) {
	v, _ := m.st.Region()
	m.log.Warn("region: home region silent; failing it over to this standby", "home", home, "silent", silent.Round(time.Millisecond))
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var err error
	if v.IsPrimary {
		if err = m.CheckSilent(home, m.cfg.FailoverAfter); err == nil {
			_, _, err = m.st.FailoverRegion(cctx, home, "region:"+m.cfg.Self, m.cfg.Now().UTC())
		}
	} else {
		err = m.call(cctx, m.endpointsOf(&v, v.Following()), http.MethodPost, "/v1/regions/"+home+"/failover", FailoverRequest{IfSilentFor: m.cfg.FailoverAfter.String()}, nil)
	}
	if err != nil {
		m.log.Warn("region: failover", "home", home, "err", err)
	}
}

// FailoverRequest is the body of POST /v1/regions/{id}/failover.
// IfSilentFor, set by a standby's automatic failover, makes the primary
// refuse while the region has acknowledged its stream within that time:
// a home cut off from its standby only is not lost.
type FailoverRequest struct {
	IfSilentFor string `json:"if_silent_for,omitempty"`
}

// ErrAlive: a failover refused because the region is heard from.
var ErrAlive = errors.New("region: the region is alive")

// CheckSilent returns ErrAlive if region id acknowledged this primary's
// stream within d (on this node, the primary's leader).
func (m *Manager) CheckSilent(id string, d time.Duration) error {
	m.mu.Lock()
	a, ok := m.acks[id]
	m.mu.Unlock()
	if ok && m.cfg.Now().Sub(a.at) < d {
		return fmt.Errorf("%w: region %s acknowledged the primary's stream %v ago; it is failed over only after %v of silence (an operator may fail it over without the condition)",
			ErrAlive, id, m.cfg.Now().Sub(a.at).Round(time.Millisecond), d)
	}
	return nil
}
