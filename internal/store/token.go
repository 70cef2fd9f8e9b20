package store

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/aibos/kernel/api"
)

// Operator token command types. A token is created with everything fixed
// by the proposer (accessor, hash, principal, roles, tenants, times) and
// revoked once; a revoked token stays listed and never authenticates again.
const (
	cmdTokenCreate = "token.create"
	cmdTokenRevoke = "token.revoke"
)

// ChangeToken is the Change kind of a token created or revoked.
const ChangeToken = "token"

var (
	// ErrTokenConflict: an accessor or hash that exists, a second root
	// token, or revoking a revoked token.
	ErrTokenConflict = errors.New("store: token conflict")
)

// tokenCreateCmd creates an operator token; only the secret's SHA-256 is
// in the log.
type tokenCreateCmd struct {
	Token api.Token `json:"token"`
	Hash  string    `json:"hash"`
}

// tokenRevokeCmd revokes a token by accessor.
type tokenRevokeCmd struct {
	Accessor string    `json:"accessor"`
	By       string    `json:"by,omitempty"`
	Time     time.Time `json:"time"`
}

// tokenRecord is one operator token in the state and in snapshots.
// Immutable once stored.
type tokenRecord struct {
	Token api.Token `json:"token"`
	Hash  string    `json:"hash"`
}

func validateNewToken(p *tokenCreateCmd) error {
	t := &p.Token
	switch {
	case !strings.HasPrefix(t.Accessor, "acc_") || len(t.Accessor) > 64:
		return fmt.Errorf("token accessor %q: want acc_ and a random id", t.Accessor)
	case len(p.Hash) != 64 || strings.Trim(p.Hash, "0123456789abcdef") != "":
		return fmt.Errorf("token %s: hash must be 64 lower-case hex digits", t.Accessor)
	case t.Principal == "" || len(t.Principal) > 256:
		return fmt.Errorf("token %s: principal must be 1 to 256 bytes", t.Accessor)
	case len(t.Roles) == 0:
		return fmt.Errorf("token %s: at least one role is required", t.Accessor)
	case t.CreatedAt.IsZero():
		return fmt.Errorf("token %s: created_at is required", t.Accessor)
	case !t.RevokedAt.IsZero() || t.RevokedBy != "":
		return fmt.Errorf("token %s: a new token is not revoked", t.Accessor)
	}
	for _, r := range append(append([]string(nil), t.Roles...), t.Tenants...) {
		if r == "" || len(r) > 128 {
			return fmt.Errorf("token %s: roles and tenants must be 1 to 128 bytes", t.Accessor)
		}
	}
	return nil
}

// applyTokenCreate stores a new token; its accessor, its secret and the
// root token are each unique.
func (f *fsm) applyTokenCreate(c command, p *tokenCreateCmd) (Change, applyResult, error) {
	if err := validateNewToken(p); err != nil {
		return bad(c, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, dup := f.st.tokens[p.Token.Accessor]; dup {
		return fail(fmt.Errorf("%w: accessor %s exists", ErrTokenConflict, p.Token.Accessor))
	}
	if _, dup := f.st.tokenHashes[hashKey(p.Hash)]; dup {
		return fail(fmt.Errorf("%w: a token with this secret exists", ErrTokenConflict))
	}
	if p.Token.Root && f.hasRootLocked() {
		return fail(fmt.Errorf("%w: the cluster has a root token already", ErrTokenConflict))
	}
	f.st.revision++
	t := p.Token
	t.Revision = f.st.revision
	f.st.tokens[t.Accessor] = &tokenRecord{Token: t, Hash: p.Hash}
	f.st.tokenHashes[hashKey(p.Hash)] = t.Accessor
	return Change{Revision: f.st.revision, Kind: ChangeToken}, applyResult{Revision: f.st.revision, Token: &t}, nil
}

// applyTokenRevoke revokes a live token: it stays listed, and its secret
// leaves the index so it never authenticates again.
func (f *fsm) applyTokenRevoke(c command, p *tokenRevokeCmd) (Change, applyResult, error) {
	if p.Time.IsZero() {
		return bad(c, errors.New("time is required"))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.st.tokens[p.Accessor]
	switch {
	case old == nil:
		return fail(fmt.Errorf("%w: token %q", ErrNotFound, p.Accessor))
	case !old.Token.RevokedAt.IsZero():
		return fail(fmt.Errorf("%w: token %s is revoked already", ErrTokenConflict, p.Accessor))
	}
	f.st.revision++
	t := old.Token
	t.RevokedAt, t.RevokedBy, t.Revision = p.Time, p.By, f.st.revision
	f.st.tokens[t.Accessor] = &tokenRecord{Token: t, Hash: old.Hash}
	delete(f.st.tokenHashes, hashKey(old.Hash))
	return Change{Revision: f.st.revision, Kind: ChangeToken}, applyResult{Revision: f.st.revision, Token: &t}, nil
}

func (f *fsm) hasRootLocked() bool {
	for _, t := range f.st.tokens {
		if t.Token.Root {
			return true
		}
	}
	return false
}

// restoreToken adds a token record of a snapshot to st.
func restoreToken(st *state, rec *snapshotRecord) error {
	t := rec.Token
	if t == nil {
		return errors.New("want a token")
	}
	fresh := tokenCreateCmd{Token: t.Token, Hash: t.Hash}
	fresh.Token.RevokedAt, fresh.Token.RevokedBy = time.Time{}, ""
	if err := validateNewToken(&fresh); err != nil {
		return err
	}
	if _, dup := st.tokens[t.Token.Accessor]; dup {
		return fmt.Errorf("token %s appears twice", t.Token.Accessor)
	}
	if t.Token.RevokedAt.IsZero() {
		if _, dup := st.tokenHashes[hashKey(t.Hash)]; dup {
			return fmt.Errorf("token %s: secret shared with another token", t.Token.Accessor)
		}
		st.tokenHashes[hashKey(t.Hash)] = t.Token.Accessor
	}
	st.tokens[t.Token.Accessor] = t
	return nil
}

// CreateToken replicates a new operator token whose secret's SHA-256 is
// hash (the caller made the secret and shows it once). Leader only.
func (s *Store) CreateToken(ctx context.Context, t api.Token, hash string) (api.Token, error) {
	p := tokenCreateCmd{Token: t, Hash: hash}
	if err := validateNewToken(&p); err != nil {
		return api.Token{}, fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	res, err := s.propose(ctx, cmdTokenCreate, p)
	if err != nil {
		return api.Token{}, err
	}
	return *res.Token, nil
}

// RevokeToken revokes the token with accessor: on every node it stops
// authenticating once this entry is applied. Leader only.
func (s *Store) RevokeToken(ctx context.Context, accessor, by string, now time.Time) (api.Token, error) {
	res, err := s.propose(ctx, cmdTokenRevoke, tokenRevokeCmd{Accessor: accessor, By: by, Time: now})
	if err != nil {
		return api.Token{}, err
	}
	return *res.Token, nil
}

// hashKey is the index key of a validated hex hash: its 32 bytes, so a
// lookup by a computed sum needs neither encoding nor allocation.
func hashKey(hexHash string) (k [32]byte) {
	hex.Decode(k[:], []byte(hexHash))
	return k
}

// TokenBySum returns the live token whose secret's SHA-256 is sum. The
// lookup is by the hash, never by the secret, so what its timing could
// tell is about a SHA-256, from which no secret follows. No allocation: it
// runs on every authenticated request.
func (s *Store) TokenBySum(sum [32]byte) (api.Token, bool) {
	f := s.fsm
	f.mu.RLock()
	defer f.mu.RUnlock()
	acc, ok := f.st.tokenHashes[sum]
	if !ok {
		return api.Token{}, false
	}
	rec := f.st.tokens[acc]
	if rec == nil || !rec.Token.RevokedAt.IsZero() {
		return api.Token{}, false
	}
	return rec.Token, true
}

// Token returns the token with accessor, revoked or not.
func (s *Store) Token(accessor string) (api.Token, bool) {
	f := s.fsm
	f.mu.RLock()
	defer f.mu.RUnlock()
	rec := f.st.tokens[accessor]
	if rec == nil {
		return api.Token{}, false
	}
	return rec.Token, true
}

// Tokens lists every token (never a secret or its hash), by creation.
func (s *Store) Tokens() []api.Token {
	f := s.fsm
	f.mu.RLock()
	out := make([]api.Token, 0, len(f.st.tokens))
	for _, rec := range f.st.tokens {
		out = append(out, rec.Token)
	}
	f.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].Accessor < out[j].Accessor
	})
	return out
}

// HasRootToken reports whether the cluster's root token was created.
func (s *Store) HasRootToken() bool {
	f := s.fsm
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.hasRootLocked()
}
