package region

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/store"
)

// VoteRequest asks a region to follow epoch Epoch with Primary as its
// primary (POST /v1/regions/vote).
type VoteRequest struct {
	Epoch   uint64 `json:"epoch"`
	Primary string `json:"primary"`
	// LastEpoch and GlobalVersion are the candidate's position: a region
	// further along refuses (as in Raft), so the new primary has every
	// global write a majority confirmed.
	LastEpoch     uint64 `json:"last_epoch"`
	GlobalVersion uint64 `json:"global_version"`
}

// VoteAnswer is a region's grant: its global version when it promised.
type VoteAnswer struct {
	Region        string `json:"region"`
	GlobalVersion uint64 `json:"global_version"`
}

// Vote promises the epoch to the candidate, on this region's leader.
func (m *Manager) Vote(ctx context.Context, req VoteRequest) (VoteAnswer, error) {
	if err := store.ValidRegionID(req.Primary); err != nil || req.Epoch == 0 {
		return VoteAnswer{}, fmt.Errorf("%w: a vote names an epoch > 0 and a primary region", store.ErrBadCommand)
	}
	if err := m.st.Vote(ctx, req.Epoch, req.Primary, req.LastEpoch, req.GlobalVersion); err != nil {
		return VoteAnswer{}, err
	}
	m.repoint.Broadcast()
	v, _ := m.st.Region()
	m.log.Warn("region: promised a new epoch", "epoch", req.Epoch, "primary", req.Primary)
	return VoteAnswer{Region: m.cfg.Self, GlobalVersion: v.GlobalVersion}, nil
}

// PromoteResult says how a promotion went.
type PromoteResult struct {
	Epoch         uint64   `json:"epoch"`
	Primary       string   `json:"primary"`
	GlobalVersion uint64   `json:"global_version"` // of the epoch's begin
	Votes         []string `json:"votes"`          // the regions that promised it
	Refused       []string `json:"refused,omitempty"`
	// Lease: a majority follows the new primary, which takes global
	// writes (false: not yet when the promotion answered).
	Lease bool `json:"lease"`
}

// ErrNoMajority: a promotion without the agreement of a majority.
var ErrNoMajority = errors.New("region: no majority of regions agreed")

// Promote makes this region the primary of a new epoch: it promises the
// epoch to itself, asks every other region of the registry for the same
// promise, and with a majority (itself included) waits out the old
// primary's lease and begins the epoch. Run on this region's leader.
func (m *Manager) Promote(ctx context.Context) (PromoteResult, error) {
	v, ok := m.st.Region()
	if !ok {
		return PromoteResult{}, errors.New("region: not in multi-region mode")
	}
	if v.IsPrimary {
		return PromoteResult{Epoch: v.Epoch, Primary: v.Self, GlobalVersion: v.GlobalVersion}, nil
	}
	if v.Region(m.cfg.Self) == nil {
		return PromoteResult{}, fmt.Errorf("%w: region %s is not in the registry it follows; it cannot be promoted before it has joined", store.ErrBadCommand, m.cfg.Self)
	}
	epoch := max(v.Promised, v.Epoch) + 1
	if err := m.st.PromiseEpoch(ctx, epoch, m.cfg.Self); err != nil {
		return PromoteResult{}, err
	}
	m.repoint.Broadcast()
	res := PromoteResult{Epoch: epoch, Primary: m.cfg.Self, Votes: []string{m.cfg.Self}}
	n := len(v.Regions)
	type answer struct {
		region string
		err    error
	}
	answers := make(chan answer, n)
	asked := 0
	vctx, cancelVotes := context.WithTimeout(ctx, 5*time.Second)
	defer cancelVotes()
	for _, r := range v.Regions {
		if r.ID == m.cfg.Self {
			continue
		}
		asked++
		go func(r api.Region) {
			var ans VoteAnswer
			err := m.call(vctx, m.endpointsOf(&v, r.ID), http.MethodPost, "/v1/regions/vote",
				VoteRequest{Epoch: epoch, Primary: m.cfg.Self, LastEpoch: v.LastEpoch, GlobalVersion: v.GlobalVersion}, &ans)
			answers <- answer{r.ID, err}
		}(r)
	}
	// A majority is enough: a region that cannot be reached is not
	// waited for (it learns the epoch when it is reached again).
	for i := 0; i < asked && len(res.Votes) < n/2+1; i++ {
		a := <-answers
		if a.err != nil {
			res.Refused = append(res.Refused, a.region+": "+a.err.Error())
			continue
		}
		res.Votes = append(res.Votes, a.region)
	}
	if len(res.Votes) < n/2+1 {
		return res, fmt.Errorf("%w: %d of %d promised epoch %d to %s (need %d); promote again once a majority is reachable",
			ErrNoMajority, len(res.Votes), n, epoch, m.cfg.Self, n/2+1)
	}
	// The old primary may still hold a lease granted by acknowledgements
	// sent before the promises: wait it out before writing.
	m.mu.Lock()
	m.notBefore = m.cfg.Now().Add(m.cfg.Lease)
	m.acks = map[string]ack{}
	m.mu.Unlock()
	select {
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(m.cfg.Lease):
	}
	gv, err := m.st.BeginEpoch(ctx, epoch, m.cfg.Self, m.cfg.Now().UTC())
	if err != nil {
		return res, err
	}
	res.GlobalVersion = gv
	// Answer once a majority follows, so the new primary takes global
	// writes when the operator is told it is one (bounded: a majority
	// promised, so it normally follows within a heartbeat or two).
	wait, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for m.GlobalWriteAllowed() != nil && wait.Err() == nil {
		select {
		case <-wait.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	res.Lease = m.GlobalWriteAllowed() == nil
	m.log.Warn("region: promoted to primary", "epoch", epoch, "global_version", gv, "votes", res.Votes)
	return res, nil
}
