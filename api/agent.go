package api

import "time"

// States of a registered agent.
const (
	AgentActive  = "active"
	AgentRetired = "retired"
)

// EntityTypeAgent is the entity type under which registered agents are
// visible to policies: the engine's lookup of subject {type: agent, id}
// answers with the registry's properties (see Agent.Properties).
const EntityTypeAgent = "agent"

// AgentManifest is what an agent's owner registers. Its fields follow the
// A2A Agent Card (name, description, version, skills, endpoints) so a card
// maps onto it field by field; Tenant, Owner, Capabilities, Labels and
// Sandbox are the kernel's. A version is immutable: registering the same
// id and version with other content is refused; a new version is a new
// record that replaces the current one (and is the only way to change
// Capabilities).
type AgentManifest struct {
	ID          string `json:"id"`
	Name        string `json:"name,omitempty"`
	Description string `json:"description,omitempty"`
	Tenant      string `json:"tenant,omitempty"`
	Owner       string `json:"owner,omitempty"`
	Version     string `json:"version"`
	// Capabilities are action patterns ("data.query", "data.*", "*") the
	// agent claims; policies see them as subject.properties.capabilities.
	Capabilities []string          `json:"capabilities,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	Skills       []AgentSkill      `json:"skills,omitempty"`
	Endpoints    []AgentEndpoint   `json:"endpoints,omitempty"`
	// Sandbox is the agent's sandbox profile, stored verbatim for the
	// gateway.
	Sandbox map[string]any `json:"sandbox,omitempty"`
}

// AgentSkill is one skill of an A2A Agent Card.
type AgentSkill struct {
	ID          string   `json:"id"`
	Name        string   `json:"name,omitempty"`
	Description string   `json:"description,omitempty"`
	Tags        []string `json:"tags,omitempty"`
}

// AgentEndpoint is where the agent is served and by which protocol
// ("a2a", "mcp", "http", ...).
type AgentEndpoint struct {
	URL      string `json:"url"`
	Protocol string `json:"protocol,omitempty"`
}

// Agent is a registered agent: its current manifest and the registry's
// bookkeeping. The credential itself is never part of it.
type Agent struct {
	AgentManifest
	State string `json:"state"`
	// Versions are every version registered under this id, oldest first.
	Versions      []string  `json:"versions"`
	HasCredential bool      `json:"has_credential"`
	RegisteredAt  time.Time `json:"registered_at"`
	UpdatedAt     time.Time `json:"updated_at"`
	Revision      uint64    `json:"revision"`
}

// Properties are the entity properties policies see for the agent.
func (a *Agent) Properties() map[string]any {
	caps := make([]any, len(a.Capabilities))
	for i, c := range a.Capabilities {
		caps[i] = c
	}
	labels := make(map[string]any, len(a.Labels))
	for k, v := range a.Labels {
		labels[k] = v
	}
	return map[string]any{
		"name": a.Name, "tenant": a.Tenant, "owner": a.Owner, "version": a.Version,
		"capabilities": caps, "labels": labels, "state": a.State,
	}
}

// AgentRegistration answers POST /v1/agents. Token is the agent's bearer
// credential, shown this once (empty when the same manifest was already
// registered: nothing changed, rotate to get a new token).
type AgentRegistration struct {
	Agent Agent  `json:"agent"`
	Token string `json:"token,omitempty"`
}

// AgentUpdate is the body of PATCH /v1/agents/{id}: the mutable fields.
// An absent field is kept; labels, when given, replace all labels ({}
// clears them). Capabilities change only with a new version.
type AgentUpdate struct {
	Description *string           `json:"description,omitempty"`
	Owner       *string           `json:"owner,omitempty"`
	Labels      map[string]string `json:"labels"`
}

// AgentCredential answers a credential rotation: the new token, shown once.
type AgentCredential struct {
	ID    string `json:"id"`
	Token string `json:"token"`
}

// AgentList answers GET /v1/agents.
type AgentList struct {
	Agents []Agent `json:"agents"`
}
