package decisionlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/syncfile"
)

// Config configures a Log. The zero value of a field takes the default in
// parentheses.
type Config struct {
	// Dir holds the segment files; created if missing. Required.
	Dir string
	// SampleRate is the fraction of decisions recorded, in (0, 1]; 1 records
	// all of them. Sampling is by count, not random: with rate r the n-th
	// decision is recorded when floor(n·r) grows, so exactly ⌊n·r⌋ of the
	// first n are kept. (1)
	SampleRate float64
	// SegmentBytes is the size at which a segment is closed and a new one
	// begun. (64 MiB)
	SegmentBytes int64
	// Retention is how long whole segments are kept after their last
	// record. (7 days)
	Retention time.Duration
	// FsyncInterval is how often written records are flushed and synced.
	// (100 ms)
	FsyncInterval time.Duration
	// QueueLen bounds the records waiting for the writer. (65,536)
	QueueLen int
	// FullWait bounds how long Record waits for room in a full queue when
	// SampleRate is 1, before it counts a drop. (5 ms)
	FullWait time.Duration
	// Now is the clock of records and retention. (time.Now)
	Now func() time.Time
}

// Stats are counters of a Log since it was opened.
type Stats struct {
	Recorded uint64 `json:"recorded"` // queued for the writer
	Dropped  uint64 `json:"dropped"`  // sampled but not queued: the queue was full
	Written  uint64 `json:"written"`  // written to a segment
	Failed   uint64 `json:"failed"`   // not written: encoding (at Record, not queued) or I/O error
}

// chunkSize is the size of the queue's chunks: Record copies each encoded
// frame into the last chunk, or begins a new one (a frame larger than a
// chunk has one of its own).
const chunkSize = 64 << 10

// maxFree bounds the written chunks kept for reuse.
const maxFree = 64

// batch is what the writer takes from the queue: encoded frames, in the
// order they were queued, and the flushes asked for meanwhile, answered
// once all of them are written.
type batch struct {
	chunks  [][]byte
	flushes []chan struct{}
}

// Log is an open decision log. Record is safe for concurrent use.
type Log struct {
	cfg Config

	// The queue: Record encodes a frame on its own goroutine, copies it
	// in under mu and wakes the writer only for a full batch; the writer
	// otherwise takes the queue on its FsyncInterval tick, so sampled
	// decisions cost it no wake-up each.
	mu      sync.Mutex
	chunks  [][]byte        // guarded by mu: the queued frames; the last chunk is filled
	queued  int             // guarded by mu: the records in chunks
	flushes []chan struct{} // guarded by mu: flushes asked for since chunks were taken
	free    [][]byte        // guarded by mu: written chunks, empty, for reuse
	drained bool            // guarded by mu: the writer has stopped taking records
	roomc   chan struct{}   // guarded by mu: closed when the queue is taken
	wake    chan struct{}   // capacity 1
	used    batch           // the writer's: the last batch, written, to give back

	done  chan struct{}
	stop  chan struct{}
	seen  atomic.Uint64
	stats struct{ recorded, dropped, written, failed atomic.Uint64 }

	closeOnce sync.Once
	closeErr  error

	// Owned by the writer goroutine (and by Open before it starts).
	f      *os.File
	size   int64
	buf    []byte
	frames int              // in buf
	fsync  *syncfile.Syncer // off the Go scheduler's Ps where the kernel allows
}

const segmentSuffix = ".dlog"

// Open opens or creates the log in cfg.Dir, recovers its last segment (a
// torn last record is truncated), deletes expired segments, and starts the
// writer. Close stops it.
func Open(cfg Config) (*Log, error) {
	if cfg.Dir == "" {
		return nil, errors.New("decisionlog: Dir is required")
	}
	if cfg.SampleRate == 0 {
		cfg.SampleRate = 1
	}
	if cfg.SampleRate < 0 || cfg.SampleRate > 1 {
		return nil, fmt.Errorf("decisionlog: SampleRate %v is not in (0, 1]", cfg.SampleRate)
	}
	if cfg.SegmentBytes <= 0 {
		cfg.SegmentBytes = 64 << 20
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 7 * 24 * time.Hour
	}
	if cfg.FsyncInterval <= 0 {
		cfg.FsyncInterval = 100 * time.Millisecond
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = 1 << 16
	}
	if cfg.FullWait <= 0 {
		cfg.FullWait = 5 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("decisionlog: %w", err)
	}
	l := &Log{cfg: cfg, wake: make(chan struct{}, 1), done: make(chan struct{}), stop: make(chan struct{})}
	segs, err := l.segments()
	if err != nil {
		return nil, err
	}
	if len(segs) > 0 {
		if err := recoverSegment(segs[len(segs)-1].path); err != nil {
			return nil, err
		}
	}
	l.expire()
	l.fsync = syncfile.New()
	go l.run()
	return l, nil
}

// recoverSegment truncates a segment after its last intact record.
func recoverSegment(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("decisionlog: recover %s: %w", path, err)
	}
	valid, _ := readSegment(data, time.Time{}, nil)
	if valid == len(data) {
		return nil
	}
	if err := os.Truncate(path, int64(valid)); err != nil {
		return fmt.Errorf("decisionlog: truncate torn tail of %s: %w", path, err)
	}
	return nil
}

// Record logs a decision, if the sampling picks it. It does not block,
// except with SampleRate 1 on a full queue, for at most FullWait. It
// encodes the record at once, on the caller's goroutine while the request
// is in its cache, and queues a copy of the bytes: it keeps no reference to
// req or d, which the caller may modify or reuse once Record returns. A
// request that does not encode (one too large) is counted failed.
func (l *Log) Record(req *api.CheckRequest, d *api.Decision) { l.RecordJSON(req, nil, d) }

// RecordJSON is Record of a request the api package decoded from raw,
// unchanged since: the record holds raw, copied, instead of req encoded
// again, which is most of Record's cost. raw nil is Record. Nor is raw
// kept once RecordJSON returns.
func (l *Log) RecordJSON(req *api.CheckRequest, raw []byte, d *api.Decision) {
	n := l.seen.Add(1)
	if r := l.cfg.SampleRate; r < 1 && uint64(float64(n)*r) == uint64(float64(n-1)*r) {
		return
	}
	bp := framePool.Get().(*[]byte)
	rule, sep, rest := ruleParts(d.Reasons)
	frame, err := appendFrameParts((*bp)[:0], l.cfg.Now(), req, raw, d.Decision, rule, sep, rest, d.Version, d.Revision)
	if err != nil {
		l.stats.failed.Add(1)
	} else {
		l.queue(frame)
	}
	if cap(frame) <= maxPooledFrame {
		*bp = frame[:0]
		framePool.Put(bp)
	}
}

// framePool holds the buffers Record encodes into, so that recording
// costs no allocation (a buffer on the stack would escape to the heap
// with the request's encoder).
var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxPooledFrame bounds the buffers framePool keeps.
const maxPooledFrame = 64 << 10

// queue queues a frame, waiting for room as Record says, and counts it
// recorded or dropped.
func (l *Log) queue(frame []byte) {
	ok, room := l.push(frame)
	if ok {
		l.stats.recorded.Add(1)
		return
	}
	if room != nil && l.cfg.SampleRate >= 1 {
		t := time.NewTimer(l.cfg.FullWait)
		defer t.Stop()
		for room != nil {
			select {
			case <-room:
			case <-t.C:
				l.stats.dropped.Add(1)
				return
			case <-l.stop:
				l.stats.dropped.Add(1)
				return
			}
			if ok, room = l.push(frame); ok {
				l.stats.recorded.Add(1)
				return
			}
		}
	}
	l.stats.dropped.Add(1)
}

// wakeBatch is the queue length at which Record wakes the writer before
// its tick.
const wakeBatch = 4096

// push copies frame into the queue, or reports that the queue is full
// (with a channel closed when there may be room) or closed (nil).
func (l *Log) push(frame []byte) (bool, chan struct{}) {
	l.mu.Lock()
	if l.drained {
		l.mu.Unlock()
		return false, nil
	}
	if l.queued >= l.cfg.QueueLen {
		if l.roomc == nil {
			l.roomc = make(chan struct{})
		}
		c := l.roomc
		l.mu.Unlock()
		return false, c
	}
	k := len(l.chunks) - 1
	if k < 0 || len(l.chunks[k])+len(frame) > cap(l.chunks[k]) {
		var c []byte
		switch n := len(l.free); {
		case len(frame) > chunkSize:
			c = make([]byte, 0, len(frame))
		case n > 0:
			c, l.free[n-1] = l.free[n-1], nil
			l.free = l.free[:n-1]
		default:
			c = make([]byte, 0, chunkSize)
		}
		l.chunks = append(l.chunks, c)
		k++
	}
	l.chunks[k] = append(l.chunks[k], frame...)
	l.queued++
	kick := l.queued == min(wakeBatch, l.cfg.QueueLen)
	l.mu.Unlock()
	if kick {
		l.kick()
	}
	return true, nil
}

func (l *Log) kick() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// take takes the queue, releasing Records that wait for room, and gives
// back the chunks of the batch written before.
func (l *Log) take(drain bool) batch {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.drained = l.drained || drain
	for _, c := range l.used.chunks {
		if cap(c) == chunkSize && len(l.free) < maxFree {
			l.free = append(l.free, c[:0])
		}
	}
	clear(l.used.chunks)
	b := batch{chunks: l.chunks, flushes: l.flushes}
	l.chunks, l.flushes, l.queued = l.used.chunks[:0], l.used.flushes[:0], 0
	l.used = batch{}
	if l.roomc != nil {
		close(l.roomc)
		l.roomc = nil
	}
	return b
}

// handleAll buffers the frames of a batch taken from the queue, answers
// its flushes once they are written, and keeps the batch to give back; it
// reports whether there is something to sync.
func (l *Log) handleAll(b batch) bool {
	dirty := false
	for _, c := range b.chunks {
		dirty = dirty || len(c) > 0
		l.handle(c)
	}
	if len(b.flushes) > 0 {
		l.write()
		for _, ch := range b.flushes {
			close(ch)
		}
		dirty = true
	}
	clear(b.flushes)
	l.used = b
	return dirty
}

// Stats returns the log's counters.
func (l *Log) Stats() Stats {
	return Stats{Recorded: l.stats.recorded.Load(), Dropped: l.stats.dropped.Load(),
		Written: l.stats.written.Load(), Failed: l.stats.failed.Load()}
}

// Flush waits until every record queued before it is written to the
// segment files (not necessarily synced).
func (l *Log) Flush() {
	ch := make(chan struct{})
	l.mu.Lock()
	if l.drained {
		l.mu.Unlock()
		return
	}
	// The writer takes this with every record queued so far, and answers
	// it once it has written them.
	l.flushes = append(l.flushes, ch)
	l.mu.Unlock()
	l.kick()
	select {
	case <-ch:
	case <-l.done:
	}
}

// Close writes and syncs what is queued and stops the writer. Records
// arriving during or after Close are dropped (and counted).
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		close(l.stop)
		<-l.done
	})
	return l.closeErr
}

// run is the writer: it owns the segment files.
func (l *Log) run() {
	defer close(l.done)
	tick := time.NewTicker(l.cfg.FsyncInterval)
	defer tick.Stop()
	lastExpire := l.cfg.Now()
	dirty := false
	for {
		select {
		case <-l.wake:
			dirty = l.handleAll(l.take(false)) || dirty
			if len(l.buf) >= 256<<10 {
				l.write()
			}
		case <-tick.C:
			dirty = l.handleAll(l.take(false)) || dirty
			if dirty {
				l.write()
				l.sync()
				dirty = false
			}
			if now := l.cfg.Now(); now.Sub(lastExpire) >= time.Minute {
				l.expire()
				lastExpire = now
			}
		case <-l.stop:
			l.handleAll(l.take(true))
			l.write()
			l.sync()
			l.fsync.Close()
			if l.f != nil {
				if err := l.f.Close(); err != nil {
					l.closeErr = fmt.Errorf("decisionlog: close segment: %w", err)
				}
			}
			return
		}
	}
}

// handle buffers the frames of a chunk, writing the buffer wherever the
// segment becomes full (between two frames).
func (l *Log) handle(c []byte) {
	for len(c) > 0 {
		room := l.cfg.SegmentBytes - l.size
		k, n := 0, 0
		for k < len(c) {
			// The frames are the log's own, whole: their headers are
			// trusted.
			k += frameHeader + int(binary.LittleEndian.Uint32(c[k:]))
			n++
			if int64(k) >= room {
				break
			}
		}
		l.buf = append(l.buf, c[:k]...)
		l.frames += n
		l.size += int64(k)
		c = c[k:]
		if l.size >= l.cfg.SegmentBytes {
			l.write() // and begin the next segment
		}
	}
}

// write appends the buffer to the current segment, opening one if needed,
// and begins a new segment once the current one is full.
func (l *Log) write() {
	if len(l.buf) == 0 {
		return
	}
	n := l.frames
	l.frames = 0
	if l.f == nil {
		if err := l.openSegment(); err != nil {
			l.stats.failed.Add(uint64(n))
			l.buf = l.buf[:0]
			return
		}
	}
	if _, err := l.f.Write(l.buf); err != nil {
		l.stats.failed.Add(uint64(n))
	} else {
		l.stats.written.Add(uint64(n))
	}
	l.buf = l.buf[:0]
	if l.size >= l.cfg.SegmentBytes {
		l.sync()
		l.f.Close()
		l.f, l.size = nil, 0
		l.expire()
	}
}

func (l *Log) sync() {
	if l.f != nil {
		l.fsync.Sync(l.f)
	}
}

// openSegment begins a new segment named by the time of its first record,
// so that segments sort by time and a scan can skip whole ones.
func (l *Log) openSegment() error {
	start := l.cfg.Now()
	if t, err := recordTime(l.firstPayload()); err == nil {
		start = t
	}
	name := fmt.Sprintf("%020d%s", start.UnixNano(), segmentSuffix)
	f, err := os.OpenFile(filepath.Join(l.cfg.Dir, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("decisionlog: open segment: %w", err)
	}
	// A new file's directory entry must survive a crash too.
	if d, err := os.Open(l.cfg.Dir); err == nil {
		d.Sync()
		d.Close()
	}
	l.f = f
	l.size = int64(len(l.buf))
	return nil
}

func (l *Log) firstPayload() []byte {
	p, _, err := nextFrame(l.buf)
	if err != nil {
		return nil
	}
	return p
}

type segment struct {
	path  string
	start time.Time
}

// segments lists the segment files in time order.
func (l *Log) segments() ([]segment, error) {
	ents, err := os.ReadDir(l.cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("decisionlog: %w", err)
	}
	var out []segment
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), segmentSuffix)
		if !ok || e.IsDir() {
			continue
		}
		ns, err := strconv.ParseInt(name, 10, 64)
		if err != nil {
			continue
		}
		out = append(out, segment{path: filepath.Join(l.cfg.Dir, e.Name()), start: time.Unix(0, ns)})
	}
	slices.SortFunc(out, func(a, b segment) int { return strings.Compare(a.path, b.path) })
	return out, nil
}

// expire deletes whole segments whose every record is older than the
// retention: those followed by a segment that began before the cutoff.
// The newest segment is never deleted here.
func (l *Log) expire() {
	segs, err := l.segments()
	if err != nil {
		return
	}
	cutoff := l.cfg.Now().Add(-l.cfg.Retention)
	for i := 0; i+1 < len(segs); i++ {
		if !segs[i+1].start.After(cutoff) {
			if err := os.Remove(segs[i].path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return
			}
		}
	}
}

// skew is how far apart in time records may be written: records are timed
// by the deciding goroutine and queued in the order they arrive.
const skew = time.Second

// Scan calls fn for every record at or after since, oldest first, and
// stops at fn's first error, which it returns. It first waits for the
// records queued before it to be written, so a scan sees every decision
// recorded before the call (that was not dropped).
func (l *Log) Scan(since time.Time, fn func(Record) error) error {
	l.Flush()
	segs, err := l.segments()
	if err != nil {
		return err
	}
	for i, s := range segs {
		if i+1 < len(segs) && segs[i+1].start.Before(since.Add(-skew)) {
			continue
		}
		data, err := os.ReadFile(s.path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // expired meanwhile
		}
		if err != nil {
			return fmt.Errorf("decisionlog: %w", err)
		}
		if _, err := readSegment(data, since, fn); err != nil {
			return err
		}
	}
	return nil
}
