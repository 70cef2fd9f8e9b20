// Package broadcast owns one small concurrency primitive: a wake-up that
// releases every goroutine waiting for "something changed", used by the
// store (applied revisions, leader changes) and the watch hub (new
// versions). It replaces polling.
package broadcast

import "sync"

// Notifier wakes every goroutine waiting for a change. A waiter takes the
// channel from Wait, re-checks its condition, then blocks on the channel;
// Broadcast closes it. The zero value is ready to use.
type Notifier struct {
	mu sync.Mutex
	ch chan struct{} // guarded by mu; nil when nobody waits
}

// Wait returns a channel that Broadcast will close.
func (n *Notifier) Wait() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}

// Broadcast wakes every goroutine waiting on a channel from Wait.
func (n *Notifier) Broadcast() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch != nil {
		close(n.ch)
		n.ch = nil
	}
}
