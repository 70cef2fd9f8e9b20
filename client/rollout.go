package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/aibos/kernel/api"
)

// StartRollout starts a canary rollout of req.Candidate (an existing
// version) or of req.Files (a new bundle, staged as the next version until
// promoted); author, if set, is recorded as who started it.
func (c *Client) StartRollout(ctx context.Context, req api.RolloutRequest, author string) (api.RolloutStatus, error) {
	var st api.RolloutStatus
	err := c.doJSON(ctx, http.MethodPost, "/v1/rollouts"+authorQuery(author), req, &st)
	return st, err
}

// Rollout returns the latest rollout and the answering node's shadow
// counters.
func (c *Client) Rollout(ctx context.Context) (api.RolloutStatus, error) {
	var st api.RolloutStatus
	err := c.doJSON(ctx, http.MethodGet, "/v1/rollouts/current", nil, &st)
	return st, err
}

// AbortRollout aborts the active rollout (id 0: whichever is active).
func (c *Client) AbortRollout(ctx context.Context, id uint64, reason, author string) (api.RolloutStatus, error) {
	var st api.RolloutStatus
	err := c.doJSON(ctx, http.MethodPost, "/v1/rollouts/abort"+authorQuery(author), api.RolloutEndRequest{ID: id, Reason: reason}, &st)
	return st, err
}

// PromoteRollout makes the active rollout's candidate the current version
// (a new version with its content).
func (c *Client) PromoteRollout(ctx context.Context, id uint64, message, author string) (api.RolloutStatus, error) {
	var st api.RolloutStatus
	err := c.doJSON(ctx, http.MethodPost, "/v1/rollouts/promote"+authorQuery(author), api.RolloutEndRequest{ID: id, Reason: message}, &st)
	return st, err
}

func authorQuery(author string) string {
	if author == "" {
		return ""
	}
	return "?author=" + url.QueryEscape(author)
}
