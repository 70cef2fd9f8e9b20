package audit

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"time"
)

// Filter selects records. Empty fields match everything; Since is
// inclusive and Until exclusive.
type Filter struct {
	Agent, Action, Decision, Kind, InvocationID string
	Since, Until                                time.Time
	// Limit is the most records returned: Query's default is 100 and its
	// maximum 10,000; Export's default is no limit.
	Limit int
	// Desc returns the newest records first.
	Desc bool
}

// Limits of Query.
const (
	DefaultLimit = 100
	MaxLimit     = 10_000
)

// ErrBadFilter marks a filter that cannot be used.
var ErrBadFilter = errors.New("audit: bad filter")

// Time bounds of segments. A segment is named by the time it began, and
// the next one began after every record in it was written, so segment
// names bound the write time of records. A record's Time is the caller's
// and may be earlier than its write time (an invocation records when it
// started); maxLag is how much earlier a record may be and still be found
// by an Until filter, and clockSkew how much later than its write time.
const (
	maxLag    = time.Hour
	clockSkew = time.Second
)

// Query returns the records that match f, oldest first (newest first with
// f.Desc). It sees every record appended before the call: it first waits
// for the writer to write them (they need not be synced).
func (l *Log) Query(f Filter) ([]Record, error) {
	if _, err := queryLimit(f); err != nil {
		return nil, err
	}
	l.flush()
	l.readers.RLock()
	defer l.readers.RUnlock()
	return QueryDir(l.cfg.Dir, f)
}

// Export writes the records that match f as JSON lines, after waiting for
// the writer as Query does.
func (l *Log) Export(w io.Writer, f Filter) error {
	l.flush()
	l.readers.RLock()
	defer l.readers.RUnlock()
	return ExportDir(l.cfg.Dir, w, f)
}

func queryLimit(f Filter) (int, error) {
	switch {
	case f.Limit < 0 || f.Limit > MaxLimit:
		return 0, fmt.Errorf("%w: limit %d is not in 1..%d", ErrBadFilter, f.Limit, MaxLimit)
	case f.Limit == 0:
		return DefaultLimit, nil
	}
	return f.Limit, nil
}

// QueryDir is Query on a directory without a running log (the log may be
// running elsewhere: a record being written is not seen).
func QueryDir(dir string, f Filter) ([]Record, error) {
	limit, err := queryLimit(f)
	if err != nil {
		return nil, err
	}
	var out []Record
	err = scanDir(dir, f, true, func(_ uint64, _ int64, _ []byte, r *Record) bool {
		out = append(out, *r)
		return len(out) < limit
	})
	return out, err
}

// ExportDir is Export on a directory without a running log.
func ExportDir(dir string, w io.Writer, f Filter) error {
	if f.Limit < 0 {
		return fmt.Errorf("%w: limit %d is negative", ErrBadFilter, f.Limit)
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	var line []byte
	var werr error
	n := 0
	err := scanDir(dir, f, f.needsDecode(), func(seq uint64, t int64, body []byte, _ *Record) bool {
		line = appendLine(line[:0], seq, time.Unix(0, t), body)
		if _, werr = bw.Write(line); werr != nil {
			return false
		}
		n++
		return f.Limit == 0 || n < f.Limit
	})
	if err != nil {
		return err
	}
	if werr != nil {
		return werr
	}
	return bw.Flush()
}

func (f *Filter) needsDecode() bool {
	return f.Agent != "" || f.Action != "" || f.Decision != "" || f.Kind != "" || f.InvocationID != ""
}

func (f *Filter) match(r *Record) bool {
	return (f.Agent == "" || r.Agent == f.Agent) && (f.Action == "" || r.Action == f.Action) &&
		(f.Decision == "" || r.Decision == f.Decision) && (f.Kind == "" || r.Kind == f.Kind) &&
		(f.InvocationID == "" || r.InvocationID == f.InvocationID)
}

// scanDir calls fn with the records of dir that match f, in f's order,
// until fn returns false. With decode false (and no field filters) the
// record is not decoded and fn gets nil. Unreadable frames are skipped:
// reporting them is Verify's job.
func scanDir(dir string, f Filter, decode bool, fn func(seq uint64, t int64, body []byte, r *Record) bool) error {
	segs, _, err := listSegments(dir)
	if err != nil {
		return err
	}
	var idx []int
	order := make([]int, len(segs))
	for i := range order {
		order[i] = i
	}
	if f.Desc {
		slices.Reverse(order)
	}
	var rec Record
	var recs []groupRec
	for _, i := range order {
		s := segs[i]
		if !f.Since.IsZero() && i+1 < len(segs) && segs[i+1].start.Add(clockSkew).Before(f.Since) {
			continue // every record was written before the next segment began
		}
		if !f.Until.IsZero() && s.start.After(f.Until.Add(maxLag)) {
			continue
		}
		data, err := os.ReadFile(s.path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // expired meanwhile
		}
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		// Offsets of the frames, so that Desc can walk them backwards.
		idx = idx[:0]
		off := segHeaderSize
		_, _, herr := scanSegment(data, func(fr frame) bool {
			idx = append(idx, off)
			off += frameHeader + len(fr.payload)
			return true
		})
		if herr != nil {
			continue
		}
		if f.Desc {
			slices.Reverse(idx)
		}
		for _, o := range idx {
			fr, _, _ := nextFrame(data[o:])
			// A timed group's records each have their own time: it is
			// filtered record by record.
			if !fr.timed && !f.inTime(fr.time) {
				continue
			}
			one := func(seq uint64, t int64, body []byte) bool {
				if fr.timed && !f.inTime(t) {
					return true
				}
				var r *Record
				if decode || f.needsDecode() {
					rec = Record{}
					if json.Unmarshal(body, &rec) != nil {
						return true
					}
					rec.Seq, rec.Time = seq, time.Unix(0, t).UTC()
					if !f.match(&rec) {
						return true
					}
					r = &rec
				}
				return fn(seq, t, body, r)
			}
			if !f.Desc || fr.count == 1 {
				if !fr.each(one) {
					return nil
				}
				continue
			}
			// Newest first within a group too.
			recs = recs[:0]
			fr.each(func(seq uint64, t int64, body []byte) bool {
				recs = append(recs, groupRec{seq, t, body})
				return true
			})
			for i := len(recs) - 1; i >= 0; i-- {
				if !one(recs[i].seq, recs[i].t, recs[i].body) {
					return nil
				}
			}
		}
	}
	return nil
}

// inTime reports whether a record of time t (unix nanos) is within the
// filter's Since and Until.
func (f *Filter) inTime(t int64) bool {
	return (f.Since.IsZero() || t >= f.Since.UnixNano()) && (f.Until.IsZero() || t < f.Until.UnixNano())
}

// groupRec is a record of a group frame, for reading it backwards.
type groupRec struct {
	seq  uint64
	t    int64
	body []byte
}
