package pdp

import (
	"context"
	"log/slog"
	"time"
)

// RunGuard checks h's shadow counters against the active rollout's abort
// policy every interval and, when a threshold is exceeded, calls abort
// with the rollout's id and the reason (prefixed with the node's name, if
// given). abort commits the abort through the leader, which then applies
// it on every node; it is retried on the next tick until it succeeds or
// the rollout ends. RunGuard returns when ctx ends.
func RunGuard(ctx context.Context, h *Holder, every time.Duration, node string,
	abort func(ctx context.Context, id uint64, reason string) error, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		id, reason, ok := h.Exceeded()
		if !ok {
			continue
		}
		if node != "" {
			reason = "node " + node + ": " + reason
		}
		if err := abort(ctx, id, reason); err != nil {
			log.Warn("automatic rollout abort not committed yet; retrying", "id", id, "reason", reason, "err", err)
			continue
		}
		log.Warn("canary rollout aborted automatically", "id", id, "reason", reason)
	}
}
