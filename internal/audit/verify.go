package audit

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// Report is the result of Verify.
type Report struct {
	Segments int    `json:"segments"`
	Records  int    `json:"records"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	// Head is the chain value after LastSeq, in hex: kept somewhere else,
	// it lets a later Verify prove that nothing up to LastSeq changed.
	Head string `json:"head"`
	// Notes are observations that are not problems: records expired by
	// retention before FirstSeq, or an incomplete last record that nothing
	// acknowledged (a crash while writing; Open truncates it).
	Notes    []string  `json:"notes,omitempty"`
	Problems []Problem `json:"problems"`
}

// OK reports whether Verify found no problem.
func (r Report) OK() bool { return len(r.Problems) == 0 }

// Problem is one integrity failure: the segment file (or "head"), the seq
// of the record concerned (the seq expected there when the record itself
// cannot be trusted) and its byte offset in the file.
type Problem struct {
	Segment string `json:"segment"`
	Seq     uint64 `json:"seq"`
	Offset  int64  `json:"offset"`
	Message string `json:"message"`
}

func (p Problem) String() string {
	return fmt.Sprintf("%s seq %d offset %d: %s", p.Segment, p.Seq, p.Offset, p.Message)
}

// Verify checks the audit log in dir without a running log: every frame's
// checksum, consecutive seqs, the hash chain within and across segments,
// and the head file against the end of the log. It returns an error only
// when dir cannot be read; what it finds is in the Report.
func Verify(dir string) (Report, error) {
	hs, err := loadHead(dir)
	if err != nil {
		return Report{Problems: []Problem{}}, err
	}
	return verifyDir(dir, hs, position{})
}

// Verify is the package Verify on the log's directory, up to what the
// writer has written when it is called.
func (l *Log) Verify() (Report, error) {
	l.readers.RLock()
	defer l.readers.RUnlock()
	// The head is read before the writer is asked how far it wrote: the
	// head only names records written (and synced) before it, so it is
	// never ahead of that position.
	hs, err := loadHead(l.cfg.Dir)
	if err != nil {
		return Report{Problems: []Problem{}}, err
	}
	return verifyDir(l.cfg.Dir, hs, l.flush())
}

// headState is what the head file says, if there is one (err: damaged).
type headState struct {
	h   head
	ok  bool
	err error
}

func loadHead(dir string) (headState, error) {
	h, ok, err := readHead(dir)
	if err != nil && !errors.Is(err, errCorrupt) {
		return headState{}, fmt.Errorf("audit: %w", err)
	}
	return headState{h, ok, err}, nil
}

// verifyDir verifies dir; a non-empty lim.segment ends the log there, at
// lim.size bytes (a running writer may be appending past it).
func verifyDir(dir string, hs headState, lim position) (Report, error) {
	v := verifier{rep: Report{Problems: []Problem{}}, haveHead: hs.ok && hs.err == nil, headSeq: hs.h.seq}
	segs, strays, err := listSegments(dir)
	if err != nil {
		return v.rep, err
	}
	for _, s := range strays {
		v.problem(s, 0, 0, "not a segment name (want FIRSTSEQ-STARTNANOS.audit): renamed or foreign file")
	}
	if lim.segment != "" {
		for i, s := range segs {
			if s.name == lim.segment {
				segs = segs[:i+1]
				break
			}
		}
	}
	for i, s := range segs {
		data, err := os.ReadFile(s.path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return v.rep, fmt.Errorf("audit: %w", err)
		}
		if s.name == lim.segment && int64(len(data)) > lim.size {
			data = data[:lim.size]
		}
		v.segment(s.name, s.firstSeq, data, i == len(segs)-1)
	}
	v.rep.Segments = len(segs)
	v.finish(hs)
	return v.rep, nil
}

type verifier struct {
	rep     Report
	started bool
	next    uint64 // seq expected next
	chain   [32]byte
	// chainAt is the chain value at the seq the head file names, if seen.
	headSeq    uint64
	chainAt    *[32]byte
	haveHead   bool
	tornSeg    string
	tornOffset int64
	// gaps are records missing between two segments, and runs the runs
	// that KindPruned records say the size bound deleted (by first seq):
	// finish matches them up, since a gap's record comes after it.
	gaps []gap
	runs map[uint64][]prunedRun
}

// gap is a run of records missing before segment seg: seqs from..to, the
// chain before them (prev) and after them (next, the segment's header).
type gap struct {
	seg        string
	from, to   uint64
	prev, next [32]byte
}

func (v *verifier) problem(seg string, seq uint64, off int64, msg string) {
	v.rep.Problems = append(v.rep.Problems, Problem{Segment: seg, Seq: seq, Offset: off, Message: msg})
}

// segment checks one segment file's contents; last is whether it is the
// newest, where an incomplete tail may be a crash rather than a problem.
func (v *verifier) segment(name string, nameSeq uint64, data []byte, last bool) {
	hdr, err := parseSegHeader(data)
	switch {
	case errors.Is(err, errShort):
		if last && len(data) == 0 {
			v.note(fmt.Sprintf("%s is empty (a crash while beginning it; Open removes it)", name))
			return
		}
		v.problem(name, v.next, 0, fmt.Sprintf("segment header is incomplete (%d bytes): truncated", len(data)))
		return
	case err != nil:
		v.problem(name, v.next, 0, "segment header does not match its checksum: modified or damaged")
	default:
		if hdr.firstSeq != nameSeq {
			v.problem(name, hdr.firstSeq, 0, fmt.Sprintf("segment is named for seq %d but begins at seq %d: renamed", nameSeq, hdr.firstSeq))
		}
		switch {
		case !v.started && hdr.firstSeq <= 1:
			if hdr.prev != genesis {
				v.problem(name, hdr.firstSeq, 0, "the first segment does not begin at the genesis of the chain")
			}
		case !v.started:
			v.note(fmt.Sprintf("records before seq %d are not here: expired by retention, deleted by the size bound, or removed", hdr.firstSeq))
		case hdr.firstSeq > v.next:
			v.gaps = append(v.gaps, gap{seg: name, from: v.next, to: hdr.firstSeq - 1, prev: v.chain, next: hdr.prev})
		case hdr.firstSeq < v.next:
			v.problem(name, hdr.firstSeq, 0, fmt.Sprintf("segment begins at seq %d but the one before ends at seq %d: overlapping or duplicated records", hdr.firstSeq, v.next-1))
		case hdr.prev != v.chain:
			v.problem(name, hdr.firstSeq, 0, "segment does not link to the last record of the one before (chain differs): modified or replaced")
		}
		v.started = true
		v.next, v.chain = hdr.firstSeq, hdr.prev
		if v.next == 0 {
			v.next = 1
		}
	}
	if len(data) < segHeaderSize {
		return
	}
	for off := segHeaderSize; off < len(data); {
		fr, n, err := nextFrame(data[off:])
		if err != nil {
			final := n == 0 || off+n == len(data)
			if last && isZero(data[off:]) {
				// The zeros a running log fills its newest segment with
				// ahead of its records (Open cuts them off).
				return
			}
			if last && final {
				// An incomplete or unreadable end of the newest segment is
				// what a crash while writing leaves; finish decides with
				// the head file whether anything acknowledged was there.
				v.tornSeg, v.tornOffset = name, int64(off)
				return
			}
			if n == 0 {
				v.problem(name, v.next, int64(off), fmt.Sprintf("%d bytes from here cannot be read as records (%v): truncated, modified or damaged", len(data)-off, err))
				return
			}
			v.problem(name, v.next, int64(off), "record does not match its checksum: modified or damaged")
			copy(v.chain[:], data[off+8:off+40])
			v.next++
			off += n
			continue
		}
		var msgs []string
		switch {
		case fr.seq > v.next:
			msgs = append(msgs, fmt.Sprintf("seq %d follows seq %d: %s missing", fr.seq, v.next-1, seqRange(v.next, fr.seq-1)))
		case fr.seq < v.next:
			msgs = append(msgs, fmt.Sprintf("seq %d where seq %d was expected: records reordered or duplicated", fr.seq, v.next))
		}
		if chainOf(v.chain, fr.payload) != fr.chain {
			msgs = append(msgs, "chain value does not match: this record, or the order of records before it, was changed")
		}
		if fr.badGroup {
			msgs = append(msgs, "group of records does not parse (count and lengths)")
		}
		var pruned []groupRec // records of deleted segments, read once the frame checks
		fr.each(func(seq uint64, t int64, body []byte) bool {
			if !json.Valid(body) || len(body) == 0 || body[0] != '{' {
				msgs = append(msgs, fmt.Sprintf("record %d: body is not a JSON object", seq))
			} else if bodyKind(body) == KindPruned {
				pruned = append(pruned, groupRec{seq, t, body})
			}
			return len(msgs) == 0
		})
		if len(msgs) > 0 {
			v.problem(name, fr.seq, int64(off), strings.Join(msgs, "; "))
			pruned = nil
		}
		for _, p := range pruned {
			runs, err := prunedRuns(p.body)
			if err != nil {
				v.problem(name, p.seq, int64(off), "a record of deleted segments does not say which: "+err.Error())
			}
			if v.runs == nil {
				v.runs = map[uint64][]prunedRun{}
			}
			for _, r := range runs {
				v.runs[r.FirstSeq] = append(v.runs[r.FirstSeq], r)
			}
		}
		if v.rep.Records == 0 {
			v.rep.FirstSeq = fr.seq
		}
		v.rep.Records += fr.count
		v.rep.LastSeq = fr.last()
		v.chain, v.next = fr.chain, fr.last()+1
		if v.haveHead && fr.last() == v.headSeq {
			c := fr.chain
			v.chainAt = &c
		}
		off += n
	}
}

func (v *verifier) note(s string) { v.rep.Notes = append(v.rep.Notes, s) }

// finish checks the gaps between segments against the records of the
// size bound, and the end of the log against the head file.
func (v *verifier) finish(hs headState) {
	for _, g := range v.gaps {
		if v.vouched(g.from, g.to, hex.EncodeToString(g.prev[:]), hex.EncodeToString(g.next[:])) {
			v.note(fmt.Sprintf("records %d..%d, before %s, were deleted by the size bound (decisions only), as the log recorded", g.from, g.to, g.seg))
			continue
		}
		v.problem(g.seg, g.from, 0, fmt.Sprintf("%s missing: the segment before this one ends at seq %d, and no record of the size bound accounts for them (a segment removed?)", seqRange(g.from, g.to), g.from-1))
	}
	h := hs.h
	v.rep.Head = hex.EncodeToString(v.chain[:])
	if !v.started {
		v.rep.Head = ""
	}
	switch {
	case hs.err != nil:
		v.problem(headName, 0, 0, "head file does not match its checksum: modified or damaged; truncation of the log cannot be checked")
		return
	case !hs.ok:
		if v.rep.Records > 0 {
			v.problem(headName, 0, 0, "head file is missing: truncation of the log cannot be checked")
		}
		return
	}
	end := v.next - 1 // the last seq the log holds
	if !v.started {
		end = 0
	}
	switch {
	case h.seq > end:
		where := ""
		if v.tornSeg != "" {
			where = fmt.Sprintf(" (%s is incomplete from offset %d)", v.tornSeg, v.tornOffset)
		}
		v.problem(headName, end+1, 0, fmt.Sprintf("the head file says seq %d was written but the log ends at seq %d%s: %s removed or damaged (tail truncated)", h.seq, end, where, seqRange(end+1, h.seq)))
	case v.chainAt != nil && *v.chainAt != h.chain:
		v.problem(headName, h.seq, 0, fmt.Sprintf("the chain value at seq %d differs from the head file: the log was rewritten", h.seq))
	}
	if v.tornSeg != "" && h.seq <= end {
		v.note(fmt.Sprintf("%s has an incomplete last record at offset %d, after the last acknowledged one (a crash while writing; Open truncates it)", v.tornSeg, v.tornOffset))
	}
}

// vouched reports whether recorded runs of deleted records join seq from,
// after chain prev, to seq to, with chain next after it.
func (v *verifier) vouched(from, to uint64, prev, next string) bool {
	if from == to+1 {
		return prev == next
	}
	for _, r := range v.runs[from] {
		if r.PrevChain == prev && r.LastSeq <= to && r.LastSeq >= from && v.vouched(r.LastSeq+1, to, r.Chain, next) {
			return true
		}
	}
	return false
}

// seqRange names records a..b with their verb: "record 7 is", "records 7..9 are".
func seqRange(a, b uint64) string {
	if a == b {
		return fmt.Sprintf("record %d is", a)
	}
	return fmt.Sprintf("records %d..%d are", a, b)
}

// isZero reports whether b holds only zero bytes.
func isZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
