package store

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
)

func newTokenCmd(acc, hashChar, principal string, root bool, at time.Time) tokenCreateCmd {
	return tokenCreateCmd{
		Token: api.Token{Accessor: acc, Principal: principal, Roles: []string{"admin"}, CreatedAt: at, Root: root},
		Hash:  strings.Repeat(hashChar, 64),
	}
}

func TestTokenCommandsAndSnapshot(t *testing.T) {
	f := newFSM(nil)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r := applyOK(t, f, cmdTokenCreate, newTokenCmd("acc_1", "a", "root", true, t0))
	if r.Token.Revision == 0 || f.st.tokenHashes[hashKey(strings.Repeat("a", 64))] != "acc_1" {
		t.Fatalf("created %+v, index %v", r.Token, f.st.tokenHashes)
	}
	applyErr(t, f, ErrTokenConflict, cmdTokenCreate, newTokenCmd("acc_2", "b", "root2", true, t0)) // a second root
	applyErr(t, f, ErrTokenConflict, cmdTokenCreate, newTokenCmd("acc_1", "c", "x", false, t0))    // same accessor
	applyErr(t, f, ErrTokenConflict, cmdTokenCreate, newTokenCmd("acc_3", "a", "x", false, t0))    // same secret
	applyErr(t, f, ErrBadCommand, cmdTokenCreate, tokenCreateCmd{Token: api.Token{Accessor: "acc_4", Principal: "p", CreatedAt: t0}, Hash: strings.Repeat("d", 64)})
	applyOK(t, f, cmdTokenCreate, newTokenCmd("acc_5", "e", "alice", false, t0))
	applyOK(t, f, cmdTokenRevoke, tokenRevokeCmd{Accessor: "acc_5", By: "root", Time: t0})
	applyErr(t, f, ErrTokenConflict, cmdTokenRevoke, tokenRevokeCmd{Accessor: "acc_5", Time: t0})
	applyErr(t, f, ErrNotFound, cmdTokenRevoke, tokenRevokeCmd{Accessor: "acc_9", Time: t0})
	if _, live := f.st.tokenHashes[hashKey(strings.Repeat("e", 64))]; live {
		t.Fatal("a revoked token is still in the index")
	}

	r = applyOK(t, f, cmdSystemPublish, systemPublishCmd{Files: []api.File{{Name: "s.yaml", Data: []byte("x")}}, Hash: "h", Author: "root", Time: t0})
	if r.Version.Version != 1 || f.st.system == nil {
		t.Fatalf("system publish: %+v", r.Version)
	}
	applyErr(t, f, ErrBadCommand, cmdSystemPublish, systemPublishCmd{Time: t0})

	snap, _ := f.Snapshot()
	var buf bytes.Buffer
	if err := snap.(*fsmSnapshot).write(&buf); err != nil {
		t.Fatal(err)
	}
	g := newFSM(nil)
	if err := g.Restore(readCloser{&buf}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dump(t, g), dump(t, f)) {
		t.Fatalf("restored state differs:\n%s\nwant\n%s", dump(t, g), dump(t, f))
	}
	if g.st.system == nil || g.st.system.Version != 1 || len(g.st.tokenHashes) != 1 || g.st.tokens["acc_5"].Token.RevokedAt.IsZero() || !g.hasRootLocked() {
		t.Fatalf("restored tokens %v %v", g.st.tokenHashes, g.st.tokens)
	}
}
