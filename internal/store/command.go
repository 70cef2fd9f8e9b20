package store

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/aibos/kernel/api"
)

// Command types. A type names one state transition; its payload is the JSON
// object of the matching *Cmd struct. A change of meaning gets a new type (or a
// new field whose zero value keeps the old meaning), never a reinterpretation
// of an old one: entries written by an older binary stay in the log and in
// followers' replay forever.
const (
	cmdBundlePublish  = "bundle.publish"
	cmdBundleRollback = "bundle.rollback"
	cmdEntitiesPut    = "entities.put"
	cmdEntityDelete   = "entity.delete"
	cmdNodeSet        = "node.set"
	cmdNodeRemove     = "node.remove"
)

// command is one entry of the replicated log: a type tag and its payload.
// Encoded as JSON, so the first byte of every entry is '{'; a future binary
// encoding can be told apart by its first byte.
type command struct {
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// publishCmd adds a bundle version. Version number and parent are assigned
// by the state machine; everything else is fixed by the proposer.
type publishCmd struct {
	Files   []api.File `json:"files"`
	Hash    string     `json:"hash"`
	Message string     `json:"message,omitempty"`
	Author  string     `json:"author,omitempty"`
	Time    time.Time  `json:"time"`
}

// rollbackCmd adds a bundle version whose files are those of version To.
type rollbackCmd struct {
	To      uint64    `json:"to"`
	Message string    `json:"message,omitempty"`
	Author  string    `json:"author,omitempty"`
	Time    time.Time `json:"time"`
}

// entitiesPutCmd upserts entities at once; a later duplicate wins.
type entitiesPutCmd struct {
	Entities []api.Entity `json:"entities"`
}

// entityDeleteCmd deletes one entity.
type entityDeleteCmd struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// nodeSetCmd records a member's addresses.
type nodeSetCmd struct {
	ID   string `json:"id"`
	HTTP string `json:"http"`
	Raft string `json:"raft"`
}

// nodeRemoveCmd forgets a member's addresses.
type nodeRemoveCmd struct {
	ID string `json:"id"`
}

// ErrBadCommand is returned (as the apply response) for a log entry that
// cannot be decoded or fails validation. The state is unchanged.
var ErrBadCommand = errors.New("store: bad command")

// encodeCommand wraps a payload in a Command and encodes it.
func encodeCommand(typ string, payload any) ([]byte, error) {
	p, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("store: encode %s: %w", typ, err)
	}
	return json.Marshal(command{Type: typ, Payload: p})
}

// decodeCommand decodes the envelope of a log entry. The payload is decoded
// by the state machine according to the type.
func decodeCommand(data []byte) (command, error) {
	var c command
	if err := json.Unmarshal(data, &c); err != nil {
		return command{}, fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	if c.Type == "" {
		return command{}, fmt.Errorf("%w: missing type", ErrBadCommand)
	}
	return c, nil
}

func decodePayload(c command, v any) error {
	if len(c.Payload) == 0 {
		return fmt.Errorf("%w: %s: missing payload", ErrBadCommand, c.Type)
	}
	if err := json.Unmarshal(c.Payload, v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrBadCommand, c.Type, err)
	}
	return nil
}

// HashFiles returns the hex sha256 of a bundle's files: sorted by name, each
// name and data prefixed with its length (8 bytes, big endian) so no two
// different file sets hash alike. The input is not modified.
func HashFiles(files []api.File) string {
	idx := make([]int, len(files))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return files[idx[a]].Name < files[idx[b]].Name })
	h := sha256.New()
	var n [8]byte
	for _, i := range idx {
		f := files[i]
		binary.BigEndian.PutUint64(n[:], uint64(len(f.Name)))
		h.Write(n[:])
		h.Write([]byte(f.Name))
		binary.BigEndian.PutUint64(n[:], uint64(len(f.Data)))
		h.Write(n[:])
		h.Write(f.Data)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// validateFiles checks what the state machine needs of a bundle: at least
// one file, and names that are present and unique.
func validateFiles(files []api.File) error {
	if len(files) == 0 {
		return errors.New("bundle has no files")
	}
	seen := make(map[string]struct{}, len(files))
	for _, f := range files {
		if f.Name == "" {
			return errors.New("bundle file without a name")
		}
		if _, dup := seen[f.Name]; dup {
			return fmt.Errorf("bundle file %q appears twice", f.Name)
		}
		seen[f.Name] = struct{}{}
	}
	return nil
}
