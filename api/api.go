// Package api holds the wire types shared by the kernel's HTTP server and the
// public Go SDK: check requests, decisions, bundle versions, entities, cluster
// status and errors. It imports nothing internal, so users can depend on it.
package api

import "time"

// Entity is a subject or resource the kernel knows: the AuthZEN shape
// {type, id, properties}.
type Entity struct {
	Type       string         `json:"type"`
	ID         string         `json:"id"`
	Properties map[string]any `json:"properties,omitempty"`
}

// Action is the operation asked for, `namespace.verb`.
type Action struct {
	Name       string         `json:"name"`
	Properties map[string]any `json:"properties,omitempty"`
}

// CheckRequest asks for one decision. MinRevision, when set, makes the node
// answer only once it has applied that revision (read-your-writes).
type CheckRequest struct {
	Subject     Entity         `json:"subject"`
	Action      Action         `json:"action"`
	Resource    Entity         `json:"resource"`
	Context     map[string]any `json:"context,omitempty"`
	MinRevision uint64         `json:"min_revision,omitempty"`
	// Explain asks for the per-layer outcomes in the decision.
	Explain bool `json:"explain,omitempty"`
}

// Effect is the outcome of a decision or the effect of a rule.
type Effect string

// The three effects of DESIGN.md section 2.
const (
	Allow           Effect = "allow"
	Deny            Effect = "deny"
	RequireApproval Effect = "require_approval"
)

// Valid reports whether e is one of the three effects.
func (e Effect) Valid() bool { return e == Allow || e == Deny || e == RequireApproval }

// Reason names a rule (or a layer, for implicit and default denials) that
// determined a decision.
type Reason struct {
	Policy  string `json:"policy,omitempty"`
	Rule    string `json:"rule,omitempty"`
	Layer   string `json:"layer,omitempty"`
	Effect  Effect `json:"effect"`
	Message string `json:"message,omitempty"`
}

// RateLimit allows Limit actions per Per, counted per Key (a CEL-free path
// such as "subject.id").
type RateLimit struct {
	Limit int      `json:"limit"`
	Per   Duration `json:"per"`
	Key   string   `json:"key,omitempty"`
}

// Budget charges the action's cost against Limit per Per, counted per Key.
type Budget struct {
	Limit float64  `json:"limit"`
	Per   Duration `json:"per"`
	Key   string   `json:"key,omitempty"`
}

// Obligations are what must happen if the action runs. Merging keeps the
// strictest of each: the lowest limits, the highest audit level, the union of
// redactions and approvers.
type Obligations struct {
	Audit     string     `json:"audit,omitempty"`
	RateLimit *RateLimit `json:"rate_limit,omitempty"`
	Budget    *Budget    `json:"budget,omitempty"`
	Redact    []string   `json:"redact,omitempty"`
	Approvers []string   `json:"approvers,omitempty"`
}

// LayerOutcome is the outcome of one layer, reported when explain is asked for.
type LayerOutcome struct {
	Layer   string   `json:"layer"`
	Outcome string   `json:"outcome"` // deny, require_approval, allow, implicit_deny, abstain
	Rules   []Reason `json:"rules,omitempty"`
}

// Decision answers a CheckRequest.
type Decision struct {
	Decision    Effect         `json:"decision"`
	Version     uint64         `json:"version"`
	Revision    uint64         `json:"revision"`
	Reasons     []Reason       `json:"reasons"`
	Obligations *Obligations   `json:"obligations,omitempty"`
	Errors      []string       `json:"errors,omitempty"`
	Explain     []LayerOutcome `json:"explain,omitempty"`
	// Error is set, in a batch, on the result of a check that could not be
	// decided because the check itself was invalid; Decision is then deny.
	Error *ErrorDetail `json:"error,omitempty"`
}

// BatchCheckRequest asks for several decisions at once.
type BatchCheckRequest struct {
	Checks []CheckRequest `json:"checks"`
}

// BatchCheckResponse holds the decisions of a batch, in request order.
type BatchCheckResponse struct {
	Results []Decision `json:"results"`
}

// File is one named document of a bundle's source.
type File struct {
	Name string `json:"name"`
	Data []byte `json:"data"`
}

// VersionInfo describes one published bundle version.
type VersionInfo struct {
	Version    uint64    `json:"version"`
	Revision   uint64    `json:"revision"`
	Hash       string    `json:"hash"`
	Parent     uint64    `json:"parent,omitempty"`
	RollbackOf uint64    `json:"rollback_of,omitempty"`
	Message    string    `json:"message,omitempty"`
	Author     string    `json:"author,omitempty"`
	Time       time.Time `json:"time"`
	// GlobalVersion is, in a write's answer in multi-region mode, the
	// global version the publish was given (reads elsewhere pass it as
	// min_version); not part of the stored version.
	GlobalVersion uint64 `json:"global_version,omitempty"`
}

// BundleVersion is a version with its source files.
type BundleVersion struct {
	VersionInfo
	Files []File `json:"files"`
}

// PublishResponse answers a publish or a rollback.
type PublishResponse struct {
	Version  uint64 `json:"version"`
	Revision uint64 `json:"revision"`
	// GlobalVersion: multi-region mode's global version of the write (a
	// read with min_version=GlobalVersion in any region sees it).
	GlobalVersion uint64   `json:"global_version,omitempty"`
	Hash          string   `json:"hash,omitempty"`
	Warnings      []string `json:"warnings,omitempty"`
}

// RollbackRequest asks for a new version whose content is version To.
type RollbackRequest struct {
	To      uint64 `json:"to"`
	Message string `json:"message,omitempty"`
}

// EntitiesRequest upserts entities at once.
type EntitiesRequest struct {
	Entities []Entity `json:"entities"`
}

// WriteResponse answers a write with the revision that committed it.
type WriteResponse struct {
	Revision uint64 `json:"revision"`
}

// Node is one member of a cluster.
type Node struct {
	ID              string `json:"id"`
	HTTP            string `json:"http"`
	Raft            string `json:"raft"`
	Role            string `json:"role"` // leader, follower, nonvoter
	AppliedRevision uint64 `json:"applied_revision"`
	// Status is what the answering node found when it asked the member's
	// GET /readyz: ready, not_ready (it answered 503; Detail says why) or
	// unreachable (Detail has the error). AppliedRevision is the member's
	// own when it is ready, and 0 when it is not known.
	Status string `json:"status,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// Statuses of a member in GET /v1/cluster.
const (
	NodeReady       = "ready"
	NodeNotReady    = "not_ready"
	NodeUnreachable = "unreachable"
)

// Cluster is the answer of GET /v1/cluster.
type Cluster struct {
	Leader string `json:"leader"`
	Region string `json:"region"`
	Nodes  []Node `json:"nodes"`
}

// ErrorBody is the body of every error answer: {error: {code, message}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail says what went wrong. Code is stable and machine-readable;
// Message is for people. Details carries every error of a rejected bundle.
type ErrorDetail struct {
	Code    string   `json:"code"`
	Message string   `json:"message"`
	Details []string `json:"details,omitempty"`
}
