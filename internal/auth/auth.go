// Package auth owns the identity of the kernel's callers: the credentials
// a request carries (the Authorization header), the operator tokens the
// kernel issues (aibos_op_…), the principal a credential stands for, its
// verification against the replicated token hashes and agent registry,
// and the reserved system bundle that authorizes every route through the
// engine (see DESIGN.md in this directory).
package auth

import (
	"errors"
	"slices"
	"time"
)

// Kinds of principal.
const (
	KindOperator = "operator" // an operator token (aibos_op_…)
	KindAgent    = "agent"    // an agent token (aibos_…) of the registry
)

// Built-in roles (DESIGN.md §3.1). The system bundle says what each may do.
const (
	RoleAdmin        = "admin"
	RolePolicyAuthor = "policy-author"
	RoleApprover     = "approver"
	RoleOperator     = "operator"
	RoleAuditor      = "auditor"
	RoleRegistrar    = "registrar"
	RolePEP          = "pep"
	RoleNode         = "node"
	RoleRegion       = "region"
)

// Roles lists the built-in roles, in the order the README's table has them.
func Roles() []string {
	return []string{RoleAdmin, RolePolicyAuthor, RoleApprover, RoleOperator, RoleAuditor, RoleRegistrar, RolePEP, RoleNode, RoleRegion}
}

// ValidRole reports whether r is a built-in role.
func ValidRole(r string) bool { return slices.Contains(Roles(), r) }

// Principal is who a request authenticated as. Immutable once made.
type Principal struct {
	Name string
	Kind string
	// Accessor is the operator token's public id (the audit log's name
	// for the credential); for an agent, its id.
	Accessor  string
	Roles     []string
	Tenants   []string
	ExpiresAt time.Time
}

// Errors of authentication. Each is a 401; the message says which check
// failed, never the secret.
var (
	// ErrNoCredential: the request carries no Authorization header.
	ErrNoCredential = errors.New("no credential")
	// ErrMalformed: the header or the token is not of a known form.
	ErrMalformed = errors.New("malformed credential")
	// ErrUnknown: no token with this secret exists (never issued, or
	// revoked).
	ErrUnknown = errors.New("unknown or revoked token")
	// ErrExpired: the token's expiry has passed.
	ErrExpired = errors.New("expired token")
)
