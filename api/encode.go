package api

import (
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// The append encoders write decisions byte for byte as encoding/json's
// Marshal does (FuzzAppendDecision checks it), without reflection and
// without allocating beyond dst. The one difference: encoding/json refuses
// a NaN or infinite budget limit, which is written here as null.

// AppendDecision appends the JSON of d to dst and returns the extended
// buffer.
func AppendDecision(dst []byte, d *Decision) []byte {
	dst = append(dst, `{"decision":`...)
	dst = appendString(dst, string(d.Decision))
	dst = append(dst, `,"version":`...)
	dst = strconv.AppendUint(dst, d.Version, 10)
	dst = append(dst, `,"revision":`...)
	dst = strconv.AppendUint(dst, d.Revision, 10)
	dst = append(dst, `,"reasons":`...)
	dst = appendReasons(dst, d.Reasons)
	if d.Obligations != nil {
		dst = append(dst, `,"obligations":`...)
		dst = appendObligations(dst, d.Obligations)
	}
	if len(d.Errors) > 0 {
		dst = append(dst, `,"errors":`...)
		dst = appendStrings(dst, d.Errors)
	}
	if len(d.Explain) > 0 {
		dst = append(dst, `,"explain":[`...)
		for i := range d.Explain {
			if i > 0 {
				dst = append(dst, ',')
			}
			l := &d.Explain[i]
			dst = append(dst, `{"layer":`...)
			dst = appendString(dst, l.Layer)
			dst = append(dst, `,"outcome":`...)
			dst = appendString(dst, l.Outcome)
			if len(l.Rules) > 0 {
				dst = append(dst, `,"rules":`...)
				dst = appendReasons(dst, l.Rules)
			}
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	}
	if d.Error != nil {
		dst = append(dst, `,"error":{"code":`...)
		dst = appendString(dst, d.Error.Code)
		dst = append(dst, `,"message":`...)
		dst = appendString(dst, d.Error.Message)
		if len(d.Error.Details) > 0 {
			dst = append(dst, `,"details":`...)
			dst = appendStrings(dst, d.Error.Details)
		}
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

// AppendBatchCheckResponse appends the JSON of BatchCheckResponse{Results: ds}
// to dst and returns the extended buffer.
func AppendBatchCheckResponse(dst []byte, ds []Decision) []byte {
	if ds == nil {
		return append(dst, `{"results":null}`...)
	}
	dst = append(dst, `{"results":[`...)
	for i := range ds {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendDecision(dst, &ds[i])
	}
	return append(dst, "]}"...)
}

func appendReasons(dst []byte, rs []Reason) []byte {
	if rs == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '[')
	for i := range rs {
		if i > 0 {
			dst = append(dst, ',')
		}
		r := &rs[i]
		dst = append(dst, '{')
		if r.Policy != "" {
			dst = append(dst, `"policy":`...)
			dst = appendString(dst, r.Policy)
			dst = append(dst, ',')
		}
		if r.Rule != "" {
			dst = append(dst, `"rule":`...)
			dst = appendString(dst, r.Rule)
			dst = append(dst, ',')
		}
		if r.Layer != "" {
			dst = append(dst, `"layer":`...)
			dst = appendString(dst, r.Layer)
			dst = append(dst, ',')
		}
		dst = append(dst, `"effect":`...)
		dst = appendString(dst, string(r.Effect))
		if r.Message != "" {
			dst = append(dst, `,"message":`...)
			dst = appendString(dst, r.Message)
		}
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

func appendObligations(dst []byte, o *Obligations) []byte {
	dst = append(dst, '{')
	start := len(dst)
	// field writes the name of a field, after a comma unless it is the first.
	field := func(name string) {
		if len(dst) > start {
			dst = append(dst, ',')
		}
		dst = append(dst, name...)
	}
	if o.Audit != "" {
		field(`"audit":`)
		dst = appendString(dst, o.Audit)
	}
	if rl := o.RateLimit; rl != nil {
		field(`"rate_limit":{"limit":`)
		dst = strconv.AppendInt(dst, int64(rl.Limit), 10)
		dst = append(dst, `,"per":`...)
		dst = appendDuration(dst, rl.Per)
		if rl.Key != "" {
			dst = append(dst, `,"key":`...)
			dst = appendString(dst, rl.Key)
		}
		dst = append(dst, '}')
	}
	if b := o.Budget; b != nil {
		field(`"budget":{"limit":`)
		dst = appendFloat(dst, b.Limit)
		dst = append(dst, `,"per":`...)
		dst = appendDuration(dst, b.Per)
		if b.Key != "" {
			dst = append(dst, `,"key":`...)
			dst = appendString(dst, b.Key)
		}
		dst = append(dst, '}')
	}
	if len(o.Redact) > 0 {
		field(`"redact":`)
		dst = appendStrings(dst, o.Redact)
	}
	if len(o.Approvers) > 0 {
		field(`"approvers":`)
		dst = appendStrings(dst, o.Approvers)
	}
	return append(dst, '}')
}

// appendStrings writes a non-empty []string.
func appendStrings(dst []byte, ss []string) []byte {
	dst = append(dst, '[')
	for i, s := range ss {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, s)
	}
	return append(dst, ']')
}

// appendDuration writes d as Duration.MarshalJSON does: its String, quoted.
func appendDuration(dst []byte, d Duration) []byte {
	return appendString(dst, time.Duration(d).String())
}

// appendFloat writes f as encoding/json does: like ES6, %f unless the
// exponent is below -6 or at least 21, and then without a zero-padded
// exponent.
func appendFloat(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// e-09 becomes e-9.
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

// jsonSafe reports the ASCII bytes encoding/json writes as they are (with
// HTML escaping, its default): not the controls, '"', '\\', '<', '>', '&'.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		t[c] = true
	}
	for _, c := range `"\<>&` {
		t[c] = false
	}
	return t
}()

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string as encoding/json does: <, > and &
// as \u003c, \u003e and \u0026, controls as \n, \r, \t, \b, \f or \u00XX,
// each byte of invalid UTF-8 as \ufffd, and U+2028 and U+2029 escaped.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '\\', '"':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
