package api

// Error codes of the kernel's answers (ErrorDetail.Code): of the HTTP API,
// of invocations (POST /v1/actions/{name}/invoke) and of the MCP endpoint.
// They are stable: scripts, SDKs and agents branch on them. Every package
// that answers or reads one uses these constants.
const (
	// The API's.
	CodeBadRequest       = "bad_request"
	CodeInvalidBundle    = "invalid_bundle"
	CodeTestsFailed      = "bundle_tests_failed"
	CodeNotFound         = "not_found"
	CodeConflict         = "conflict"
	CodeGone             = "gone"
	CodeNoLeader         = "no_leader"
	CodeStale            = "revision_not_applied"
	CodeTooLarge         = "too_large"
	CodeInternal         = "internal"
	CodeUnavailable      = "unavailable"
	CodeNotReady         = "not_ready"
	CodeOutcomeUnknown   = "write_outcome_unknown"
	CodeBadMethod        = "method_not_allowed"
	CodeRolloutActive    = "rollout_active"
	CodePageStale        = "page_token_stale"
	CodeNoGateway        = "no_gateway"
	CodeApprovalRequired = "approval_required" // a kernel act held for a second person (202), or an MCP call held
	// Access to the API.
	CodeUnauthenticated = "unauthenticated"
	CodeForbidden       = "forbidden"
	CodeCrossOrigin     = "cross_origin"
	CodeMediaType       = "unsupported_media_type"
	CodeTooManyFailures = "too_many_failed_authentications"
	// Invocations.
	CodeUnknownAction    = "unknown_action"
	CodeCapability       = "capability_not_declared"
	CodeInvalidInput     = "invalid_input"
	CodeKilled           = "kill_switch"
	CodeDenied           = "denied"
	CodeRateLimited      = "rate_limited"
	CodeBudget           = "budget_exhausted"
	CodeCounterDown      = "limits_unavailable"
	CodeApproval         = "approval_invalid"
	CodeApprovalExpired  = "approval_expired"
	CodeApprovalVoided   = "approval_voided"
	CodeTooManyApprovals = "too_many_pending_approvals"
	CodeIdemInProgress   = "idempotency_in_progress"
	CodeIdemMismatch     = "idempotency_key_reused"
	CodeBackend          = "backend_error"
	CodeTimeout          = "backend_timeout"
	CodeCancelled        = "cancelled"
	CodeAudit            = "audit_unavailable"
	// Multi-region.
	CodeResidency         = "residency_violation" // tenant data written in a region outside the tenant's domain
	CodeStaleEpoch        = "stale_epoch"         // a global write or entry of an epoch older than the newest known
	CodeRegionUnavailable = "region_unavailable"  // the tenant's home region is lost and no standby in its domain serves it
	CodeNotPrimary        = "not_primary"         // a global write sent to a secondary region
	CodeReplicationGap    = "replication_gap"     // a global entry that does not follow the applied one
	CodeNotHome           = "not_home_region"     // tenant data sent to a region that does not serve the tenant (307, or 409 when it raced a change)
	// The MCP endpoint's (in a tool error's _meta["aibos/error"].code or a
	// JSON-RPC error's data.code).
	CodeQuarantined     = "tool_quarantined"
	CodeApprovalPending = "approval_pending"
	CodeMappingError    = "mapping_error"
	CodeUnknownTool     = "unknown_tool"
)
