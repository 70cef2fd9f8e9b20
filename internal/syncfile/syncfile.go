// Package syncfile makes a file's written data durable (fdatasync) without
// holding one of the Go scheduler's Ps while the disk works.
//
// A blocking fsync(2) from Go enters the system call holding its P; the
// runtime's sysmon takes the P back only after it has seen the same system
// call on two of its ticks, which are up to 10 ms apart on a node that has
// been quiet for a millisecond. With one P (a node given one core), every
// goroutine — every HTTP request — waits for that: an audit log that syncs
// every 2 ms lost a third to a half of a core's decisions to it (DESIGN.md).
// On Linux a Syncer submits the sync to an io_uring instead: the kernel runs
// it on one of its own workers, and the completion is signalled on an
// eventfd that the Go network poller watches, so the goroutine parks like a
// socket read and the P keeps running requests. Where io_uring is not
// available (another OS, a kernel without it, a seccomp profile or
// kernel.io_uring_disabled refusing it) a Syncer calls fdatasync(2)
// directly, as before; Mode says which.
package syncfile

import (
	"fmt"
	"os"
)

// Mode names how a Syncer syncs.
type Mode string

const (
	// ModeRing submits syncs to an io_uring and waits in the poller.
	ModeRing Mode = "io_uring"
	// ModeBlocking calls fdatasync(2) on the calling goroutine's thread.
	ModeBlocking Mode = "blocking"
)

// Syncer syncs files. Its methods are safe for concurrent use; syncs run one
// at a time (the callers are a log's single syncer goroutine).
type Syncer struct {
	ring *ring // nil: blocking
	// why the ring is not used, when it is not.
	why error
}

// New returns a Syncer using an io_uring when the kernel allows one, else
// blocking fdatasync(2). It never fails.
func New() *Syncer {
	r, err := newRing()
	if err != nil {
		return &Syncer{why: err}
	}
	return &Syncer{ring: r}
}

// Blocking returns a Syncer that always calls fdatasync(2) directly.
func Blocking() *Syncer { return &Syncer{why: fmt.Errorf("blocking syncer asked for")} }

// Mode says how s syncs; Why, for ModeBlocking, says why not with a ring.
func (s *Syncer) Mode() Mode {
	if s == nil || s.ring == nil {
		return ModeBlocking
	}
	return ModeRing
}

// Why says why s does not use an io_uring (nil when it does).
func (s *Syncer) Why() error {
	if s.Mode() == ModeRing {
		return nil
	}
	return s.why
}

// Sync makes the data written to f durable, and the metadata needed to read
// it back (its size): fdatasync(2). A nil Syncer syncs blocking.
func (s *Syncer) Sync(f *os.File) error {
	if s == nil || s.ring == nil {
		return datasync(f)
	}
	return s.ring.sync(f)
}

// Close releases the ring. Syncs after Close block.
func (s *Syncer) Close() error {
	if s == nil || s.ring == nil {
		return nil
	}
	r := s.ring
	return r.close()
}
