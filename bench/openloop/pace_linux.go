package main

import (
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// ticker paces the sender with a timerfd read through Go's network
// poller. A Go timer (time.Sleep, time.Ticker) cannot: the runtime waits
// for timers in epoll_wait, whose timeout is in whole milliseconds, so a
// sleep of 100 µs takes a millisecond and the requests due within it go
// out together at its end, which the generator would then count as the
// server's latency. A timerfd's expiry wakes the poller at once.
type ticker struct{ f *os.File }

func newTicker(interval time.Duration) (*ticker, error) {
	const clockMonotonic, tfdNonblock, tfdCloexec = 1, 0x800, 0x80000
	fd, _, errno := syscall.Syscall(syscall.SYS_TIMERFD_CREATE, clockMonotonic, tfdNonblock|tfdCloexec, 0)
	if errno != 0 {
		return nil, fmt.Errorf("timerfd_create: %w", errno)
	}
	// struct itimerspec: interval, then the first expiry.
	spec := [4]int64{0, int64(interval), 0, int64(interval)}
	spec[0], spec[1] = int64(interval/time.Second), int64(interval%time.Second)
	spec[2], spec[3] = spec[0], spec[1]
	if _, _, errno := syscall.Syscall6(syscall.SYS_TIMERFD_SETTIME, fd, 0, uintptr(unsafe.Pointer(&spec)), 0, 0, 0); errno != 0 {
		syscall.Close(int(fd))
		return nil, fmt.Errorf("timerfd_settime: %w", errno)
	}
	return &ticker{os.NewFile(fd, "timerfd")}, nil
}

// wait blocks until the next expiry and returns how many intervals have
// passed since the last call (at least 1).
func (t *ticker) wait() (int, error) {
	var b [8]byte
	if _, err := t.f.Read(b[:]); err != nil {
		return 0, err
	}
	return int(*(*uint64)(unsafe.Pointer(&b))), nil
}

func (t *ticker) stop() { t.f.Close() }
