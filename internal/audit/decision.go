package audit

import (
	"encoding/binary"
	"strconv"
)

// A record of a group (frame.go) is either a JSON object or, for the
// decisions the decision point queues with AppendGroup, a binary body the
// writer produces with a copy per field instead of JSON's escaping:
//
//	decision = 0x02 | node | subject type | subject id | action | resource type | resource id
//	           | decision | version uvarint | rules uvarint × (policy | rule)
//	           | args (uvarint length, JSON; empty when not kept) | redacted uvarint × path
//	string   = uvarint length | bytes
//
// Readers never see it: frame.each hands them the JSON object appendBody
// would have written for the same record, byte for byte (FuzzDecisionBody
// holds the two to that), so queries, exports, verification and the size
// bound read groups as they read records.
const decisionMark = 0x02

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendDecision appends the binary body of the decision c, written by
// node, with args (the request's context, already redacted, or nil) and
// the paths redacted from it.
func appendDecision(b []byte, c *Check, node string, args []byte, redacted []string) []byte {
	b = append(b, decisionMark)
	b = appendStr(b, node)
	b = appendStr(b, c.Req.Subject.Type)
	b = appendStr(b, c.Req.Subject.ID)
	b = appendStr(b, c.Req.Action.Name)
	b = appendStr(b, c.Req.Resource.Type)
	b = appendStr(b, c.Req.Resource.ID)
	b = appendStr(b, c.Decision)
	b = binary.AppendUvarint(b, c.Version)
	n := 0
	for _, rs := range c.Reasons {
		if rs.Policy != "" {
			n++
		}
	}
	b = binary.AppendUvarint(b, uint64(n))
	for _, rs := range c.Reasons {
		if rs.Policy != "" {
			b = appendStr(b, rs.Policy)
			b = appendStr(b, rs.Rule)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(args)))
	b = append(b, args...)
	b = binary.AppendUvarint(b, uint64(len(redacted)))
	for _, p := range redacted {
		b = appendStr(b, p)
	}
	return b
}

// decisionReader reads the fields of a binary decision body in order.
type decisionReader struct {
	b  []byte
	ok bool
}

func (r *decisionReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.ok, r.b = false, nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *decisionReader) bytes() []byte {
	n := r.uvarint()
	if !r.ok || n > uint64(len(r.b)) {
		r.ok, r.b = false, nil
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *decisionReader) str() string { return string(r.bytes()) }

// decisionJSON appends to out the JSON object appendBody writes for the
// Check record whose binary body is body; ok is false when body does not
// parse (then out is returned as it was).
func decisionJSON(out, body []byte) ([]byte, bool) {
	if len(body) == 0 || body[0] != decisionMark {
		return out, false
	}
	r := decisionReader{b: body[1:], ok: true}
	node := r.str()
	st, sid := r.str(), r.str()
	action := r.str()
	rt, rid := r.str(), r.str()
	decision := r.str()
	version := r.uvarint()
	nrules := r.uvarint()
	if !r.ok || nrules > uint64(len(r.b)) {
		return out, false
	}
	b := out
	b = append(b, '{')
	if node != "" {
		b = append(b, `"node":`...)
		b = appendString(b, node)
		b = append(b, ',')
	}
	b = append(b, `"kind":`...)
	b = appendString(b, KindDecision)
	if st == "agent" && sid != "" {
		b = append(b, `,"agent":`...)
		b = appendString(b, sid)
	}
	b = append(b, `,"subject":"`...)
	b = appendStringContent(b, st)
	b = append(b, ':')
	b = appendStringContent(b, sid)
	b = append(b, '"')
	if action != "" {
		b = append(b, `,"action":`...)
		b = appendString(b, action)
	}
	b = append(b, `,"resource":"`...)
	b = appendStringContent(b, rt)
	b = append(b, ':')
	b = appendStringContent(b, rid)
	b = append(b, '"')
	if decision != "" {
		b = append(b, `,"decision":`...)
		b = appendString(b, decision)
	}
	if version != 0 {
		b = append(b, `,"version":`...)
		b = strconv.AppendUint(b, version, 10)
	}
	for i := range nrules {
		if i == 0 {
			b = append(b, `,"rules":[`...)
		} else {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = appendStringContent(b, r.str())
		b = append(b, '/')
		b = appendStringContent(b, r.str())
		b = append(b, '"')
	}
	if nrules > 0 {
		b = append(b, ']')
	}
	if args := r.bytes(); len(args) > 0 {
		b = append(b, `,"args":`...)
		b = append(b, args...)
	}
	nred := r.uvarint()
	if !r.ok || nred > uint64(len(r.b)) {
		return out, false
	}
	for i := range nred {
		if i == 0 {
			b = append(b, `,"redacted":[`...)
		} else {
			b = append(b, ',')
		}
		b = appendString(b, r.str())
	}
	if nred > 0 {
		b = append(b, ']')
	}
	if !r.ok || len(r.b) != 0 {
		return out, false
	}
	return append(b, '}'), true
}
