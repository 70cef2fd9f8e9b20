package api

import (
	"encoding/json"
	"time"
)

// Risk classes of an action.
const (
	RiskRead        = "read"
	RiskWrite       = "write"
	RiskDestructive = "destructive"
	RiskExternal    = "external"
)

// Backend types of an orchestra.
const (
	BackendBuiltin = "builtin" // the kernel's own actions (orchestra "kernel")
	BackendHTTP    = "http"    // a webhook the kernel POSTs to
	BackendMCP     = "mcp"     // an MCP server: a process the node starts (Command) or a streamable HTTP URL
)

// BuiltinOrchestra is the name of the kernel's own orchestra. It is part of
// every catalog and cannot be replaced or deleted.
const BuiltinOrchestra = "kernel"

// Orchestra is a namespace of actions served by one backend. Every action's
// name starts with the orchestra's name and a dot ("crm" holds
// "crm.contacts.read").
type Orchestra struct {
	Name        string      `json:"name"`
	Description string      `json:"description,omitempty"`
	Backend     Backend     `json:"backend"`
	Actions     []ActionDef `json:"actions"`
	// Set by the store.
	UpdatedAt time.Time `json:"updated_at,omitzero"`
	Revision  uint64    `json:"revision,omitempty"`
}

// Backend says how an orchestra's actions are performed. For http, the
// kernel POSTs an ActionCall to URL (joined with the action's Path, if any)
// and takes a 2xx JSON body as the result. For mcp, the kernel speaks MCP
// to the server at URL (streamable HTTP) or to the process it starts with
// Command (stdio), which gets Env as its whole environment.
type Backend struct {
	Type    string            `json:"type"`
	URL     string            `json:"url,omitempty"`
	Command []string          `json:"command,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
}

// ActionDef is one entry of the catalog.
type ActionDef struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// InputSchema is a JSON Schema (the subset documented in
	// internal/jsonschema) the input must satisfy; absent: any object.
	InputSchema json.RawMessage `json:"input_schema,omitempty"`
	Risk        string          `json:"risk"`
	Cost        *CostModel      `json:"cost,omitempty"`
	// Timeout bounds one backend call (default 30 s, at most 10 min).
	Timeout Duration `json:"timeout,omitempty"`
	// Obligations apply to every invocation, merged with the decision's
	// (the strictest of each wins).
	Obligations *Obligations `json:"obligations,omitempty"`
	// Path is appended to an http backend's URL.
	Path string `json:"path,omitempty"`
	// MCP is the upstream tool of an mcp orchestra's action, pinned when
	// the orchestra was put (internal/mcp).
	MCP *MCPTool `json:"mcp,omitempty"`
}

// MCPTool is an MCP server's tool as the kernel pinned it: its name on the
// server, the SHA-256 of its canonical definition, and the definition
// itself (name, title, description, inputSchema, outputSchema,
// annotations) as the server listed it.
type MCPTool struct {
	Tool       string          `json:"tool"`
	Digest     string          `json:"digest"`
	Definition json.RawMessage `json:"definition"`
}

// CostModel is what one invocation costs against a budget: Fixed, plus the
// number found at Field (a dotted path into the input) if set.
type CostModel struct {
	Fixed float64 `json:"fixed,omitempty"`
	Field string  `json:"field,omitempty"`
}

// OrchestraList answers GET /v1/orchestras.
type OrchestraList struct {
	Orchestras []Orchestra `json:"orchestras"`
}

// ActionList answers GET /v1/actions.
type ActionList struct {
	Actions []CatalogAction `json:"actions"`
}

// CatalogAction is an action with its orchestra's name and backend type.
type CatalogAction struct {
	ActionDef
	Orchestra string `json:"orchestra"`
	Backend   string `json:"backend"`
}

// InvokeRequest is the body of POST /v1/actions/{name}/invoke. The caller
// is the agent whose bearer token authenticates the request; the subject
// of the decision is that registered agent, never anything in the body.
// The Idempotency-Key header makes a retried call run once.
type InvokeRequest struct {
	Input json.RawMessage `json:"input,omitempty"`
	// Resource is what the action acts on; default {type: "action", id:
	// the action's name}.
	Resource *Entity        `json:"resource,omitempty"`
	Context  map[string]any `json:"context,omitempty"`
	// ApprovalID redeems an approved approval for exactly these arguments.
	ApprovalID string `json:"approval_id,omitempty"`
}

// Invocation statuses.
const (
	InvocationCompleted       = "completed"
	InvocationDenied          = "denied"
	InvocationPendingApproval = "pending_approval"
	InvocationFailed          = "failed"
	InvocationCancelled       = "cancelled"
)

// InvokeResponse answers an invocation: 200 completed, 403 denied, 202
// pending approval, 502/504 failed at the backend, 409 cancelled by a kill
// switch. Result has the obligation's redactions applied.
type InvokeResponse struct {
	InvocationID string          `json:"invocation_id"`
	Action       string          `json:"action"`
	Agent        string          `json:"agent"`
	Status       string          `json:"status"`
	Decision     Effect          `json:"decision"`
	Version      uint64          `json:"version"`
	Reasons      []Reason        `json:"reasons,omitempty"`
	Result       json.RawMessage `json:"result,omitempty"`
	ApprovalID   string          `json:"approval_id,omitempty"`
	ArgsDigest   string          `json:"args_digest"`
	Cost         float64         `json:"cost,omitempty"`
	Error        *ErrorDetail    `json:"error,omitempty"`
	// Warnings: soft budget thresholds crossed by this call.
	Warnings []string `json:"warnings,omitempty"`
	// Replayed: the stored answer of an earlier call with the same
	// idempotency key; the action did not run again.
	Replayed   bool  `json:"replayed,omitempty"`
	DurationMS int64 `json:"duration_ms"`
}

// ActionCall is what an http backend receives.
type ActionCall struct {
	InvocationID string          `json:"invocation_id"`
	Action       string          `json:"action"`
	Agent        string          `json:"agent"`
	Tenant       string          `json:"tenant,omitempty"`
	Input        json.RawMessage `json:"input"`
}

// ApprovalKindAccessRequest marks an approval asked for through the
// AuthZEN access request endpoint.
const ApprovalKindAccessRequest = "access_request"

// Approval states.
const (
	ApprovalPending  = "pending"
	ApprovalApproved = "approved"
	ApprovalDenied   = "denied"
	ApprovalExpired  = "expired"
	ApprovalVoided   = "voided"
	ApprovalConsumed = "consumed"
)

// Approval is a held invocation waiting for a human. It is bound to the
// agent, its version, the action and the RFC 8785 digest of the arguments:
// only an invocation with all four equal redeems it, once.
type Approval struct {
	ID string `json:"id"`
	// Kind is empty for a held invocation, ApprovalKindAccessRequest for
	// an AuthZEN access request (Agent is then the subject, "TYPE:ID", or
	// the agent's id for a registered agent; AgentVersion is empty but for
	// an agent; ArgsDigest is the digest of the evaluation request;
	// InvocationID the denied evaluation's id).
	Kind         string `json:"kind,omitempty"`
	Agent        string `json:"agent"`
	AgentVersion string `json:"agent_version"`
	Tenant       string `json:"tenant,omitempty"`
	Action       string `json:"action"`
	ArgsDigest   string `json:"args_digest"`
	// Input is shown to approvers, with the policy's redactions applied.
	Input     json.RawMessage `json:"input,omitempty"`
	Reasons   []Reason        `json:"reasons,omitempty"`
	Approvers []string        `json:"approvers,omitempty"`
	State     string          `json:"state"`
	CreatedAt time.Time       `json:"created_at"`
	ExpiresAt time.Time       `json:"expires_at"`
	// Set when decided, voided or consumed.
	DecidedBy    string    `json:"decided_by,omitempty"`
	DecidedAt    time.Time `json:"decided_at,omitzero"`
	Reason       string    `json:"reason,omitempty"`
	ConsumedBy   string    `json:"consumed_by,omitempty"` // invocation id
	ConsumedAt   time.Time `json:"consumed_at,omitzero"`
	InvocationID string    `json:"invocation_id,omitempty"` // the invocation that asked
	Revision     uint64    `json:"revision,omitempty"`
}

// ApprovalVerdict is the body of POST /v1/approvals/{id}/approve and /deny.
type ApprovalVerdict struct {
	Approver string `json:"approver"`
	Reason   string `json:"reason,omitempty"`
}

// ApprovalList answers GET /v1/approvals.
type ApprovalList struct {
	Approvals []Approval `json:"approvals"`
}

// Kill switch scopes.
const (
	KillGlobal = "global"
	KillTenant = "tenant"
	KillAgent  = "agent"
	KillAction = "action" // Target is an action pattern ("crm.*")
)

// KillSwitch stops actions in its scope on every node until lifted: new
// invocations are refused, running ones cancelled, pending approvals
// voided.
type KillSwitch struct {
	ID        string    `json:"id"`
	Scope     string    `json:"scope"`
	Target    string    `json:"target,omitempty"`
	Reason    string    `json:"reason"`
	By        string    `json:"by"`
	CreatedAt time.Time `json:"created_at"`
	Active    bool      `json:"active"`
	LiftedBy  string    `json:"lifted_by,omitempty"`
	LiftedAt  time.Time `json:"lifted_at,omitzero"`
	// LiftReason is the reason given when it was lifted, if any.
	LiftReason string `json:"lift_reason,omitempty"`
	Revision   uint64 `json:"revision,omitempty"`
}

// KillRequest is the body of POST /v1/kill.
type KillRequest struct {
	Scope  string `json:"scope"`
	Target string `json:"target,omitempty"`
	Reason string `json:"reason"`
	By     string `json:"by"`
}

// LiftRequest is the body of POST /v1/kill/{id}/lift.
type LiftRequest struct {
	By     string `json:"by"`
	Reason string `json:"reason,omitempty"`
}

// KillList answers GET /v1/kill.
type KillList struct {
	Kills []KillSwitch `json:"kills"`
}

// AgentStats answers GET /v1/agents/{id}/stats: this node's counters for
// the agent since it started, per action.
type AgentStats struct {
	Agent   string                 `json:"agent"`
	Node    string                 `json:"node"`
	Actions map[string]ActionStats `json:"actions"`
}

// ActionStats are one agent's counters for one action on one node.
type ActionStats struct {
	Invocations int64   `json:"invocations"`
	Allowed     int64   `json:"allowed"`
	Denied      int64   `json:"denied"`
	Approvals   int64   `json:"approvals"`
	Errors      int64   `json:"errors"`
	Cancelled   int64   `json:"cancelled"`
	BudgetUsed  float64 `json:"budget_used"`
	LatencyP50  float64 `json:"latency_p50_ms"`
	LatencyP99  float64 `json:"latency_p99_ms"`
}
