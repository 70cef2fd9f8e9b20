package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// lockFile is the file in a node's data directory that the running node
// holds an exclusive lock on, so that a second node started on the same
// directory stops at once with a clear message instead of timing out on
// the raft log (bbolt's own lock) after it has opened other files.
const lockFile = "aibos.lock"

// ErrDataDirInUse is returned by Start when another node holds the data
// directory.
var ErrDataDirInUse = errors.New("data directory in use by another process")

// dirLock is the held lock of a data directory.
type dirLock struct{ f *os.File }

// lockDataDir creates dir if needed and takes an exclusive lock on its
// lock file, writing this process's id into it for the message of the
// next one. The operating system releases the lock when the process
// ends, however it ends.
func lockDataDir(dir string) (*dirLock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("node: data directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("node: data directory %s: open lock file: %w", dir, err)
	}
	if err := flock(f); err != nil {
		f.Close()
		if !errors.Is(err, errLocked) {
			return nil, fmt.Errorf("node: data directory %s: lock %s: %w", dir, path, err)
		}
		holder := "another process"
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
				holder = fmt.Sprintf("process %d", pid)
				if pid == os.Getpid() {
					holder = "another node in this process"
				}
			}
		}
		return nil, fmt.Errorf("node: %w: %s is held by %s (it holds %s): stop that node first, or give this one its own --data directory", ErrDataDirInUse, dir, holder, path)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &dirLock{f: f}, nil
}

// release lets another node open the directory.
func (l *dirLock) release() {
	if l != nil && l.f != nil {
		_ = funlock(l.f)
		_ = l.f.Close()
		l.f = nil
	}
}
