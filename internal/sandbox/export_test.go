package sandbox

import (
	"context"
	"time"

	"github.com/tetratelabs/wazero"
)

// Memory is a copy of a running agent's instance memory (nil if parked or
// not here): for the test that scans it for the agent's credential.
func (r *Runtime) Memory(id string) []byte {
	if a := r.run(id); a != nil {
		return a.memoryCopy()
	}
	return nil
}

// Running reports whether a tick of the agent is executing now.
func (r *Runtime) Running(id string) bool {
	if a := r.run(id); a != nil {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.running
	}
	return false
}

// LastCall is how long the agent's last call into its guest took.
func (r *Runtime) LastCall(id string) time.Duration {
	if a := r.run(id); a != nil {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.lastCall
	}
	return 0
}

// Park closes the agent's instance now, as an idle timeout would.
func (r *Runtime) Park(id string) {
	if a := r.run(id); a != nil {
		a.parkIfIdle(time.Now().Add(24*time.Hour), 0)
	}
}

// Ticks is how many ticks of the agent succeeded on this node.
func (r *Runtime) Ticks(id string) uint64 {
	if a := r.run(id); a != nil {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.ticks
	}
	return 0
}

// InstantiateHostForBench defines aibos/v1 and WASI in r.
func InstantiateHostForBench(ctx context.Context, r wazero.Runtime) error {
	return instantiateHost(ctx, r)
}

// SetEpoch overwrites the epoch the agent was placed in.
func (r *Runtime) SetEpoch(id string, e uint64) {
	if a := r.run(id); a != nil {
		a.mu.Lock()
		a.epoch = e
		a.mu.Unlock()
	}
}

// Compiled counts the modules this node holds compiled.
func (r *Runtime) Compiled() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.compiled)
}
