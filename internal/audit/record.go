// Package audit owns the node's audit log: the durable, tamper-evident,
// node-local record of every decision and every agent-action invocation
// the node makes. Records are framed with a CRC-32C and chained with
// SHA-256 across segment files, written by one goroutine with group commit,
// and read back by Query, Export and the standalone Verify. It is not
// replicated (DESIGN.md §4 keeps high-volume records out of Raft). See
// DESIGN.md in this directory for the format and what Verify can and
// cannot detect.
package audit

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/aibos/kernel/api"
)

// Kinds of records the kernel writes; other kinds are allowed.
const (
	KindDecision   = "decision"
	KindInvocation = "invocation"
	KindApproval   = "approval"
	KindKill       = "kill"
	// KindAccess is an operator's act on the API, or a refused request
	// (401, 403, 415, 429).
	KindAccess = "access"
	// KindBudgetWarning is a budget crossing its soft threshold.
	KindBudgetWarning = "budget_warning"
	// KindMCP is an MCP call through the kernel; KindMCPAccept an
	// operator's acceptance of a changed tool.
	KindMCP       = "mcp"
	KindMCPAccept = "mcp_accept"
)

// Record is one audit record. Seq is assigned by the log; Time and Node
// are filled in by the log when zero.
type Record struct {
	Seq          uint64          `json:"seq"`
	Time         time.Time       `json:"time"`
	Node         string          `json:"node,omitempty"`
	Kind         string          `json:"kind"`
	Agent        string          `json:"agent,omitempty"`
	AgentVersion string          `json:"agent_version,omitempty"`
	Tenant       string          `json:"tenant,omitempty"`
	Subject      string          `json:"subject,omitempty"`  // "type:id"
	Action       string          `json:"action,omitempty"`   //
	Resource     string          `json:"resource,omitempty"` // "type:id"
	Decision     string          `json:"decision,omitempty"`
	Version      uint64          `json:"version,omitempty"` // bundle version
	Rules        []string        `json:"rules,omitempty"`   // "policy/rule"
	InvocationID string          `json:"invocation_id,omitempty"`
	ApprovalID   string          `json:"approval_id,omitempty"`
	Status       string          `json:"status,omitempty"`
	Error        string          `json:"error,omitempty"`
	Cost         float64         `json:"cost,omitempty"`
	DurationNS   int64           `json:"duration_ns,omitempty"`
	ArgsDigest   string          `json:"args_digest,omitempty"`
	Args         json.RawMessage `json:"args,omitempty"`   // only with the "full" audit obligation
	Result       json.RawMessage `json:"result,omitempty"` // idem
	By           string          `json:"by,omitempty"`
	Reason       string          `json:"reason,omitempty"`
	Redacted     []string        `json:"redacted,omitempty"` // paths redacted from Args and Result
	Origin       string          `json:"origin,omitempty"`   // "sandbox" for a host call of a sandboxed agent
	User         string          `json:"user,omitempty"`     // the user an agent acted for (the sub of an OIDC access token)

	// Check, when set, is a decision of the check API recorded by
	// reference: the writer takes subject, agent, action, resource and
	// rules from it (and the request's context as args when Full), so the
	// decision path pays for one allocation and no formatting. The request
	// and reasons must not be modified afterwards.
	Check *Check `json:"-"`
}

// Check is a decided check request, for Record.Check and AppendGroup.
type Check struct {
	Req     *api.CheckRequest
	Reasons []api.Reason
	// Full keeps the request's context as the record's args (the "full"
	// audit obligation).
	Full bool
	// Decision and Version are the decision and its bundle version, for
	// AppendGroup (a Record carries its own).
	Decision string
	Version  uint64
}

// appendBody appends the JSON object of r without seq and time (they are
// stored in binary in front of it, see frame.go), with node, args, result
// and redacted given by the writer (which fills in defaults and redacts
// without modifying r). Hand-rolled because it runs for every decision:
// encoding/json costs several times as much. FuzzEncodeRecord checks it
// against encoding/json.
//
// argsValid says args was written by this package (valid, one line) and
// need not be checked.
func appendBody(b []byte, r *Record, node string, args, result json.RawMessage, redacted []string, argsValid bool) []byte {
	b = append(b, '{')
	first := true
	str := func(key, v string) {
		if v == "" {
			return
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, key...)
		b = append(b, '"', ':')
		b = appendString(b, v)
	}
	raw := func(key string) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, key...)
		b = append(b, '"', ':')
	}
	pair := func(key, a string, sep byte, c string) {
		raw(key)
		b = append(b, '"')
		b = appendStringContent(b, a)
		b = append(b, sep)
		b = appendStringContent(b, c)
		b = append(b, '"')
	}
	str("node", node)
	raw("kind")
	b = appendString(b, r.Kind)
	if c := r.Check; c != nil {
		if c.Req.Subject.Type == "agent" {
			str("agent", c.Req.Subject.ID)
		}
		pair("subject", c.Req.Subject.Type, ':', c.Req.Subject.ID)
		str("action", c.Req.Action.Name)
		pair("resource", c.Req.Resource.Type, ':', c.Req.Resource.ID)
	} else {
		str("agent", r.Agent)
		str("agent_version", r.AgentVersion)
		str("tenant", r.Tenant)
		str("subject", r.Subject)
		str("action", r.Action)
		str("resource", r.Resource)
	}
	str("decision", r.Decision)
	if r.Version != 0 {
		raw("version")
		b = strconv.AppendUint(b, r.Version, 10)
	}
	if c := r.Check; c != nil {
		n := 0
		for _, rs := range c.Reasons {
			if rs.Policy == "" {
				continue
			}
			if n == 0 {
				raw("rules")
				b = append(b, '[')
			} else {
				b = append(b, ',')
			}
			n++
			b = append(b, '"')
			b = appendStringContent(b, rs.Policy)
			b = append(b, '/')
			b = appendStringContent(b, rs.Rule)
			b = append(b, '"')
		}
		if n > 0 {
			b = append(b, ']')
		}
	} else if len(r.Rules) > 0 {
		raw("rules")
		b = appendStrings(b, r.Rules)
	}
	str("invocation_id", r.InvocationID)
	str("approval_id", r.ApprovalID)
	str("status", r.Status)
	str("error", r.Error)
	// NaN and infinities have no JSON form; they are left out.
	if r.Cost != 0 && !math.IsNaN(r.Cost) && !math.IsInf(r.Cost, 0) {
		raw("cost")
		b = strconv.AppendFloat(b, r.Cost, 'g', -1, 64)
	}
	if r.DurationNS != 0 {
		raw("duration_ns")
		b = strconv.AppendInt(b, r.DurationNS, 10)
	}
	str("args_digest", r.ArgsDigest)
	if len(args) > 0 {
		raw("args")
		if argsValid {
			b = append(b, args...)
		} else {
			b = appendRaw(b, args)
		}
	}
	if len(result) > 0 {
		raw("result")
		b = appendRaw(b, result)
	}
	str("by", r.By)
	str("reason", r.Reason)
	if len(redacted) > 0 {
		raw("redacted")
		b = appendStrings(b, redacted)
	}
	str("origin", r.Origin)
	str("user", r.User)
	return append(b, '}')
}

// appendLine appends the JSON line of a stored record: its body with seq
// and time spliced in front, and a newline.
func appendLine(b []byte, seq uint64, t time.Time, body []byte) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"time":"`...)
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if len(body) > 2 { // more than "{}"
		b = append(b, ',')
		b = append(b, body[1:]...)
	} else {
		b = append(b, '}')
	}
	return append(b, '\n')
}

func appendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

// appendRaw appends a JSON value given by the caller. A value that is not
// JSON is kept as a JSON string of its bytes rather than lost or allowed
// to break the record; line breaks between tokens are removed so that an
// export stays one record per line.
func appendRaw(b []byte, v json.RawMessage) []byte {
	if !json.Valid(v) {
		return appendString(b, string(v))
	}
	if bytes.ContainsAny(v, "\r\n") {
		// Raw CR and LF can only be whitespace in valid JSON.
		var c bytes.Buffer
		_ = json.Compact(&c, v)
		return append(b, c.Bytes()...)
	}
	return append(b, v...)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaping as encoding/json does
// (without its HTML escaping): control characters, quote and backslash,
// U+2028 and U+2029; invalid UTF-8 becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	b = appendStringContent(b, s)
	return append(b, '"')
}

// appendStringContent appends s escaped, without the quotes.
func appendStringContent(b []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(b, s[start:]...)
}

// appendValue appends v, a value as encoding/json decodes it (maps with
// sorted keys, as encoding/json writes them). Values of other types go
// through encoding/json.
func appendValue(b []byte, v any) []byte {
	switch t := v.(type) {
	case nil:
		return append(b, "null"...)
	case string:
		return appendString(b, t)
	case bool:
		return strconv.AppendBool(b, t)
	case float64:
		if math.IsNaN(t) || math.IsInf(t, 0) {
			return append(b, "null"...)
		}
		return appendFloat(b, t)
	case []any:
		b = append(b, '[')
		for i, x := range t {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendValue(b, x)
		}
		return append(b, ']')
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendValue(b, t[k])
		}
		return append(b, '}')
	}
	j, err := json.Marshal(v)
	if err != nil {
		return append(b, "null"...)
	}
	return append(b, j...)
}

// appendFloat formats f as encoding/json does.
func appendFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9, as encoding/json does
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}
