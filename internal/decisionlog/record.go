// Package decisionlog owns the node's decision log: a durable, append-only,
// node-local record of the decisions this node made (the request, the
// decision, the determining rule, the bundle version and revision, the
// time), sampled or complete by configuration. It is the input of policy
// simulation (internal/simulate). It is not replicated: DESIGN.md §4 keeps
// high-volume records out of the consensus log. See DESIGN.md in this
// directory for the format, the sampling and the behaviour under pressure.
package decisionlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/aibos/kernel/api"
)

// Record is one logged decision.
type Record struct {
	Time     time.Time        `json:"time"`
	Request  api.CheckRequest `json:"request"`
	Decision api.Effect       `json:"decision"`
	// Rule is the determining rule, as engine.DeterminingRule renders it.
	Rule     string `json:"rule,omitempty"`
	Version  uint64 `json:"version"`
	Revision uint64 `json:"revision"`
}

// A record on disk is a frame: the payload's length (uint32, little
// endian), its CRC-32C (uint32), then the payload. The payload is a format
// byte, the time (int64 Unix nanoseconds), version and revision (uvarint),
// the decision (one byte), the rule (uvarint length and bytes), and the
// request as JSON up to the end: api.DecodeCheckRequest reads it back
// through its fast path, which keeps replay fast. That JSON is either the
// request encoded (AppendCheckRequest, without min_revision and explain)
// or, from RecordJSON, the bytes the request was decoded from, which a
// reader takes the same way, dropping min_revision and explain.
const (
	frameHeader   = 8
	formatV1      = 1
	maxRecordSize = api.MaxCheckRequestSize + 1<<16
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt marks a frame that is torn or does not match its checksum.
var ErrCorrupt = errors.New("decisionlog: corrupt record")

var effects = [...]api.Effect{api.Allow, api.Deny, api.RequireApproval}

func effectByte(e api.Effect) byte {
	for i, x := range effects {
		if x == e {
			return byte(i)
		}
	}
	return 1 // anything unknown was a denial
}

// appendFrame appends the frame of one record to dst.
func appendFrame(dst []byte, t time.Time, req *api.CheckRequest, d api.Effect, rule string, version, revision uint64) ([]byte, error) {
	return appendFrameParts(dst, t, req, nil, d, rule, "", "", version, revision)
}

// ruleParts is engine.DeterminingRule(rs) in up to three parts, which
// appendFrameParts writes without building the string.
func ruleParts(rs []api.Reason) (a, sep, b string) {
	if len(rs) == 0 {
		return "", "", ""
	}
	r := &rs[0]
	switch {
	case r.Rule != "":
		return r.Policy, "/", r.Rule
	case r.Layer != "":
		return r.Layer, ": ", r.Message
	default:
		return r.Message, "", ""
	}
}

// appendFrameParts is appendFrame of the rule a+sep+b, and of the request
// JSON raw, which decodes to req, if it is not nil.
func appendFrameParts(dst []byte, t time.Time, req *api.CheckRequest, raw []byte, d api.Effect, a, sep, b string, version, revision uint64) ([]byte, error) {
	start := len(dst)
	dst = append(dst, make([]byte, frameHeader)...)
	dst = append(dst, formatV1)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(t.UnixNano()))
	dst = binary.AppendUvarint(dst, version)
	dst = binary.AppendUvarint(dst, revision)
	dst = append(dst, effectByte(d))
	dst = binary.AppendUvarint(dst, uint64(len(a)+len(sep)+len(b)))
	dst = append(dst, a...)
	dst = append(dst, sep...)
	dst = append(dst, b...)
	if raw != nil {
		// The request as the client sent it: a copy, where encoding it
		// again was most of a sampled decision's cost in a profile of
		// batches.
		dst = append(dst, raw...)
	} else {
		// The request's JSON as encoding/json writes it, without its
		// reflection (the decision log's largest cost in a profile).
		r := *req
		r.MinRevision, r.Explain = 0, false
		var err error
		if dst, err = api.AppendCheckRequest(dst, &r); err != nil {
			return dst[:start], fmt.Errorf("decisionlog: encode request: %w", err)
		}
	}
	payload := dst[start+frameHeader:]
	if len(payload) > maxRecordSize {
		return dst[:start], fmt.Errorf("decisionlog: record of %d bytes exceeds %d", len(payload), maxRecordSize)
	}
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(payload, crcTable))
	return dst, nil
}

// nextFrame splits the first frame off data. It returns the payload and
// the frame's size, or ErrCorrupt if data does not start with a whole,
// intact frame.
func nextFrame(data []byte) (payload []byte, n int, err error) {
	if len(data) < frameHeader {
		return nil, 0, ErrCorrupt
	}
	size := binary.LittleEndian.Uint32(data)
	if size == 0 || size > maxRecordSize || uint64(len(data)-frameHeader) < uint64(size) {
		return nil, 0, ErrCorrupt
	}
	payload = data[frameHeader : frameHeader+int(size)]
	if crc32.Checksum(payload, crcTable) != binary.LittleEndian.Uint32(data[4:]) {
		return nil, 0, ErrCorrupt
	}
	return payload, frameHeader + int(size), nil
}

// recordTime reads the time of a payload without decoding the rest.
func recordTime(p []byte) (time.Time, error) {
	if len(p) < 9 || p[0] != formatV1 {
		return time.Time{}, ErrCorrupt
	}
	return time.Unix(0, int64(binary.LittleEndian.Uint64(p[1:]))), nil
}

// decodePayload decodes the payload of a frame.
func decodePayload(p []byte) (Record, error) {
	var rec Record
	t, err := recordTime(p)
	if err != nil {
		return rec, err
	}
	rec.Time = t
	p = p[9:]
	var n int
	if rec.Version, n = binary.Uvarint(p); n <= 0 {
		return rec, ErrCorrupt
	}
	p = p[n:]
	if rec.Revision, n = binary.Uvarint(p); n <= 0 {
		return rec, ErrCorrupt
	}
	p = p[n:]
	if len(p) < 1 || int(p[0]) >= len(effects) {
		return rec, ErrCorrupt
	}
	rec.Decision = effects[p[0]]
	p = p[1:]
	rl, n := binary.Uvarint(p)
	if n <= 0 || rl > uint64(len(p)-n) {
		return rec, ErrCorrupt
	}
	rec.Rule = string(p[n : n+int(rl)])
	p = p[n+int(rl):]
	req, err := api.DecodeCheckRequest(p)
	if err != nil {
		return rec, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	rec.Request = *req
	// A request recorded as sent may carry them; they are not part of
	// what was decided.
	rec.Request.MinRevision, rec.Request.Explain = 0, false
	return rec, nil
}

// readSegment calls fn for each record of a segment's contents at or after
// since, in order. It stops at the first frame that is torn or corrupt and
// returns the length of the intact prefix, so that a caller recovering the
// last segment can truncate there.
func readSegment(data []byte, since time.Time, fn func(Record) error) (valid int, err error) {
	for valid < len(data) {
		p, n, ferr := nextFrame(data[valid:])
		if ferr != nil {
			return valid, nil
		}
		if fn != nil {
			t, terr := recordTime(p)
			// An intact frame whose payload does not decode was written by
			// a newer format or a bug, not torn: it is skipped.
			if terr == nil && !t.Before(since) {
				if rec, derr := decodePayload(p); derr == nil {
					if err := fn(rec); err != nil {
						return valid, err
					}
				}
			}
		}
		valid += n
	}
	return valid, nil
}
