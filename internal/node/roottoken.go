package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/auth"
)

// RootTokenFile is the file, in the data directory, where the first start
// of a new cluster writes its root operator token.
const RootTokenFile = "root-token"

// rootPrincipal is the root token's principal.
const rootPrincipal = "root"

// rootSecret is the secret of a new cluster's root token: written to
// DATA/root-token (0600) and synced before its hash is proposed; an
// existing file is never overwritten (its token is used).
func rootSecret(path string) (string, error) {
	secret, err := readToken(path)
	if errors.Is(err, os.ErrNotExist) {
		return writeNewRootToken(path)
	}
	return secret, err
}

// ensureRootToken gives a newly bootstrapped cluster its root token,
// whose secret n.rootToken holds. The log names only the path and the
// accessor.
func (n *Node) ensureRootToken(ctx context.Context) error {
	if err := n.Store.WaitForLeader(ctx); err != nil {
		return fmt.Errorf("node: root token: %w", err)
	}
	if !n.Store.IsLeader() {
		// This node bootstrapped a cluster of one: the only leader it can
		// have is itself. Another is a foreign cluster's, reaching this
		// node at an address one of its members had.
		return fmt.Errorf("node: root token: a new cluster's only voter follows leader %q: another cluster's nodes send Raft traffic to %s; give this node a Raft address no other cluster uses, or put Raft under mutual TLS with this cluster's CA", n.Store.LeaderID(), n.Store.RaftAddr())
	}
	if n.Store.HasRootToken() {
		return nil
	}
	path := filepath.Join(n.cfg.DataDir, RootTokenFile)
	secret := n.rootToken
	_, accessor, err := auth.NewOperatorToken(nil)
	if err != nil {
		return err
	}
	t := api.Token{Accessor: accessor, Principal: n.cfg.RootPrincipal, Roles: []string{auth.RoleAdmin}, CreatedAt: n.now().UTC(), CreatedBy: "bootstrap", Root: true}
	if _, err := n.Store.CreateToken(ctx, t, auth.Hash(secret)); err != nil {
		return fmt.Errorf("node: root token: %w", err)
	}
	n.log.Info("root operator token written", "path", path, "accessor", accessor)
	return nil
}

func writeNewRootToken(path string) (string, error) {
	secret, _, err := auth.NewOperatorToken(nil)
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("node: write the root token: %w", err)
	}
	_, werr := f.WriteString(secret + "\n")
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return "", fmt.Errorf("node: write the root token to %s: %w", path, err)
	}
	return secret, nil
}

// readToken reads a token file: its first line, trimmed.
func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(line), nil
}

func (n *Node) now() time.Time {
	if n.cfg.Now != nil {
		return n.cfg.Now()
	}
	return time.Now()
}

// RootToken is the root operator token this node wrote when it
// bootstrapped the cluster (read back from DATA/root-token after a
// restart); empty on a node that joined.
func (n *Node) RootToken() string { return n.rootToken }
