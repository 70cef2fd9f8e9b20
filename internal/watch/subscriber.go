package watch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/aibos/kernel/api"
)

// Why a subscription ended, besides the watcher leaving (its context ends)
// or a failed write.
var (
	errSlow    = errors.New("slow consumer")
	errClosing = errors.New("hub closing")
)

// subscriber is one watcher's state; only its Serve goroutine touches it.
type subscriber struct {
	h       *Hub
	c       *websocket.Conn
	content bool
	last    uint64 // the last version sent (or the watcher's from)
	lag     uint64 // how far behind it was when closed as slow
	rollout uint64 // the revision of the last rollout state sent or skipped
	kill    uint64 // the highest kill switch revision sent or skipped
	killsOn bool   // the active kill switches were sent on connect

	deadline *time.Timer // cuts the connection when a write takes too long
	timedOut atomic.Bool // set by deadline
}

// run sends every version after s.last, in order, then live versions and
// heartbeats. A version published after the subscription started (after
// version start) that the watcher is more than MaxLag behind makes it a
// slow consumer; the backlog it asked for with from does not count.
func (s *subscriber) run(ctx context.Context, start uint64) error {
	h := s.h
	if err := s.heartbeat(ctx); err != nil {
		return err
	}
	// An ended rollout is history, not news; an active one is sent once
	// the versions up to now are.
	if h.rollouts != nil {
		if r, ok := h.rollouts.Rollout(); ok && r.State != api.RolloutActive {
			s.rollout = r.Revision
		}
	}
	tick := time.NewTicker(h.cfg.Heartbeat)
	defer tick.Stop()
	for {
		// Take the wake-up channel before reading the replica: a version
		// applied after the read closes this channel.
		wake := h.wake.Wait()
		for cur := h.current(); s.last < cur; cur = h.current() {
			if lag := cur - max(s.last, start); lag > h.cfg.MaxLag {
				s.lag = lag
				return errSlow
			}
			if err := s.sendVersion(ctx, s.last+1); err != nil {
				return err
			}
			s.last++
			select {
			case <-h.closing:
				return errClosing
			default:
			}
		}
		if err := s.sendRollout(ctx); err != nil {
			return err
		}
		if err := s.sendKills(ctx); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-h.closing:
			return errClosing
		case <-wake:
		case <-tick.C:
			if err := s.heartbeat(ctx); err != nil {
				return err
			}
		}
	}
}

func (s *subscriber) sendVersion(ctx context.Context, v uint64) error {
	// Watchers of a live version all send the same bytes: the first one
	// encodes them for the rest.
	slot := &s.h.encoded[0]
	if s.content {
		slot = &s.h.encoded[1]
	}
	if e := slot.Load(); e != nil && e.version == v {
		return s.writeBytes(ctx, e.b)
	}
	bv, ok := s.h.src.Version(v)
	if !ok {
		// Versions are only ever appended; a missing one below the current
		// version means the replica was replaced under us.
		return fmt.Errorf("watch: version %d vanished from the replica", v)
	}
	ev := api.WatchEvent{
		Type: api.WatchBundle, Version: bv.Version, Revision: bv.Revision, Hash: bv.Hash,
		Parent: bv.Parent, RollbackOf: bv.RollbackOf, Author: bv.Author, Message: bv.Message, Time: bv.Time,
	}
	if s.content {
		ev.Files = bv.Files
	}
	b, err := json.Marshal(&ev)
	if err != nil {
		return err
	}
	slot.Store(&encodedVersion{version: v, b: b})
	return s.writeBytes(ctx, b)
}

// sendRollout sends the latest rollout state if it changed since the last
// one sent. It follows the versions, so a promote's new version arrives
// before the rollout event that names it.
func (s *subscriber) sendRollout(ctx context.Context) error {
	if s.h.rollouts == nil {
		return nil
	}
	r, ok := s.h.rollouts.Rollout()
	if !ok || r.Revision <= s.rollout {
		return nil
	}
	s.rollout = r.Revision
	ev := &api.WatchEvent{Type: api.WatchRollout, Version: s.last, Revision: r.Revision, Rollout: r}
	if s.content && r.State == api.RolloutActive {
		// The candidate read after the rollout may belong to a later one;
		// then that rollout's event follows, and this one goes without
		// files rather than with another's.
		if c, ok := s.h.rollouts.RolloutCandidate(); ok && c.Version == r.Candidate && (r.CandidateHash == "" || c.Hash == r.CandidateHash) {
			ev.Files = c.Files
		}
	}
	return s.write(ctx, ev)
}

// sendKills sends, the first time, every active kill switch; later, every
// switch set or lifted since the last one sent, in revision order. Like
// rollouts it sends state: a switch set and lifted between two wake-ups
// is sent once, lifted. A switch's revision is that of its last change,
// and revisions only grow, so nothing is sent twice or missed.
func (s *subscriber) sendKills(ctx context.Context) error {
	src := s.h.kills
	if src == nil || s.killsOn && src.KillRevision() <= s.kill {
		return nil
	}
	first := !s.killsOn
	s.killsOn = true
	var send []api.KillSwitch
	last := s.kill
	for _, k := range src.Kills() {
		if first && k.Active || !first && k.Revision > s.kill {
			send = append(send, k)
		}
		last = max(last, k.Revision)
	}
	s.kill = last
	sort.Slice(send, func(i, j int) bool { return send[i].Revision < send[j].Revision })
	for i := range send {
		if err := s.write(ctx, &api.WatchEvent{Type: api.WatchKill, Version: s.last, Revision: send[i].Revision, Kill: &send[i]}); err != nil {
			return err
		}
	}
	return nil
}

// encodedVersion is the message of one version, as sent.
type encodedVersion struct {
	version uint64
	b       []byte
}

func (s *subscriber) heartbeat(ctx context.Context) error {
	ev := api.WatchEvent{Type: api.WatchHeartbeat, Revision: s.h.src.AppliedRevision()}
	if cur, ok := s.h.src.Current(); ok {
		ev.Version = cur.Version
		// OnApply runs before the applied revision moves: report at least
		// the revision of the version reported.
		ev.Revision = max(ev.Revision, cur.Revision)
	}
	return s.write(ctx, &ev)
}

func (s *subscriber) write(ctx context.Context, ev *api.WatchEvent) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	return s.writeBytes(ctx, b)
}

// writeBytes sends one message within WriteTimeout, or cuts the connection:
// a socket that stayed full that long has no room for a close frame
// either. One timer per subscriber, re-armed per write, is cheaper than a
// deadline context per write when a node serves thousands of watchers.
func (s *subscriber) writeBytes(ctx context.Context, b []byte) error {
	if s.deadline == nil {
		s.deadline = time.AfterFunc(s.h.cfg.WriteTimeout, func() {
			s.timedOut.Store(true)
			s.c.CloseNow()
		})
	} else {
		s.deadline.Reset(s.h.cfg.WriteTimeout)
	}
	err := s.c.Write(ctx, websocket.MessageText, b)
	if !s.deadline.Stop() || s.timedOut.Load() {
		return fmt.Errorf("watch: write not done within %s: %w", s.h.cfg.WriteTimeout, context.DeadlineExceeded)
	}
	return err
}

// close ends the connection the way err calls for and returns err (nil when
// the watcher left or the hub closed: nothing went wrong).
func (s *subscriber) close(err error) error {
	h := s.h
	switch {
	case errors.Is(err, errSlow):
		h.log.Warn("watcher closed as slow consumer", "last", s.last, "lag", s.lag)
		s.c.Close(api.WatchCloseSlowConsumer, fmt.Sprintf("slow consumer: %d versions behind; resume with from=%d", s.lag, s.last))
		return err
	case errors.Is(err, errClosing):
		s.c.Close(websocket.StatusGoingAway, fmt.Sprintf("node shutting down: resume with from=%d on another node", s.last))
		return nil
	case h.ctx.Err() != nil:
		s.c.CloseNow()
		return nil
	case errors.Is(err, context.Canceled):
		// The watcher closed the connection or sent data.
		s.c.CloseNow()
		return nil
	default:
		h.log.Info("watcher cut off", "last", s.last, "err", err)
		s.c.CloseNow()
		return err
	}
}
