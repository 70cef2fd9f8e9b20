package audit

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aibos/kernel/internal/syncfile"
)

// Config configures a Log. The zero value of a field takes the default in
// parentheses.
type Config struct {
	// Dir holds the segment files and the head file; created if missing.
	// A node uses DATA/audit. Required.
	Dir string
	// Node is written into records that do not name one.
	Node string
	// Redact lists dotted field paths ("ssn", "customer.email") removed
	// from the Args and the Result of every record: the value becomes
	// "[redacted]" and the path is listed in Redacted. Where a step meets
	// an array, the rest of the path applies to each element.
	Redact []string
	// SegmentBytes is the size at which a segment is closed and the next
	// begun. (64 MiB, or MaxBytes/8 if that is smaller)
	SegmentBytes int64
	// MaxBytes bounds the segments' size on disk; 0: no bound. Once they
	// exceed MaxBytes − SegmentBytes, the oldest segments that hold only
	// decisions are deleted, after a KindPruned record of what they held
	// (prune.go). A segment with any other record is never deleted for
	// size, so the log can exceed the bound if those alone do
	// (Stats.OverBound). At least 2 × SegmentBytes.
	MaxBytes int64
	// Retention is how long records are kept: a whole segment is deleted
	// once the next segment began before now − Retention. Checked at Open
	// and hourly. (30 days)
	Retention time.Duration
	// FsyncInterval bounds how long a record given to Append stays written
	// but not synced; a crash of the machine can lose that window of
	// Append'ed records. AppendSync does not wait for it: its batch is
	// synced at once. (10 ms)
	FsyncInterval time.Duration
	// QueueSize bounds the records waiting for the writer; Append blocks
	// when it is full. (65,536)
	QueueSize int
	// Now is the clock of records without a time, segment names and
	// retention. (time.Now)
	Now func() time.Time

	// beforeBatch, if set, runs in the writer before each batch; tests
	// stall the writer with it.
	beforeBatch func()
}

// Stats are counters of a Log since it was opened.
type Stats struct {
	Written      uint64 `json:"written"`       // records written to a segment
	Fsyncs       uint64 `json:"fsyncs"`        // group commits (segment syncs)
	Blocked      uint64 `json:"blocked"`       // appends that waited for room in the queue
	BlockedNanos uint64 `json:"blocked_nanos"` // time appends spent waiting
	Failed       uint64 `json:"failed"`        // records not written: too large, or the log was closed or had failed
	QueueLen     int    `json:"queue_len"`     // records waiting now
	Segments     int    `json:"segments"`      // segment files now
	Pruned       uint64 `json:"pruned"`        // segments deleted by the size bound
	SyncMode     string `json:"sync_mode"`     // how segments are synced: io_uring (off the scheduler's Ps) or blocking
	OverBound    bool   `json:"over_bound"`    // over MaxBytes with no segment of decisions only left to delete
}

var (
	// ErrClosed is returned by AppendSync on a closed log.
	ErrClosed = errors.New("audit: log is closed")
	// ErrFailed wraps the write or sync error after which the log refuses
	// every append: records acknowledged before it are durable, none after.
	ErrFailed = errors.New("audit: log failed; reopen it once the disk is fixed")
)

// item is what the queue carries: a record, a record with a waiter
// (AppendSync), or a waiter alone (a flush barrier).
type item struct {
	r  *Record
	w  chan result
	g  *group
	tg *timedGroup
}

// group is the decisions of one batch request (AppendGroup).
type group struct {
	t  time.Time
	cs []Check
}

// records is how many records it holds.
func (it *item) records() int {
	switch {
	case it.g != nil:
		return len(it.g.cs)
	case it.tg != nil:
		return it.tg.n
	case it.r != nil:
		return 1
	}
	return 0
}

type result struct {
	seq uint64
	err error
	pos position // of a barrier: how far the segments are written
}

// position is the end of what the writer has written.
type position struct {
	segment string // file name of the current segment; "" if none yet
	size    int64
}

type waiter struct {
	w   chan result
	seq uint64
}

// syncJob asks the syncer to sync f up to the record (seq, chain), then
// update the head file and release the waiters; close closes f after.
type syncJob struct {
	f       *os.File
	seq     uint64
	chain   [32]byte
	waiters []waiter
	close   bool
}

// Log is an open audit log. Its methods are safe for concurrent use.
type Log struct {
	cfg Config
	red *redactor

	// The queue: callers append to queued  under mu and wake the writer
	// only when it would not look otherwise (the first record after an
	// idle spell, a waiter, a full batch), so a stream of decisions costs
	// the writer one wake-up per gather (maxGather, or FsyncInterval if
	// shorter) rather than one per record.
	mu          sync.Mutex
	queued      []item        // guarded by mu
	queuedN     int           // guarded by mu: records in queued (a group counts each)
	urgent      bool          // guarded by mu: queued  holds a waiter or a barrier
	gathering   bool          // guarded by mu: the writer's gather timer is armed
	drained     bool          // guarded by mu: the writer has stopped taking items
	roomc       chan struct{} // guarded by mu: closed when queued  is taken; appenders wait on it when full
	wake        chan struct{} // capacity 1: the writer has something to look at
	batchMax    int           // queued  length that wakes the writer at once
	gatherEvery time.Duration // how long the writer gathers records before writing them
	spare       []item        // the writer's: the previous batch, reused

	syncq chan syncJob
	stop  chan struct{}
	done  chan struct{} // closed once the writer and the syncer have exited

	closed  atomic.Bool
	failure atomic.Pointer[error]
	stats   struct {
		written, fsyncs, blocked, blockedNanos, failed, pruned atomic.Uint64
		segments                                               atomic.Int64
		overBound                                              atomic.Bool
	}
	// readers is held by in-process readers (Query, Export, Verify);
	// retention skips a round rather than delete under them.
	readers sync.RWMutex

	closeOnce sync.Once
	closeErr  error // set by the writer and syncer before done closes

	// The pruner (MaxBytes > 0 only): pruneq wakes it, prunerDone closes
	// when it has stopped.
	pruneq     chan struct{}
	prunerDone chan struct{}

	// Owned by the writer goroutine (and by Open before it starts).
	f        *os.File
	segName  string
	segSize  int64 // bytes of the segment's records, buf included
	off      int64 // bytes of them written to f
	filled   int64 // f is filled with zeros (or records) up to here
	buf      []byte
	scratch  []byte // the writer's: args of a Check record
	grec     Record // the writer's: the record of a group's decision
	seq      uint64
	chain    [32]byte
	unsynced bool
	pending  uint64 // records in buf

	// Owned by the syncer.
	head  *os.File
	fsync *syncfile.Syncer // fdatasync off the Go scheduler's Ps (io_uring) where the kernel allows
}

// Open opens or creates the log in cfg.Dir, recovers it (a torn last
// record, from a crash while writing, is truncated), deletes expired
// segments, and starts the writer. It refuses a log whose head file says
// more was acknowledged than the segments hold: that is a truncated or
// damaged log, for Verify and a person to look at.
func Open(cfg Config) (*Log, error) {
	if cfg.Dir == "" {
		return nil, errors.New("audit: Dir is required")
	}
	if cfg.SegmentBytes <= 0 {
		cfg.SegmentBytes = 64 << 20
		if cfg.MaxBytes > 0 {
			cfg.SegmentBytes = min(cfg.SegmentBytes, cfg.MaxBytes/8)
		}
	}
	if cfg.MaxBytes < 0 || cfg.MaxBytes > 0 && cfg.MaxBytes < 2*cfg.SegmentBytes {
		return nil, fmt.Errorf("audit: MaxBytes %d is below two segments of %d bytes: raise it, or lower SegmentBytes", cfg.MaxBytes, cfg.SegmentBytes)
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 30 * 24 * time.Hour
	}
	if cfg.FsyncInterval <= 0 {
		cfg.FsyncInterval = 10 * time.Millisecond
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 1 << 16
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	red, err := newRedactor(cfg.Redact)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	l := &Log{cfg: cfg, red: red, wake: make(chan struct{}, 1), batchMax: min(maxBatch, cfg.QueueSize), gatherEvery: min(cfg.FsyncInterval, maxGather),
		syncq: make(chan syncJob, 64), stop: make(chan struct{}), done: make(chan struct{}), chain: genesis}
	if err := l.recover(); err != nil {
		return nil, err
	}
	l.expire()
	l.fsync = syncfile.New()
	go l.run()
	if cfg.MaxBytes > 0 {
		l.pruneq, l.prunerDone = make(chan struct{}, 1), make(chan struct{})
		go l.pruner()
		l.kickPrune()
	}
	return l, nil
}

// recover finds the last record (truncating a torn tail) and brings the
// head file up to it.
func (l *Log) recover() error {
	dir := l.cfg.Dir
	h, haveHead, err := readHead(dir)
	if err != nil {
		return fmt.Errorf("audit: %s: head file is damaged (%v); run `aibos audit verify`, then move the directory aside to start a new log", dir, err)
	}
	segs, _, err := listSegments(dir)
	if err != nil {
		return err
	}
	if haveHead {
		l.seq, l.chain = h.seq, h.chain
	}
	for len(segs) > 0 {
		last := segs[len(segs)-1]
		data, err := os.ReadFile(last.path)
		if err != nil {
			return fmt.Errorf("audit: recover: %w", err)
		}
		if len(data) < segHeaderSize && (!haveHead || h.seq < last.firstSeq) {
			// Created by a crash before its header was whole: it holds
			// nothing acknowledged.
			if err := os.Remove(last.path); err != nil {
				return fmt.Errorf("audit: recover: %w", err)
			}
			segs = segs[:len(segs)-1]
			continue
		}
		var seq uint64
		var chain [32]byte
		hdr, valid, err := scanSegment(data, func(fr frame) bool { seq, chain = fr.last(), fr.chain; return true })
		if err != nil {
			return fmt.Errorf("audit: %s: segment header is damaged; run `aibos audit verify`", last.path)
		}
		if seq == 0 {
			seq, chain = hdr.firstSeq-1, hdr.prev
		}
		if haveHead && h.seq > seq {
			return fmt.Errorf("audit: %s: the head file says seq %d was written but the log ends at seq %d: records are missing; run `aibos audit verify`", dir, h.seq, seq)
		}
		if valid < len(data) {
			if err := truncate(last.path, int64(valid)); err != nil {
				return err
			}
		}
		l.seq, l.chain = seq, chain
		break
	}
	f, err := os.OpenFile(filepath.Join(dir, headName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	l.head = f
	if _, err := f.WriteAt(encodeHead(head{l.seq, l.chain}), 0); err != nil {
		f.Close()
		return fmt.Errorf("audit: write head: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("audit: sync head: %w", err)
	}
	syncDir(dir)
	return nil
}

func truncate(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("audit: truncate torn tail: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("audit: truncate torn tail of %s: %w", path, err)
	}
	return f.Sync()
}

// syncDir makes created and removed directory entries durable.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// Append queues r for the writer and returns: it is the decision path's
// call, an append to a slice under a mutex that wakes the writer only when
// it would not look at the queue within its gather (maxGather) anyway. When the
// queue is full it waits for room (and counts the wait) rather than drop.
// r belongs to the log from then on: neither the caller nor anyone else may
// modify it. Appends concurrent with or after Close are not written (they
// are counted as failed).
func (l *Log) Append(r *Record) {
	if !l.closed.Load() {
		if st, _ := l.push(item{r: r}); st == pushed {
			return
		}
	}
	l.appendSlow(context.Background(), item{r: r})
}

type pushState int

const (
	pushed pushState = iota
	queueFull
	queueClosed
)

// push adds it to the queue, waking the writer if it needs to be. On a
// full queue it returns a channel that is closed when there may be room.
func (l *Log) push(it item) (pushState, chan struct{}) {
	l.mu.Lock()
	if l.drained {
		l.mu.Unlock()
		return queueClosed, nil
	}
	k := it.records()
	// A group larger than the queue goes into an empty one whole.
	if l.queuedN >= l.cfg.QueueSize || l.queuedN > 0 && l.queuedN+k > l.cfg.QueueSize {
		if l.roomc == nil {
			l.roomc = make(chan struct{})
		}
		c := l.roomc
		l.mu.Unlock()
		return queueFull, c
	}
	l.queued = append(l.queued, it)
	prev := l.queuedN
	l.queuedN += k
	kick := prev < l.batchMax && l.queuedN >= l.batchMax || len(l.queued) == 1 && !l.gathering
	if it.w != nil && !l.urgent {
		l.urgent, kick = true, true
	}
	l.mu.Unlock()
	if kick {
		l.wakeWriter()
	}
	return pushed, nil
}

// AppendGroup queues the decisions of one batch request, all decided at
// t: the writer stores them as one frame (a group: one seq each, one
// checksum and one hash for all, see frame.go), which costs it a fraction
// of a frame per decision. Queued in one item, they wait for room together
// (a group larger than the whole queue waits for it to be empty). cs, and
// the requests and reasons it points to, belong to the log from then on.
func (l *Log) AppendGroup(t time.Time, cs []Check) {
	if len(cs) == 0 {
		return
	}
	it := item{g: &group{t: t, cs: cs}}
	if !l.closed.Load() {
		if st, _ := l.push(it); st == pushed {
			return
		}
	}
	l.appendSlow(context.Background(), it)
}

// wakeWriter tells the writer it has something to look at.
func (l *Log) wakeWriter() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// timedGroup is single checks gathered into one frame (AppendCheck), each
// record `time i64 | length u32 | binary decision` as a timed group body
// holds it (frame.go), appended by the callers under mu.
type timedGroup struct {
	first int64 // unix nanos of its first record: the frame's time
	n     int
	buf   []byte
}

// maxTimedBytes bounds the records of a timed group; a check that would
// pass it begins the next.
const maxTimedBytes = 64 << 10

var timedGroups = sync.Pool{New: func() any { return &timedGroup{buf: make([]byte, 0, maxTimedBytes)} }}

// AppendCheck queues the decision of a single check, decided at t. Unlike
// AppendGroup it encodes the record at once, on the caller, while the
// request is in its cache, and copies it into the timed group at the end
// of the queue, which the checks queued next to it share: the writer
// writes them as one frame (one hash, one checksum, one header), and
// neither c nor what it points to is kept. A check with the "full" audit
// obligation keeps its context, which the writer redacts: it is queued as
// a group of one.
func (l *Log) AppendCheck(t time.Time, c *Check) {
	var a [512]byte
	rec := a[:0]
	if !c.Full {
		rec = appendDecision(rec, c, l.cfg.Node, nil, nil)
	}
	if c.Full || len(rec)+8+4 > maxTimedBytes || l.closed.Load() {
		l.AppendGroup(t, []Check{*c})
		return
	}
	at := t.UnixNano()
	if t.IsZero() {
		at = l.cfg.Now().UnixNano()
	}
	st, room := l.pushCheck(at, rec)
	if st == pushed {
		return
	}
	if st == queueFull {
		l.stats.blocked.Add(1)
		start := time.Now()
		defer func() { l.stats.blockedNanos.Add(uint64(time.Since(start))) }()
		for st == queueFull {
			select {
			case <-room:
			case <-l.stop:
				st = queueClosed
				continue
			}
			st, room = l.pushCheck(at, rec)
		}
	}
	if st == queueClosed {
		l.stats.failed.Add(1)
	}
}

// pushCheck copies the record rec, of time t, into the timed group at the
// end of the queue, or into a new one; as push, it wakes the writer if it
// needs to be and reports a full queue with a channel closed when there
// may be room.
func (l *Log) pushCheck(t int64, rec []byte) (pushState, chan struct{}) {
	l.mu.Lock()
	if l.drained {
		l.mu.Unlock()
		return queueClosed, nil
	}
	if l.queuedN >= l.cfg.QueueSize {
		if l.roomc == nil {
			l.roomc = make(chan struct{})
		}
		c := l.roomc
		l.mu.Unlock()
		return queueFull, c
	}
	var tg *timedGroup
	if k := len(l.queued); k > 0 {
		if g := l.queued[k-1].tg; g != nil && g.n < maxGroup && len(g.buf)+8+4+len(rec) <= maxTimedBytes {
			tg = g
		}
	}
	if tg == nil {
		tg = timedGroups.Get().(*timedGroup)
		tg.first, tg.n, tg.buf = t, 0, tg.buf[:0]
		l.queued = append(l.queued, item{tg: tg})
	}
	tg.buf = binary.LittleEndian.AppendUint64(tg.buf, uint64(t))
	tg.buf = binary.LittleEndian.AppendUint32(tg.buf, uint32(len(rec)))
	tg.buf = append(tg.buf, rec...)
	tg.n++
	prev := l.queuedN
	l.queuedN++
	kick := prev < l.batchMax && l.queuedN >= l.batchMax || prev == 0 && !l.gathering
	l.mu.Unlock()
	if kick {
		l.wakeWriter()
	}
	return pushed, nil
}

// AppendAll is Append of several records at once: one pass through the
// queue for all of them, which keeps them together and in order unless the
// queue fills (then the rest wait for room, counted once). A batch
// request's decisions go through AppendGroup instead, as one frame.
func (l *Log) AppendAll(rs []*Record) {
	blocked := false
	var start time.Time
	for len(rs) > 0 {
		if l.closed.Load() {
			l.stats.failed.Add(uint64(len(rs)))
			break
		}
		n, st, room := l.pushAll(rs)
		rs = rs[n:]
		if st == queueClosed {
			l.stats.failed.Add(uint64(len(rs)))
			break
		}
		if len(rs) == 0 {
			break
		}
		if room == nil {
			continue // partly queued: the next pass waits for room
		}
		if !blocked {
			blocked, start = true, time.Now()
			l.stats.blocked.Add(1)
		}
		select {
		case <-room:
		case <-l.stop:
		}
	}
	if blocked {
		l.stats.blockedNanos.Add(uint64(time.Since(start)))
	}
}

// pushAll queues as many of rs as there is room for and says how many.
func (l *Log) pushAll(rs []*Record) (int, pushState, chan struct{}) {
	l.mu.Lock()
	if l.drained {
		l.mu.Unlock()
		return 0, queueClosed, nil
	}
	prev := l.queuedN
	k := min(len(rs), l.cfg.QueueSize-prev)
	if k <= 0 {
		if l.roomc == nil {
			l.roomc = make(chan struct{})
		}
		c := l.roomc
		l.mu.Unlock()
		return 0, queueFull, c
	}
	for _, r := range rs[:k] {
		l.queued = append(l.queued, item{r: r})
	}
	l.queuedN += k
	kick := prev < l.batchMax && prev+k >= l.batchMax || prev == 0 && !l.gathering
	l.mu.Unlock()
	if kick {
		l.wakeWriter()
	}
	if k < len(rs) {
		return k, queueFull, nil
	}
	return k, pushed, nil
}

func (l *Log) appendSlow(ctx context.Context, it item) error {
	if l.closed.Load() {
		l.stats.failed.Add(uint64(it.records()))
		return ErrClosed
	}
	l.stats.blocked.Add(1)
	start := time.Now()
	defer func() { l.stats.blockedNanos.Add(uint64(time.Since(start))) }()
	for {
		st, room := l.push(it)
		switch st {
		case pushed:
			return nil
		case queueClosed:
			l.stats.failed.Add(uint64(it.records()))
			return ErrClosed
		}
		select {
		case <-room:
		case <-l.stop:
			l.stats.failed.Add(uint64(it.records()))
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// AppendSync writes r and returns its seq once it is synced to disk,
// together with whatever else was queued (group commit). It fails if the
// log is closed or has failed, or if ctx ends first (then r may still be
// written). r must not be modified until it returns.
func (l *Log) AppendSync(ctx context.Context, r *Record) (uint64, error) {
	if l.closed.Load() {
		l.stats.failed.Add(1)
		return 0, ErrClosed
	}
	if err := l.failed(); err != nil {
		l.stats.failed.Add(1)
		return 0, err
	}
	it := item{r: r, w: make(chan result, 1)}
	if st, _ := l.push(it); st != pushed {
		if err := l.appendSlow(ctx, it); err != nil {
			return 0, err
		}
	}
	select {
	case res := <-it.w:
		return res.seq, res.err
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-l.done:
		select {
		case res := <-it.w:
			return res.seq, res.err
		default:
			return 0, ErrClosed
		}
	}
}

// flush waits until every record queued before it is written (not
// necessarily synced) and returns how far the segments are written.
func (l *Log) flush() position {
	w := make(chan result, 1)
	for {
		st, room := l.push(item{w: w})
		if st == pushed {
			break
		}
		if st == queueClosed {
			return position{}
		}
		select {
		case <-room:
		case <-l.done:
			return position{}
		}
	}
	select {
	case res := <-w:
		return res.pos
	case <-l.done:
		return position{}
	}
}

// Err returns the write or sync error after which the log refuses appends
// (wrapping ErrFailed), or nil: a node reports it in its health.
func (l *Log) Err() error { return l.failed() }

func (l *Log) failed() error {
	if p := l.failure.Load(); p != nil {
		return *p
	}
	return nil
}

func (l *Log) fail(err error) {
	err = fmt.Errorf("%w: %w", ErrFailed, err)
	l.failure.CompareAndSwap(nil, &err)
}

// Stats returns the log's counters.
func (l *Log) Stats() Stats {
	return Stats{
		Written: l.stats.written.Load(), Fsyncs: l.stats.fsyncs.Load(),
		Blocked: l.stats.blocked.Load(), BlockedNanos: l.stats.blockedNanos.Load(),
		Failed: l.stats.failed.Load(), QueueLen: l.queueLen(), Segments: int(l.stats.segments.Load()),
		Pruned: l.stats.pruned.Load(), OverBound: l.stats.overBound.Load(), SyncMode: string(l.fsync.Mode()),
	}
}

func (l *Log) queueLen() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.queuedN
}

// Close writes and syncs what is queued, updates the head file and stops
// the writer. It is idempotent; producers should stop appending first.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		l.closed.Store(true)
		close(l.stop)
		<-l.done
		if l.prunerDone != nil {
			<-l.prunerDone
		}
	})
	return l.closeErr
}

// maxBatch bounds the records the writer takes before writing them.
const maxBatch = 4096

// writeBatchBytes is how much the writer buffers, when no caller waits,
// before it writes; the fsync timer writes a smaller buffer.
const writeBatchBytes = 256 << 10

// run is the writer: it owns the segment files and the chain. It takes
// whatever is queued — at once when a caller waits (AppendSync, a query's
// barrier) or a batch is full, else when its gather timer fires, at most
// maxGather after the first record — encodes it into one buffer and
// writes it with one system call per 256 KiB. Syncs follow their own
// timer: armed when the first unsynced record is queued, it takes the
// queue, writes it and hands a sync to the syncer FsyncInterval later, so
// a record waits for its sync at most FsyncInterval (plus the sync in
// flight) and a stream costs one sync per interval. A waiter's batch is
// handed to the syncer at once; encoding the next batch overlaps the
// previous fsync.
func (l *Log) run() {
	syncerDone := make(chan struct{})
	go l.syncer(syncerDone)
	defer func() {
		close(l.syncq)
		<-syncerDone
		close(l.done)
	}()
	timer := time.NewTimer(time.Hour) // sync of records written by a full batch
	timer.Stop()
	armed := false
	gather := time.NewTimer(time.Hour) // armed while l.gathering
	gather.Stop()
	expire := time.NewTicker(time.Hour)
	defer expire.Stop()
	var waiters []waiter
	var barriers []chan result
	for {
		due, syncNow := false, false
		select {
		case <-l.wake:
		case <-gather.C:
			due = true
		case <-timer.C:
			// Everything queued before now is written and synced now.
			armed = false
			due, syncNow = true, true
		case <-expire.C:
			l.expire()
			continue
		case <-l.stop:
			l.mu.Lock()
			l.drained = true
			batch := l.take()
			l.mu.Unlock()
			waiters, barriers = waiters[:0], barriers[:0]
			for _, it := range batch {
				waiters, barriers = l.handle(it, waiters, barriers)
			}
			l.commit(waiters, true)
			for _, b := range barriers {
				b <- result{pos: position{l.segName, l.segSize}}
			}
			if l.f != nil {
				// After the commit's sync: this one syncs only the
				// segment's new size.
				l.seal()
				l.f = nil
			}
			return
		}
		l.mu.Lock()
		n := l.queuedN
		if !due && !l.urgent && n < l.batchMax {
			// Not yet: gather records until the timer fires.
			if n > 0 && !l.gathering {
				l.gathering = true
				gather.Reset(l.gatherEvery)
				if !armed {
					timer.Reset(l.cfg.FsyncInterval)
					armed = true
				}
			}
			l.mu.Unlock()
			continue
		}
		if due && !syncNow {
			// Keep gathering while records arrive; an idle spell ends it,
			// and the next record wakes the writer again.
			l.gathering = n > 0
			if l.gathering {
				gather.Reset(l.gatherEvery)
			}
		}
		if syncNow && l.gathering && !armed {
			timer.Reset(l.cfg.FsyncInterval)
			armed = true
		}
		batch := l.take()
		l.mu.Unlock()
		if len(batch) == 0 {
			if syncNow && l.unsynced {
				l.commit(nil, true)
			}
			continue
		}
		if l.cfg.beforeBatch != nil {
			l.cfg.beforeBatch()
		}
		waiters, barriers = waiters[:0], barriers[:0]
		for _, it := range batch {
			waiters, barriers = l.handle(it, waiters, barriers)
			if len(l.buf) >= writeBatchBytes {
				l.commit(nil, false)
			}
		}
		clear(batch) // the records are the callers' again
		l.spare = batch[:0]
		switch {
		case len(waiters) > 0 || syncNow && l.unsynced:
			l.commit(waiters, true)
		case len(barriers) > 0 || due:
			l.commit(nil, false)
		}
		for _, b := range barriers {
			b <- result{pos: position{l.segName, l.segSize}}
		}
		if l.unsynced && !armed {
			timer.Reset(l.cfg.FsyncInterval)
			armed = true
		}
	}
}

// take takes the queued items, releasing appenders that wait for room.
// l.mu must be held.
func (l *Log) take() []item {
	batch := l.queued
	l.queued, l.queuedN, l.urgent = l.spare[:0], 0, false
	l.spare = nil
	if l.roomc != nil {
		close(l.roomc)
		l.roomc = nil
	}
	return batch
}

// handle encodes one queued item into the buffer, or notes a barrier.
func (l *Log) handle(it item, waiters []waiter, barriers []chan result) ([]waiter, []chan result) {
	if it.tg != nil {
		if l.failed() != nil {
			l.stats.failed.Add(uint64(it.tg.n))
		} else {
			l.encodeTimed(it.tg)
		}
		timedGroups.Put(it.tg)
		return waiters, barriers
	}
	if it.g != nil {
		if l.failed() != nil {
			l.stats.failed.Add(uint64(len(it.g.cs)))
			return waiters, barriers
		}
		l.encodeGroup(it.g)
		return waiters, barriers
	}
	if it.r == nil {
		return waiters, append(barriers, it.w)
	}
	if err := l.failed(); err != nil {
		l.stats.failed.Add(1)
		if it.w != nil {
			it.w <- result{err: err}
		}
		return waiters, barriers
	}
	seq, err := l.encode(it.r)
	if err != nil {
		l.stats.failed.Add(1)
		if it.w != nil {
			it.w <- result{err: err}
		}
		return waiters, barriers
	}
	if it.w != nil {
		waiters = append(waiters, waiter{it.w, seq})
	}
	return waiters, barriers
}

var zeros [frameReserve]byte

// encode appends the frame of r to the buffer, beginning a segment first
// if there is none or the current one is full. It does not modify r.
func (l *Log) encode(r *Record) (uint64, error) {
	if err := l.room(); err != nil {
		return 0, err
	}
	t := r.Time
	if t.IsZero() {
		t = l.cfg.Now()
	}
	start := len(l.buf)
	l.buf = append(l.buf, zeros[:]...)
	l.buf = l.appendRecord(l.buf, r)
	if err := l.sealed(start, 1, t); err != nil {
		return 0, err
	}
	return l.seq, nil
}

// maxGroup bounds the records of one group frame.
const maxGroup = 4096

// encodeGroup appends the frames of a group of decisions: one frame per
// maxGroup of them, or, for a group over the frame size bound, one frame
// each (a decision too large alone is refused and counted, as by encode).
func (l *Log) encodeGroup(g *group) {
	t := g.t
	if t.IsZero() {
		t = l.cfg.Now()
	}
	for cs := g.cs; len(cs) > 0; {
		n := min(len(cs), maxGroup)
		if err := l.room(); err != nil {
			l.stats.failed.Add(uint64(len(cs)))
			return
		}
		start := len(l.buf)
		l.buf = append(l.buf, zeros[:]...)
		l.buf = append(l.buf, groupMark)
		l.buf = binary.LittleEndian.AppendUint32(l.buf, uint32(n))
		for i := range cs[:n] {
			at := len(l.buf)
			l.buf = append(l.buf, 0, 0, 0, 0)
			l.buf = l.appendGroupDecision(l.buf, &cs[i])
			binary.LittleEndian.PutUint32(l.buf[at:], uint32(len(l.buf)-at-4))
		}
		if err := l.sealed(start, n, t); err != nil {
			for i := range cs[:n] {
				if _, err := l.encode(l.checkRecord(&cs[i], t)); err != nil {
					l.stats.failed.Add(1)
				}
			}
		}
		cs = cs[n:]
	}
}

// encodeTimed appends the frame of a timed group: its records as the
// callers encoded them, behind the frame's header, seq, time and count.
func (l *Log) encodeTimed(g *timedGroup) {
	if err := l.room(); err != nil {
		l.stats.failed.Add(uint64(g.n))
		return
	}
	start := len(l.buf)
	l.buf = append(l.buf, zeros[:]...)
	l.buf = append(l.buf, timedMark)
	l.buf = binary.LittleEndian.AppendUint32(l.buf, uint32(g.n))
	l.buf = append(l.buf, g.buf...)
	if err := l.sealed(start, g.n, time.Unix(0, g.first)); err != nil {
		// maxTimedBytes is far below the frame bound: not reached.
		l.stats.failed.Add(uint64(g.n))
	}
}

// checkRecord is the record of a decision of a group, in the writer's
// scratch record (valid until the next call).
func (l *Log) checkRecord(c *Check, t time.Time) *Record {
	l.grec = Record{Time: t, Kind: KindDecision, Decision: c.Decision, Version: c.Version, Check: c}
	return &l.grec
}

// room begins a segment if there is none or the current one is full.
func (l *Log) room() error {
	if l.f == nil || l.segSize >= l.cfg.SegmentBytes {
		if err := l.rotate(); err != nil {
			l.fail(err)
			return l.failed()
		}
	}
	return nil
}

// appendGroupDecision appends the binary body of a group's decision
// (decision.go), with the log's node and redaction, as appendRecord would
// for its record.
func (l *Log) appendGroupDecision(b []byte, c *Check) []byte {
	args := l.checkArgs(c)
	var redacted []string
	if l.red != nil {
		args, redacted = l.red.apply(args, "args", nil)
	}
	return appendDecision(b, c, l.cfg.Node, args, redacted)
}

// checkArgs is a decided check's context as its record's args, JSON in
// the writer's scratch buffer: for the "full" audit obligation only, else
// nil.
func (l *Log) checkArgs(c *Check) []byte {
	if !c.Full || len(c.Req.Context) == 0 {
		return nil
	}
	l.scratch = appendValue(l.scratch[:0], c.Req.Context)
	return l.scratch
}

// appendRecord appends r's JSON body, with the log's defaults and
// redaction, without modifying r.
func (l *Log) appendRecord(b []byte, r *Record) []byte {
	node := r.Node
	if node == "" {
		node = l.cfg.Node
	}
	args, res, redacted := r.Args, r.Result, r.Redacted
	trusted := false
	if r.Check != nil {
		if a := l.checkArgs(r.Check); a != nil {
			args, trusted = a, true
		}
	}
	if l.red != nil && r.Kind != KindPruned {
		var paths []string
		args, paths = l.red.apply(args, "args", nil)
		res, paths = l.red.apply(res, "result", paths)
		if len(paths) > 0 {
			redacted = append(slices.Clip(redacted), paths...)
		}
	}
	return appendBody(b, r, node, args, res, redacted, trusted)
}

// sealed completes the frame of n records that begins at l.buf[start:]
// and advances the seq and the chain past it; a frame over the size bound
// is taken out of the buffer again.
func (l *Log) sealed(start, n int, t time.Time) error {
	buf, chain, err := sealFrame(l.buf, start, l.chain, l.seq+1, t.UnixNano())
	l.buf = buf
	if err != nil {
		return err
	}
	l.seq += uint64(n)
	l.chain = chain
	l.segSize += int64(len(l.buf) - start)
	l.pending += uint64(n)
	l.unsynced = true
	return nil
}

// rotate writes the buffer to the current segment, hands it to the syncer
// to be synced and closed, and begins the next one.
func (l *Log) rotate() error {
	if l.f != nil {
		if err := l.write(); err != nil {
			return err
		}
		l.seal()
		l.f = nil
	}
	name := segmentName(l.seq+1, l.cfg.Now().UnixNano())
	f, err := os.OpenFile(filepath.Join(l.cfg.Dir, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("begin segment: %w", err)
	}
	syncDir(l.cfg.Dir)
	l.f, l.segName, l.off, l.filled = f, name, 0, 0
	l.buf = appendSegHeader(l.buf, segHeader{firstSeq: l.seq + 1, start: l.cfg.Now().UnixNano(), prev: l.chain})
	l.segSize = int64(len(l.buf))
	l.stats.segments.Add(1)
	l.kickPrune()
	return nil
}

// write appends the buffer to the current segment.
func (l *Log) write() error {
	if len(l.buf) == 0 {
		return nil
	}
	err := l.prefill(l.off + int64(len(l.buf)))
	if err == nil {
		_, err = l.f.WriteAt(l.buf, l.off)
		l.off += int64(len(l.buf))
	}
	if cap(l.buf) > 4<<20 {
		l.buf = nil
	} else {
		l.buf = l.buf[:0]
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", l.segName, err)
	}
	l.stats.written.Add(l.pending)
	l.pending = 0
	return nil
}

// prefillChunk is how far ahead of the records a segment is filled with
// zeros.
const prefillChunk = 1 << 20

var zeroChunk [prefillChunk]byte

// prefill makes sure the segment is filled with zeros (written, not just
// allocated) up to at least end, a chunk at a time. Records then overwrite
// blocks the file already has, so a sync of them changes no metadata —
// not the size, not the extents — and fdatasync has no journal to commit:
// measured here, it takes half the time and the CPU of one after an
// append. The chunk's own size is made durable by the next sync.
func (l *Log) prefill(end int64) error {
	if end <= l.filled {
		return nil
	}
	// Never past the segment's bound: the segment is sealed once its
	// records reach it (the last batch may pass it, unfilled).
	to := min((end+prefillChunk-1)/prefillChunk*prefillChunk, max(end, l.cfg.SegmentBytes))
	for off := l.filled; off < to; {
		n := min(int64(len(zeroChunk)), to-off)
		if _, err := l.f.WriteAt(zeroChunk[:n], off); err != nil {
			return fmt.Errorf("prefill %s: %w", l.segName, err)
		}
		off += n
	}
	l.filled = to
	return nil
}

// seal cuts the current segment's unused zeros off and hands it to the
// syncer, which syncs its records and its size and closes it. A sealed
// segment holds only its header and frames.
func (l *Log) seal() {
	if l.failed() == nil && l.filled > l.off {
		if err := l.f.Truncate(l.off); err != nil {
			l.fail(fmt.Errorf("truncate %s to its records: %w", l.segName, err))
		}
	}
	l.syncq <- syncJob{f: l.f, seq: l.seq, chain: l.chain, close: true}
}

// commit writes the buffer and, when records wait for durability or sync
// was asked, hands a sync of everything written so far to the syncer.
func (l *Log) commit(waiters []waiter, sync bool) {
	if l.f == nil {
		// Nothing written yet: any waiters were answered in handle.
		return
	}
	if err := l.failed(); err == nil {
		if err := l.write(); err != nil {
			l.fail(err)
		}
	}
	if err := l.failed(); err != nil {
		l.buf = l.buf[:0]
		for _, w := range waiters {
			w.w <- result{err: err}
		}
		return
	}
	if len(waiters) == 0 && !sync {
		return
	}
	l.syncq <- syncJob{f: l.f, seq: l.seq, chain: l.chain, waiters: slices.Clone(waiters)}
	l.unsynced = false
}

// syncer syncs segments, updates the head file and releases waiters, in
// the order of its jobs; it takes every job queued at once, so one fsync
// commits them all.
func (l *Log) syncer(done chan struct{}) {
	defer close(done)
	var jobs []syncJob
	for job := range l.syncq {
		jobs = append(jobs[:0], job)
		for more := true; more; {
			select {
			case j, ok := <-l.syncq:
				if !ok {
					more = false
					break
				}
				jobs = append(jobs, j)
			default:
				more = false
			}
		}
		err := l.failed()
		var cur *os.File
		for _, j := range jobs {
			if err == nil && cur != nil && j.f != cur {
				err = l.syncFile(cur)
			}
			cur = j.f
			if j.close {
				if err == nil {
					err = l.syncFile(cur)
				}
				if cerr := cur.Close(); cerr != nil && err == nil {
					err = fmt.Errorf("close segment: %w", cerr)
				}
				cur = nil
			}
		}
		if err == nil && cur != nil {
			err = l.syncFile(cur)
		}
		last := jobs[len(jobs)-1]
		if err == nil {
			// Written after the segments are synced, so the head never
			// names a record that is not durable. Not synced itself: a
			// head lost in a machine crash is an older head, which is
			// still true (DESIGN.md).
			if _, werr := l.head.WriteAt(encodeHead(head{last.seq, last.chain}), 0); werr != nil {
				err = fmt.Errorf("write head: %w", werr)
			}
		}
		if err != nil {
			l.fail(err)
			err = l.failed()
		}
		for _, j := range jobs {
			for _, w := range j.waiters {
				w.w <- result{seq: w.seq, err: err}
			}
		}
	}
	// The writer has stopped: make the head durable and close it.
	err := l.head.Sync()
	if cerr := l.head.Close(); err == nil {
		err = cerr
	}
	l.fsync.Close()
	if err == nil {
		err = l.failed()
	}
	l.closeErr = err
}

func (l *Log) syncFile(f *os.File) error {
	if err := l.fsync.Sync(f); err != nil {
		return fmt.Errorf("sync %s: %w", filepath.Base(f.Name()), err)
	}
	l.stats.fsyncs.Add(1)
	return nil
}

// expire deletes whole segments whose every record is older than the
// retention: those followed by a segment that began before the cutoff.
// The newest segment is never deleted. It skips a round while in-process
// readers hold the segments.
func (l *Log) expire() {
	if !l.readers.TryLock() {
		return
	}
	defer l.readers.Unlock()
	segs, _, err := listSegments(l.cfg.Dir)
	if err != nil {
		return
	}
	cutoff := l.cfg.Now().Add(-l.cfg.Retention)
	removed := 0
	for i := 0; i+1 < len(segs); i++ {
		if segs[i+1].start.After(cutoff) {
			break
		}
		if err := os.Remove(segs[i].path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			break
		}
		removed++
	}
	if removed > 0 {
		syncDir(l.cfg.Dir)
	}
	l.stats.segments.Store(int64(len(segs) - removed))
}

// maxGather bounds how long the writer gathers records before it writes
// them, whatever FsyncInterval: records wait in the queue (held by
// reference, the decisions' memory kept live) only that long.
const maxGather = time.Millisecond
