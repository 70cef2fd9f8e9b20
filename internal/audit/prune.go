package audit

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"
)

// The size bound (Config.MaxBytes). Decisions are most of the log and the
// least of its value: once the segments exceed the bound, the oldest
// segments that hold nothing but decisions are deleted; a segment with an
// invocation, an approval, a kill switch or any other record is kept
// (retention by time still applies to it). Deleting from the middle of the
// chain would look like tampering to Verify, so before deleting, the log
// appends a KindPruned record, chained like any other, that names each
// deleted run of records with the chain values at both its ends; Verify
// accepts a gap exactly when such a record vouches for it. See DESIGN.md.

// KindPruned records segments deleted by the size bound.
const KindPruned = "pruned"

// prunedRun is one run of consecutive records deleted by the size bound:
// seqs FirstSeq..LastSeq, the chain before the first (PrevChain) and after
// the last (Chain), in hex. A KindPruned record's Args are {"runs": [...]}.
type prunedRun struct {
	FirstSeq  uint64 `json:"first_seq"`
	LastSeq   uint64 `json:"last_seq"`
	PrevChain string `json:"prev_chain"`
	Chain     string `json:"chain"`
	Records   uint64 `json:"records"`
	Bytes     int64  `json:"bytes"`
}

type prunedArgs struct {
	Runs []prunedRun `json:"runs"`
}

// segInfo is what the pruner learned from a sealed segment.
type segInfo struct {
	decisionsOnly bool // every record is a decision, or a KindPruned one
	size          int64
	run           prunedRun   // the segment's own records, as a run
	carried       []prunedRun // the runs its KindPruned records vouch for
}

// kickPrune asks the pruner to check the size bound; it never waits.
func (l *Log) kickPrune() {
	if l.pruneq == nil {
		return
	}
	select {
	case l.pruneq <- struct{}{}:
	default:
	}
}

// pruner runs prune when asked (at Open and after each new segment), and
// retries a round that readers held off.
func (l *Log) pruner() {
	defer close(l.prunerDone)
	cache := map[string]segInfo{}
	for {
		select {
		case <-l.stop:
			return
		case <-l.pruneq:
		}
		for !l.prune(cache) {
			select {
			case <-l.stop:
				return
			case <-time.After(time.Second):
			}
		}
	}
}

// prune deletes the oldest decisions-only segments until the segments fit
// in MaxBytes − SegmentBytes (room for the segment being written), after
// recording what it deletes. It reports false if in-process readers held
// the segments, to be tried again.
func (l *Log) prune(cache map[string]segInfo) bool {
	segs, _, err := listSegments(l.cfg.Dir)
	if err != nil {
		return true
	}
	target := l.cfg.MaxBytes - l.cfg.SegmentBytes
	sizes := make([]int64, len(segs))
	var total int64
	for i, s := range segs {
		if fi, err := os.Stat(s.path); err == nil {
			sizes[i] = fi.Size()
			total += sizes[i]
		}
	}
	if total <= target {
		l.stats.overBound.Store(false)
		return true
	}
	var victims []segment
	var runs []prunedRun
	var freed int64
	// The newest segment is being written: never a candidate.
	for i := 0; i+1 < len(segs) && total-freed > target; i++ {
		info, ok := cache[segs[i].name]
		if !ok {
			if info, ok = classify(segs[i], sizes[i]); !ok {
				continue
			}
			cache[segs[i].name] = info
		}
		if !info.decisionsOnly {
			continue
		}
		victims = append(victims, segs[i])
		runs = append(append(runs, info.carried...), info.run)
		freed += info.size
	}
	if len(victims) == 0 {
		l.stats.overBound.Store(total > l.cfg.MaxBytes)
		return true
	}
	if !l.readers.TryLock() {
		return false
	}
	defer l.readers.Unlock()
	rec := &Record{Kind: KindPruned, Status: "deleted", Node: l.cfg.Node,
		Reason: fmt.Sprintf("the audit log reached its size bound of %d bytes: %d segments of decisions only (%d bytes) deleted, oldest first", l.cfg.MaxBytes, len(victims), freed)}
	rec.Args, _ = json.Marshal(prunedArgs{Runs: mergeRuns(runs)})
	if _, err := l.AppendSync(context.Background(), rec); err != nil {
		// Closed or failed: nothing is deleted that is not recorded.
		return true
	}
	removed := 0
	for _, s := range victims {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			break
		}
		delete(cache, s.name)
		removed++
	}
	if removed > 0 {
		syncDir(l.cfg.Dir)
		l.stats.pruned.Add(uint64(removed))
		l.stats.segments.Add(-int64(removed))
	}
	l.stats.overBound.Store(total-freed > l.cfg.MaxBytes)
	return true
}

// classify reads a sealed segment: whether it holds only decisions (and
// KindPruned records), the run of its records and the runs its KindPruned
// records vouch for. ok is false for a segment that does not read whole,
// which is never deleted (it is Verify's to report).
func classify(s segment, size int64) (segInfo, bool) {
	data, err := os.ReadFile(s.path)
	if err != nil {
		return segInfo{}, false
	}
	info := segInfo{decisionsOnly: true, size: size}
	var last frame
	var n uint64
	var bad bool
	hdr, valid, err := scanSegment(data, func(fr frame) bool {
		fr.each(func(_ uint64, _ int64, body []byte) bool {
			switch bodyKind(body) {
			case KindDecision:
			case KindPruned:
				runs, err := prunedRuns(body)
				if err != nil {
					bad = true
					return false
				}
				info.carried = append(info.carried, runs...)
			default:
				info.decisionsOnly = false
			}
			return true
		})
		last = fr
		n += uint64(fr.count)
		return !bad
	})
	if err != nil || bad || valid != len(data) || n == 0 {
		return segInfo{}, false
	}
	info.run = prunedRun{FirstSeq: hdr.firstSeq, LastSeq: last.last(), PrevChain: hex.EncodeToString(hdr.prev[:]),
		Chain: hex.EncodeToString(last.chain[:]), Records: n, Bytes: size}
	return info, true
}

// mergeRuns sorts runs and joins those that continue one another, so that
// a record restating the runs of the segments it deletes stays as short as
// the gaps are few.
func mergeRuns(runs []prunedRun) []prunedRun {
	slices.SortFunc(runs, func(a, b prunedRun) int {
		switch {
		case a.FirstSeq != b.FirstSeq:
			return cmpUint(a.FirstSeq, b.FirstSeq)
		default:
			return cmpUint(b.LastSeq, a.LastSeq)
		}
	})
	var out []prunedRun
	for _, r := range runs {
		if k := len(out) - 1; k >= 0 {
			p := &out[k]
			if r.FirstSeq >= p.FirstSeq && r.LastSeq <= p.LastSeq {
				continue // restated inside a longer run
			}
			if r.FirstSeq == p.LastSeq+1 && r.PrevChain == p.Chain {
				p.LastSeq, p.Chain = r.LastSeq, r.Chain
				p.Records += r.Records
				p.Bytes += r.Bytes
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// prunedRuns reads the runs of a KindPruned record's body.
func prunedRuns(body []byte) ([]prunedRun, error) {
	var r struct {
		Args prunedArgs `json:"args"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, err
	}
	return r.Args.Runs, nil
}

// bodyKind reads the kind of a record body as appendBody writes it:
// {"node":"…","kind":"…", or {"kind":"…". It is "" for anything else (a
// body written otherwise counts as neither a decision nor a KindPruned
// record, so it is kept).
func bodyKind(body []byte) string {
	b, ok := bytes.CutPrefix(body, []byte(`{`))
	if !ok {
		return ""
	}
	if rest, ok := bytes.CutPrefix(b, []byte(`"node":"`)); ok {
		i := 0
		for ; i < len(rest) && rest[i] != '"'; i++ {
			if rest[i] == '\\' {
				i++
			}
		}
		if i >= len(rest) {
			return ""
		}
		if b, ok = bytes.CutPrefix(rest[i+1:], []byte(`,`)); !ok {
			return ""
		}
	}
	b, ok = bytes.CutPrefix(b, []byte(`"kind":"`))
	if !ok {
		return ""
	}
	i := bytes.IndexAny(b, `"\`)
	if i < 0 || b[i] != '"' {
		return ""
	}
	return string(b[:i])
}
