//go:build linux

package syncfile

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// From linux/io_uring.h (stable ABI since 5.1; the eventfd since 5.2).
const (
	sysIoUringSetup    = 425
	sysIoUringEnter    = 426
	sysIoUringRegister = 427

	opFsync         = 3 // IORING_OP_FSYNC
	fsyncDatasync   = 1 // IORING_FSYNC_DATASYNC
	registerEventfd = 4 // IORING_REGISTER_EVENTFD

	offSQRing = 0          // IORING_OFF_SQ_RING
	offCQRing = 0x8000000  // IORING_OFF_CQ_RING
	offSQEs   = 0x10000000 // IORING_OFF_SQES

	featSingleMmap = 1 << 0 // IORING_FEAT_SINGLE_MMAP

	efdCloexec  = 0x80000 // EFD_CLOEXEC
	efdNonblock = 0x800   // EFD_NONBLOCK

	entries = 4
	sqeSize = 64
	cqeSize = 16
)

type sqringOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqringOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

// params is struct io_uring_params (120 bytes).
type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqringOffsets
	cqOff                                                                  cqringOffsets
}

// sqe is struct io_uring_sqe (64 bytes).
type sqe struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	opFlags     uint32
	userData    uint64
	bufIndex    uint16
	personality uint16
	spliceFdIn  int32
	addr3       uint64
	pad         uint64
}

// cqe is struct io_uring_cqe (16 bytes).
type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

// ring is an io_uring with one submission in flight at a time, its
// completions signalled on an eventfd in the Go poller.
type ring struct {
	mu     sync.Mutex // one sync at a time; guards everything below
	closed bool
	fd     int
	ev     *os.File // the eventfd, nonblocking: reads park in the poller
	maps   [][]byte // to unmap

	sqHead, sqTail, sqMask *uint32
	sqArray                unsafe.Pointer // [entries]uint32
	sqes                   unsafe.Pointer // [entries]sqe
	cqHead, cqTail, cqMask *uint32
	cqes                   unsafe.Pointer // [entries]cqe
	next                   uint64         // user data of the next submission
}

func newRing() (*ring, error) {
	var p params
	fd, _, errno := syscall.Syscall(sysIoUringSetup, entries, uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	r := &ring{fd: int(fd)}
	ok := false
	defer func() {
		if !ok {
			r.release()
		}
	}()
	mmap := func(off int64, size uint32) ([]byte, error) {
		b, err := syscall.Mmap(r.fd, off, int(size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED|syscall.MAP_POPULATE)
		if err != nil {
			return nil, fmt.Errorf("mmap io_uring: %w", err)
		}
		r.maps = append(r.maps, b)
		return b, nil
	}
	sqSize := p.sqOff.array + p.sqEntries*4
	cqSize := p.cqOff.cqes + p.cqEntries*cqeSize
	if p.features&featSingleMmap != 0 {
		sqSize = max(sqSize, cqSize)
	}
	sq, err := mmap(offSQRing, sqSize)
	if err != nil {
		return nil, err
	}
	cq := sq
	if p.features&featSingleMmap == 0 {
		if cq, err = mmap(offCQRing, cqSize); err != nil {
			return nil, err
		}
	}
	sqes, err := mmap(offSQEs, p.sqEntries*sqeSize)
	if err != nil {
		return nil, err
	}
	u32 := func(b []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&b[off])) }
	r.sqHead, r.sqTail, r.sqMask = u32(sq, p.sqOff.head), u32(sq, p.sqOff.tail), u32(sq, p.sqOff.ringMask)
	r.sqArray = unsafe.Pointer(&sq[p.sqOff.array])
	r.sqes = unsafe.Pointer(&sqes[0])
	r.cqHead, r.cqTail, r.cqMask = u32(cq, p.cqOff.head), u32(cq, p.cqOff.tail), u32(cq, p.cqOff.ringMask)
	r.cqes = unsafe.Pointer(&cq[p.cqOff.cqes])

	efd, _, errno := syscall.Syscall(syscall.SYS_EVENTFD2, 0, efdCloexec|efdNonblock, 0)
	if errno != 0 {
		return nil, fmt.Errorf("eventfd: %w", errno)
	}
	r.ev = os.NewFile(efd, "io_uring-eventfd")
	e32 := int32(efd)
	if _, _, errno := syscall.Syscall6(sysIoUringRegister, uintptr(r.fd), registerEventfd, uintptr(unsafe.Pointer(&e32)), 1, 0, 0); errno != 0 {
		return nil, fmt.Errorf("io_uring_register eventfd: %w", errno)
	}
	// Probe the whole path once: a sync of a pipe must complete, with
	// EINVAL, through the eventfd (a kernel or sandbox that accepts the
	// ring but never completes it must not hang a log).
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer pr.Close()
	defer pw.Close()
	if err := r.sync0(pw, time.Now().Add(2*time.Second)); !errors.Is(err, syscall.EINVAL) {
		return nil, fmt.Errorf("io_uring probe: a sync of a pipe gave %v, not EINVAL", err)
	}
	ok = true
	return r, nil
}

// sync submits an fdatasync of f and waits for it in the poller.
func (r *ring) sync(f *os.File) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return datasync(f)
	}
	return r.sync0(f, time.Time{})
}

// errSubmit marks a sync the ring could not submit (then done blocking).
var errSubmit = errors.New("io_uring submit")

// sync0 is sync with r.mu held (or r not yet shared); a zero deadline
// waits as long as the disk takes.
func (r *ring) sync0(f *os.File, deadline time.Time) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return datasync(f)
	}
	var res error
	// Control keeps f's descriptor open (a Close waits) until the
	// kernel has completed the sync.
	if err := rc.Control(func(fd uintptr) { res = r.submitWait(int32(fd), deadline) }); err != nil {
		return err
	}
	if errors.Is(res, errSubmit) {
		return datasync(f)
	}
	var errno syscall.Errno
	if errors.As(res, &errno) {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: errno}
	}
	return res
}

func (r *ring) submitWait(fd int32, deadline time.Time) error {
	tail := *r.sqTail // only this goroutine writes it
	if tail-atomic.LoadUint32(r.sqHead) >= entries {
		return errSubmit // cannot happen with one sync in flight
	}
	idx := tail & *r.sqMask
	r.next++
	id := r.next
	*(*sqe)(unsafe.Add(r.sqes, uintptr(idx)*sqeSize)) = sqe{opcode: opFsync, fd: fd, opFlags: fsyncDatasync, userData: id}
	*(*uint32)(unsafe.Add(r.sqArray, uintptr(idx)*4)) = idx
	atomic.StoreUint32(r.sqTail, tail+1)
	for {
		_, _, errno := syscall.Syscall6(sysIoUringEnter, uintptr(r.fd), 1, 0, 0, 0, 0)
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			// Not consumed by the kernel: take it back.
			if atomic.LoadUint32(r.sqHead) == tail {
				atomic.StoreUint32(r.sqTail, tail)
				return errSubmit
			}
		}
		break
	}
	if !deadline.IsZero() {
		r.ev.SetReadDeadline(deadline)
		defer r.ev.SetReadDeadline(time.Time{})
	}
	var buf [8]byte
	for {
		head := *r.cqHead // only this goroutine writes it
		if head != atomic.LoadUint32(r.cqTail) {
			c := *(*cqe)(unsafe.Add(r.cqes, uintptr(head&*r.cqMask)*cqeSize))
			atomic.StoreUint32(r.cqHead, head+1)
			if c.userData != id {
				continue // a stale completion (cannot happen: one in flight)
			}
			if c.res < 0 {
				return syscall.Errno(-c.res)
			}
			return nil
		}
		if _, err := r.ev.Read(buf[:]); err != nil {
			return fmt.Errorf("io_uring: waiting for a sync: %w", err)
		}
	}
}

func (r *ring) close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	return r.release()
}

func (r *ring) release() error {
	var err error
	if r.ev != nil {
		err = r.ev.Close()
	}
	for _, m := range r.maps {
		syscall.Munmap(m)
	}
	r.maps = nil
	if cerr := syscall.Close(r.fd); err == nil {
		err = cerr
	}
	return err
}

// datasync is a blocking fdatasync(2) of f.
func datasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return f.Sync()
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			serr = syscall.Fdatasync(int(fd))
			if serr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: serr}
	}
	return nil
}
