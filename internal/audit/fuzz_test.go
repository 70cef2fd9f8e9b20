package audit

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
)

// buildSegment is a segment of n records beginning at seq first after
// chain prev, as the writer lays it out; it returns the chain after it.
func buildSegment(first uint64, prev [32]byte, n int) ([]byte, [32]byte) {
	b := appendSegHeader(nil, segHeader{firstSeq: first, start: 1, prev: prev})
	for i := range n {
		start := len(b)
		b = append(b, zeros[:]...)
		b = appendBody(b, decision(i), "n1", nil, nil, nil, false)
		b, prev, _ = sealFrame(b, start, prev, first+uint64(i), int64(i))
	}
	return b, prev
}

// buildGroupSegment is a segment holding one group frame of n records
// beginning at seq first after chain prev.
func buildGroupSegment(first uint64, prev [32]byte, n int) ([]byte, [32]byte) {
	b := appendSegHeader(nil, segHeader{firstSeq: first, start: 1, prev: prev})
	start := len(b)
	b = append(b, zeros[:]...)
	b = append(b, groupMark)
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	for i := range n {
		at := len(b)
		b = append(b, 0, 0, 0, 0)
		b = appendBody(b, decision(i), "n1", nil, nil, nil, false)
		binary.LittleEndian.PutUint32(b[at:], uint32(len(b)-at-4))
	}
	b, prev, _ = sealFrame(b, start, prev, first, 1)
	return b, prev
}

func FuzzAuditSegment(f *testing.F) {
	first, chain := buildSegment(1, genesis, 3)
	seg, _ := buildSegment(4, chain, 3)
	gseg, _ := buildGroupSegment(4, chain, 3)
	f.Add(gseg)
	tseg, _ := buildTimedSegment(4, chain, 3)
	f.Add(tseg)
	f.Add(tseg[:len(tseg)-3])
	f.Add(gseg[:len(gseg)-7])
	f.Add(seg)
	f.Add(seg[:len(seg)-5])
	f.Add(seg[:segHeaderSize])
	f.Add([]byte{})
	f.Add(append(bytes.Clone(seg[:segHeaderSize+40]), seg[segHeaderSize:]...))
	f.Fuzz(func(t *testing.T, data []byte) {
		// The reader: an intact prefix that reads the same again.
		n := 0
		_, valid, err := scanSegment(data, func(fr frame) bool {
			n++
			if len(fr.payload) < payloadFixed || len(fr.body) != len(fr.payload)-payloadFixed {
				t.Fatalf("frame with a payload of %d bytes", len(fr.payload))
			}
			k := 0
			fr.each(func(_ uint64, _ int64, body []byte) bool {
				k++
				var r Record
				_ = json.Unmarshal(body, &r) // must not panic either
				return true
			})
			if k != fr.count {
				t.Fatalf("a frame of %d records yields %d", fr.count, k)
			}
			return true
		})
		if err == nil {
			if valid < segHeaderSize || valid > len(data) {
				t.Fatalf("valid %d of %d", valid, len(data))
			}
			if _, again, _ := scanSegment(data[:valid], nil); again != valid {
				t.Fatalf("prefix of %d reads as %d", valid, again)
			}
		}
		// Verify: a good first segment, then these bytes; problems are
		// reported, never a crash. The bytes are verified both as the
		// newest segment and as one in the middle, in memory (fast), and
		// for some inputs through the files.
		hs := headState{h: head{seq: 3, chain: chain}, ok: true}
		var rep Report
		for _, last := range []bool{true, false} {
			v := verifier{rep: Report{Problems: []Problem{}}, haveHead: true, headSeq: 3}
			v.segment(segmentName(1, 1), 1, first, false)
			v.segment(segmentName(4, 2), 4, data, last)
			v.finish(hs)
			if last {
				rep = v.rep
			}
		}
		if (bytes.Equal(data, seg) || bytes.Equal(data, gseg)) && !rep.OK() {
			t.Fatalf("the intact segment has problems: %v", rep.Problems)
		}
		if !bytes.Equal(data, seg) && !bytes.Equal(data, gseg) && rep.OK() && n == 3 && valid == len(data) {
			// Three intact frames that verify are the original three.
			if !bytes.Equal(data[segHeaderSize:], seg[segHeaderSize:]) {
				t.Fatalf("different records verify: %x", data)
			}
		}
		if len(data)%8 != 0 {
			return
		}
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, segmentName(1, 1)), first, 0o644)
		os.WriteFile(filepath.Join(dir, segmentName(4, 2)), data, 0o644)
		os.WriteFile(filepath.Join(dir, headName), encodeHead(head{seq: 3, chain: chain}), 0o644)
		frep, err := Verify(dir)
		if err != nil {
			t.Fatal(err)
		}
		if frep.OK() != rep.OK() {
			t.Fatalf("in memory ok=%v, from files %v", rep.OK(), frep.Problems)
		}
	})
}

// FuzzEncodeRecord checks the hand-rolled encoder against encoding/json:
// the line it writes is JSON and decodes to the record encoding/json
// would have written.
func FuzzEncodeRecord(f *testing.F) {
	f.Add("decision", "agent-1", "a\nb\"c\\\x01\xff\u2028é", uint64(3), 0.25, int64(-5), []byte(`{"a": [1, 2]}`), "p/r,q/s")
	f.Add("", "", "", uint64(0), math.NaN(), int64(0), []byte("not json"), "")
	f.Add("k", "<&>", "\t", uint64(math.MaxUint64), 1e21, int64(math.MinInt64), []byte("\n[\r\n]"), ",")
	f.Fuzz(func(t *testing.T, kind, agent, text string, version uint64, cost float64, dur int64, args []byte, rules string) {
		r := &Record{Seq: 9, Time: time.Unix(1700000000, 123).UTC(), Node: "n", Kind: kind, Agent: agent, Action: text,
			Error: text, Version: version, Cost: cost, DurationNS: dur, Args: args, Result: args, Reason: text}
		if rules != "" {
			r.Rules = strings.Split(rules, ",")
		}
		body := appendBody(nil, r, r.Node, r.Args, r.Result, r.Rules, false)
		line := appendLine(nil, r.Seq, r.Time, body)
		if bytes.Count(line, []byte("\n")) != 1 || line[len(line)-1] != '\n' {
			t.Fatalf("not one line: %q", line)
		}
		var got Record
		if err := json.Unmarshal(line, &got); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		r.Redacted = r.Rules
		std, err := json.Marshal(r)
		if err != nil {
			return // NaN, infinities or Args that are not JSON: we keep them anyway
		}
		var want Record
		if err := json.Unmarshal(std, &want); err != nil {
			t.Fatal(err)
		}
		got.Args, want.Args = compact(t, got.Args), compact(t, want.Args)
		got.Result, want.Result = compact(t, got.Result), compact(t, want.Result)
		if !got.Time.Equal(want.Time) {
			t.Fatalf("time %v, want %v", got.Time, want.Time)
		}
		got.Time, want.Time = time.Time{}, time.Time{}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decoded\n %#v\nwant\n %#v\nline %s\nstd  %s", got, want, line, std)
		}
	})
}

func compact(t *testing.T, v json.RawMessage) json.RawMessage {
	if len(v) == 0 {
		return nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, v); err != nil {
		t.Fatalf("%v: %q", err, v)
	}
	return b.Bytes()
}

// FuzzGroupBody checks the group decoder: a body it accepts yields exactly
// its count of records, which tile the body after the header; anything
// else is refused, never a crash.
// buildTimedSegment is a segment holding one timed group frame of n
// binary decisions beginning at seq first after chain prev, record i at
// time 100+i.
func buildTimedSegment(first uint64, prev [32]byte, n int) ([]byte, [32]byte) {
	b := appendSegHeader(nil, segHeader{firstSeq: first, start: 1, prev: prev})
	start := len(b)
	b = append(b, zeros[:]...)
	b = append(b, timedMark)
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	cs := checks(n)
	for i := range cs {
		rec := appendDecision(nil, &cs[i], "n1", nil, nil)
		b = binary.LittleEndian.AppendUint64(b, uint64(100+i))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(rec)))
		b = append(b, rec...)
	}
	b, prev, _ = sealFrame(b, start, prev, first, 100)
	return b, prev
}

func FuzzGroupBody(f *testing.F) {
	gseg, _ := buildGroupSegment(1, genesis, 3)
	fr, _, _ := nextFrame(gseg[segHeaderSize:])
	f.Add(fr.body)
	f.Add(fr.body[:len(fr.body)-1])
	f.Add([]byte{groupMark, 0, 0, 0, 0})
	f.Add([]byte{groupMark, 1, 0, 0, 0, 2, 0, 0, 0, '{', '}'})
	f.Add([]byte{groupMark, 255, 255, 255, 255, 0, 0, 0, 0})
	tseg, _ := buildTimedSegment(1, genesis, 3)
	tfr, _, _ := nextFrame(tseg[segHeaderSize:])
	f.Add(tfr.body)
	f.Add(tfr.body[:len(tfr.body)-1])
	f.Add([]byte{timedMark, 1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 2, 0, 0, 0, '{', '}'})
	f.Fuzz(func(t *testing.T, body []byte) {
		n, ok := groupCount(body)
		if !ok {
			return
		}
		fr := frame{seq: 10, time: 5, body: body, count: n, group: true, timed: body[0] == timedMark}
		k := 0
		fr.each(func(seq uint64, at int64, rec []byte) bool {
			if seq != 10+uint64(k) {
				t.Fatalf("record %d has seq %d", k, seq)
			}
			if !fr.timed && at != 5 {
				t.Fatalf("record %d of a plain group has time %d, not the frame's", k, at)
			}
			k++
			return true
		})
		if k != n || fr.last() != 10+uint64(n)-1 {
			t.Fatalf("count %d: %d records read", n, k)
		}
	})
}

// FuzzDecisionBody holds the binary body of a group's decision to the JSON
// the writer would have written for the same record: decisionJSON of
// appendDecision is appendBody of the Check record, byte for byte, for any
// strings (escapes, invalid UTF-8, empty types); and decisionJSON of any
// bytes is JSON or refused, never a crash.
func FuzzDecisionBody(f *testing.F) {
	f.Add("agent", "a\"1", "data.query", "table", "orders", "allow", uint64(3), "p", "r/1", "n1", true, []byte{decisionMark, 0})
	f.Add("", "", "", "", "", "", uint64(0), "", "", "", false, []byte{decisionMark})
	f.Add("user", "\xff\u2028", "x", ":", "\n", "deny", uint64(1<<40), "q", "", "", true, []byte("{}"))
	f.Fuzz(func(t *testing.T, st, sid, action, rt, rid, decision string, version uint64, policy, rule, node string, full bool, raw []byte) {
		if out, ok := decisionJSON(nil, raw); ok && !json.Valid(out) {
			t.Fatalf("decisionJSON(%x) = %s, not JSON", raw, out)
		}
		c := Check{
			Req: &api.CheckRequest{Subject: api.Entity{Type: st, ID: sid}, Action: api.Action{Name: action},
				Resource: api.Entity{Type: rt, ID: rid}, Context: map[string]any{"k": sid, "n": float64(version % 1000)}},
			Reasons:  []api.Reason{{Policy: policy, Rule: rule, Effect: api.Allow}, {Layer: "tenant"}, {Policy: rule, Rule: policy}},
			Full:     full,
			Decision: decision, Version: version,
		}
		var args []byte
		var redacted []string
		if full {
			args = appendValue(nil, c.Req.Context)
			redacted = []string{"args." + policy}
		}
		want := appendBody(nil, &Record{Kind: KindDecision, Decision: decision, Version: version, Check: &c, Redacted: nil}, node, args, nil, redacted, true)
		got, ok := decisionJSON(nil, appendDecision(nil, &c, node, args, redacted))
		if !ok || !bytes.Equal(got, want) {
			t.Fatalf("binary decision reads as\n%s\nwant\n%s", got, want)
		}
	})
}
