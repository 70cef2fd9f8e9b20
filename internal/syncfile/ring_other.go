//go:build !linux

package syncfile

import (
	"errors"
	"os"
)

type ring struct{}

func newRing() (*ring, error) { return nil, errors.New("io_uring is Linux's") }

func (*ring) sync(f *os.File) error { return datasync(f) }
func (*ring) close() error          { return nil }

func datasync(f *os.File) error { return f.Sync() }
