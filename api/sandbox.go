package api

import "time"

// Desired run states of a sandboxed agent (what an operator asked for).
const (
	SandboxRun  = "running"
	SandboxStop = "stopped"
)

// Observed states of a sandboxed agent (what its node reports).
const (
	RuntimeStopped  = "stopped"   // not asked to run, or stopped
	RuntimeRunning  = "running"   // instance healthy, taking ticks (may be parked)
	RuntimeBackoff  = "backoff"   // crashed; restarts after a delay
	RuntimeFailed   = "failed"    // crashed too often; start it again to retry
	RuntimeKilled   = "killed"    // a kill switch covers it: no ticks run
	RuntimeNoModule = "no_module" // asked to run, but its version has no module
)

// AgentModule is a WebAssembly module deployed for one version of an
// agent. The module's bytes are in the replicated state, not in this.
type AgentModule struct {
	Agent      string    `json:"agent"`
	Version    string    `json:"version"`
	SHA256     string    `json:"sha256"`
	Size       int       `json:"size"`
	DeployedAt time.Time `json:"deployed_at"`
	Revision   uint64    `json:"revision"`
}

// AgentRuntime answers GET /v1/agents/{id}/runtime and start/stop.
type AgentRuntime struct {
	Agent string `json:"agent"`
	// Desired is what was asked (running or stopped); State what the
	// agent's node last reported.
	Desired string `json:"desired"`
	// RunVersion is the version pinned by an upgrade or a rollback; empty:
	// the agent's current version.
	RunVersion string `json:"run_version,omitempty"`
	State      string `json:"state"`
	Node       string `json:"node,omitempty"`
	// Epoch is the placement epoch the reporting node runs the agent in; a
	// host call of any other epoch is refused.
	Epoch     uint64        `json:"epoch,omitempty"`
	Version   string        `json:"version,omitempty"`
	Module    string        `json:"module,omitempty"` // sha256
	Restarts  int           `json:"restarts"`
	LastError string        `json:"last_error,omitempty"`
	UpdatedAt time.Time     `json:"updated_at,omitzero"`
	Modules   []AgentModule `json:"modules,omitempty"`
	// Placement is where the leader placed the agent to run (absent: on no
	// node); Timers counts its pending timers.
	Placement *AgentPlacement `json:"placement,omitempty"`
	Timers    int             `json:"timers,omitempty"`
	// Below: the answering node's live view (zero on other nodes).
	Healthy     *bool  `json:"healthy,omitempty"`
	Parked      bool   `json:"parked,omitempty"`
	Ticks       uint64 `json:"ticks,omitempty"`
	MemoryBytes uint64 `json:"memory_bytes,omitempty"`
	KVKeys      int    `json:"kv_keys"`
	KVBytes     int    `json:"kv_bytes"`
}

// AgentPlacement is the node an agent is placed on and the placement's
// epoch, which grows with every placement of the agent.
type AgentPlacement struct {
	Agent    string    `json:"agent"`
	Node     string    `json:"node,omitempty"`
	Epoch    uint64    `json:"epoch"`
	PlacedAt time.Time `json:"placed_at,omitzero"`
}
