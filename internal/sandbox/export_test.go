package sandbox

import "time"

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

func (r *Runtime) run(id string) *agentRun {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.agents[id]
}
