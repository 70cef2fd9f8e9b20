package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// On disk (DESIGN.md has the picture):
//
//	segment = header frame*
//	header  = "AIBOSAUD" | first seq u64 | start unix-nanos i64 | previous chain [32] | CRC-32C u32
//	frame   = payload length u32 | CRC-32C of chain and payload u32 | chain [32] | payload
//	payload = seq u64 | time unix-nanos i64 | body
//	body    = JSON object (one record without seq and time)
//	        | 0x01 | count u32 | count × (length u32 | record)
//	record  = JSON object | a decision in binary (decision.go)
//	chain   = SHA-256(chain of the previous frame || payload), genesis before seq 1
//
// A frame of the second kind, a group, holds the decisions of one batch
// request: records seq … seq+count−1, all of the frame's time, under one
// checksum and one hash. A log written before groups has only the first
// kind, which every reader still reads.
//
// Integers are little endian. The head file holds the seq and chain of the
// last record known durable: "AUDH" | seq u64 | chain [32] | CRC-32C u32.
const (
	segMagic      = "AIBOSAUD"
	segHeaderSize = 8 + 8 + 8 + 32 + 4
	frameHeader   = 4 + 4 + 32
	payloadFixed  = 8 + 8
	maxPayload    = 16 << 20
	segSuffix     = ".audit"
	headName      = "head"
	headMagic     = "AUDH"
	headSize      = 4 + 8 + 32 + 4
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// genesis is the chain value before the first record of every log.
var genesis = sha256.Sum256([]byte("aibos audit log genesis v1"))

var (
	// errShort marks bytes that end before the frame they begin: a torn
	// write, or a truncation.
	errShort = errors.New("incomplete frame")
	// errCorrupt marks a whole frame that does not check.
	errCorrupt = errors.New("corrupt frame")
	// ErrTooLarge is the error of a record whose payload exceeds 16 MiB.
	ErrTooLarge = errors.New("audit: record too large")
)

type segHeader struct {
	firstSeq uint64
	start    int64 // unix nanoseconds
	prev     [32]byte
}

func appendSegHeader(b []byte, h segHeader) []byte {
	n := len(b)
	b = append(b, segMagic...)
	b = binary.LittleEndian.AppendUint64(b, h.firstSeq)
	b = binary.LittleEndian.AppendUint64(b, uint64(h.start))
	b = append(b, h.prev[:]...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[n:], crcTable))
}

func parseSegHeader(data []byte) (segHeader, error) {
	var h segHeader
	if len(data) < segHeaderSize {
		return h, errShort
	}
	if string(data[:8]) != segMagic ||
		crc32.Checksum(data[:segHeaderSize-4], crcTable) != binary.LittleEndian.Uint32(data[segHeaderSize-4:]) {
		return h, errCorrupt
	}
	h.firstSeq = binary.LittleEndian.Uint64(data[8:])
	h.start = int64(binary.LittleEndian.Uint64(data[16:]))
	copy(h.prev[:], data[24:56])
	return h, nil
}

// frameReserve is the room a frame needs in front of its JSON body.
const frameReserve = frameHeader + payloadFixed

// sealFrame completes the frame that begins at b[start:]: frameReserve
// bytes reserved, then the JSON body up to the end of b. It returns the new
// chain value. Hashing prev and the payload needs them adjacent: prev is
// written into the chain slot, hashed with the payload, then overwritten by
// the result, so nothing is allocated or copied.
func sealFrame(b []byte, start int, prev [32]byte, seq uint64, t int64) ([]byte, [32]byte, error) {
	size := len(b) - start - frameHeader
	if size > maxPayload {
		return b[:start], prev, fmt.Errorf("%w: %d bytes", ErrTooLarge, size)
	}
	h := b[start:]
	binary.LittleEndian.PutUint32(h[0:], uint32(size))
	copy(h[8:40], prev[:])
	binary.LittleEndian.PutUint64(h[40:], seq)
	binary.LittleEndian.PutUint64(h[48:], uint64(t))
	chain := sha256.Sum256(h[8:])
	copy(h[8:40], chain[:])
	binary.LittleEndian.PutUint32(h[4:], crc32.Checksum(h[8:], crcTable))
	return b, chain, nil
}

type frame struct {
	seq   uint64 // of its first record
	time  int64  // of the frame: of every record but a timed group's
	chain [32]byte
	// payload is what the chain hashes; body is its part after seq and
	// time: one JSON record, or a group of them.
	payload, body []byte
	// count is how many records the frame holds (seqs seq…seq+count−1);
	// group says body is a group, timed that each of its records carries
	// its own time. A group body that does not parse is read as one
	// record whose body is not JSON (badGroup).
	count    int
	group    bool
	timed    bool
	badGroup bool
}

// groupMark begins a group body; a record's body begins with '{'.
const groupMark = 0x01

// timedMark begins a timed group body: the single checks the writer
// gathered, each with its own time (AppendCheck).
const timedMark = 0x03

// groupHeader is the size of a group body's mark and count.
const groupHeader = 1 + 4

// entryHeader is the size of what precedes each record of a group:
// its length, and in a timed group its time before that.
func entryHeader(timed bool) int {
	if timed {
		return 8 + 4
	}
	return 4
}

// last is the seq of the frame's last record.
func (fr *frame) last() uint64 { return fr.seq + uint64(fr.count) - 1 }

// each calls fn for every record of the frame, in seq order, with its seq,
// time (unix nanos) and JSON body (a group's binary decisions as the JSON
// appendBody writes for them, newly allocated), until fn returns false; it
// reports whether fn always returned true.
func (fr *frame) each(fn func(seq uint64, t int64, body []byte) bool) bool {
	if !fr.group || fr.badGroup {
		return fn(fr.seq, fr.time, fr.body)
	}
	hdr := entryHeader(fr.timed)
	b := fr.body[groupHeader:]
	for seq := fr.seq; len(b) >= hdr; seq++ {
		t := fr.time
		if fr.timed {
			t = int64(binary.LittleEndian.Uint64(b))
			b = b[8:]
		}
		k := binary.LittleEndian.Uint32(b)
		rec := b[4 : 4+k]
		if len(rec) > 0 && rec[0] == decisionMark {
			// A binary decision: its JSON, or, if it does not parse, its
			// bytes, which no reader takes for a JSON object.
			if j, ok := decisionJSON(nil, rec); ok {
				rec = j
			}
		}
		if !fn(seq, t, rec) {
			return false
		}
		b = b[4+k:]
	}
	return true
}

// groupCount checks that a group body (plain or timed) is whole — count
// records, each within the body, nothing after them — and returns the
// count.
func groupCount(body []byte) (int, bool) {
	if len(body) < groupHeader || body[0] != groupMark && body[0] != timedMark {
		return 0, false
	}
	hdr := entryHeader(body[0] == timedMark)
	n := binary.LittleEndian.Uint32(body[1:])
	b := body[groupHeader:]
	for i := uint32(0); i < n; i++ {
		if len(b) < hdr {
			return 0, false
		}
		k := binary.LittleEndian.Uint32(b[hdr-4:])
		if uint64(len(b)-hdr) < uint64(k) {
			return 0, false
		}
		b = b[hdr+int(k):]
	}
	if n == 0 || len(b) != 0 {
		return 0, false
	}
	return int(n), true
}

// nextFrame splits the first frame off data and returns it and its size.
// errShort means data ends inside the frame; errCorrupt that the frame is
// whole but does not check (its size n is still valid when the length
// field is plausible, so that a reader can step over it).
func nextFrame(data []byte) (fr frame, n int, err error) {
	if len(data) < frameHeader {
		return fr, 0, errShort
	}
	size := binary.LittleEndian.Uint32(data)
	if size < payloadFixed || size > maxPayload {
		return fr, 0, errCorrupt
	}
	if uint64(len(data)-frameHeader) < uint64(size) {
		return fr, 0, errShort
	}
	n = frameHeader + int(size)
	if crc32.Checksum(data[8:n], crcTable) != binary.LittleEndian.Uint32(data[4:]) {
		return fr, n, errCorrupt
	}
	copy(fr.chain[:], data[8:40])
	fr.payload = data[40:n]
	fr.seq = binary.LittleEndian.Uint64(fr.payload)
	fr.time = int64(binary.LittleEndian.Uint64(fr.payload[8:]))
	fr.body = fr.payload[payloadFixed:]
	fr.count = 1
	if len(fr.body) > 0 && (fr.body[0] == groupMark || fr.body[0] == timedMark) {
		fr.group, fr.timed = true, fr.body[0] == timedMark
		if c, ok := groupCount(fr.body); ok {
			fr.count = c
		} else {
			fr.badGroup = true
		}
	}
	return fr, n, nil
}

// chainOf is the chain value of a payload after prev.
func chainOf(prev [32]byte, payload []byte) [32]byte {
	h := sha256.New()
	h.Write(prev[:])
	h.Write(payload)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// scanSegment calls fn for each intact frame of a segment's contents after
// its header, in order, until fn returns false. It stops at the first
// frame that does not check and returns the length of the intact prefix
// (header included), which Open truncates a torn last segment to.
func scanSegment(data []byte, fn func(frame) bool) (segHeader, int, error) {
	h, err := parseSegHeader(data)
	if err != nil {
		return h, 0, err
	}
	valid := segHeaderSize
	for valid < len(data) {
		fr, n, err := nextFrame(data[valid:])
		if err != nil {
			return h, valid, nil
		}
		if fn != nil && !fn(fr) {
			return h, valid, nil
		}
		valid += n
	}
	return h, valid, nil
}

type head struct {
	seq   uint64
	chain [32]byte
}

func encodeHead(h head) []byte {
	b := make([]byte, 0, headSize)
	b = append(b, headMagic...)
	b = binary.LittleEndian.AppendUint64(b, h.seq)
	b = append(b, h.chain[:]...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

func decodeHead(data []byte) (head, error) {
	var h head
	if len(data) != headSize || string(data[:4]) != headMagic ||
		crc32.Checksum(data[:headSize-4], crcTable) != binary.LittleEndian.Uint32(data[headSize-4:]) {
		return h, errCorrupt
	}
	h.seq = binary.LittleEndian.Uint64(data[4:])
	copy(h.chain[:], data[12:44])
	return h, nil
}

// readHead reads dir's head file; ok is false if there is none.
func readHead(dir string) (h head, ok bool, err error) {
	data, err := os.ReadFile(filepath.Join(dir, headName))
	if errors.Is(err, os.ErrNotExist) {
		return h, false, nil
	}
	if err != nil {
		return h, false, err
	}
	h, err = decodeHead(data)
	return h, true, err
}

// segment is a segment file, named by its first seq and its start time so
// that names sort by seq and bound their records in time.
type segment struct {
	name     string
	path     string
	firstSeq uint64
	start    time.Time
}

func segmentName(firstSeq uint64, start int64) string {
	return fmt.Sprintf("%020d-%020d%s", firstSeq, start, segSuffix)
}

func parseSegmentName(name string) (firstSeq uint64, start int64, ok bool) {
	base, ok := strings.CutSuffix(name, segSuffix)
	if !ok {
		return 0, 0, false
	}
	a, b, ok := strings.Cut(base, "-")
	if !ok {
		return 0, 0, false
	}
	s, err1 := strconv.ParseUint(a, 10, 64)
	t, err2 := strconv.ParseInt(b, 10, 64)
	return s, t, err1 == nil && err2 == nil
}

// listSegments lists dir's segment files in seq order, and the names of
// files that end like segments but are not named like them.
func listSegments(dir string) (segs []segment, strays []string, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("audit: %w", err)
	}
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), segSuffix) {
			continue
		}
		seq, start, ok := parseSegmentName(e.Name())
		if !ok {
			strays = append(strays, e.Name())
			continue
		}
		segs = append(segs, segment{name: e.Name(), path: filepath.Join(dir, e.Name()), firstSeq: seq, start: time.Unix(0, start)})
	}
	slices.SortFunc(segs, func(a, b segment) int {
		if a.firstSeq != b.firstSeq {
			if a.firstSeq < b.firstSeq {
				return -1
			}
			return 1
		}
		return strings.Compare(a.name, b.name)
	})
	return segs, strays, nil
}
