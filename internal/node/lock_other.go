//go:build !unix

package node

import (
	"errors"
	"os"
)

var errLocked = errors.New("locked")

// flock is not implemented off unix: bbolt's own lock on the raft log
// still keeps a second node out, after its open timeout.
func flock(*os.File) error { return nil }

func funlock(*os.File) error { return nil }
