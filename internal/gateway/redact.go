package gateway

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/aibos/kernel/internal/audit"
)

// redactedValue replaces what the redact obligation hides (the audit log's
// spelling).
const redactedValue = "[redacted]"

// minInside is the length from which a redacted value is also replaced
// inside longer strings; a shorter one (a CVV, a PIN) is replaced where it
// stands alone, so that "123" does not eat every order number.
const minInside = 4

// redaction applies an invocation's redact obligation. A path "a.b" names
// field b of object a, at the top of the document; arrays on the way apply
// it to each item. A path may be qualified: "input.ssn" applies to the
// input only, "result.email" to the result only; an unqualified one to
// both. The fields at the paths become "[redacted]" (audit.Redact, so the
// answer, the approval and the record agree on what a path means).
//
// A backend may echo what it was sent, so a field hidden by path would come
// back elsewhere: in the result, inside a sentence, in an error body. The
// redaction therefore also remembers the values it hid (strings and
// numbers) and replaces them wherever they appear in what it is given
// later. A nil *redaction hides nothing.
type redaction struct {
	inputPaths, resultPaths []string
	secrets                 []string          // distinct, longest first
	long                    *strings.Replacer // the secrets of at least minInside characters
	// all: more than maxSecrets values to hide; rather than search for
	// each, whole documents and messages are hidden.
	all bool
}

// maxSecrets bounds the values a redaction searches for, so that an input
// with a huge array under a redacted path cannot make every answer slow.
const maxSecrets = 256

// newRedaction prepares the obligation's paths and collects the values at
// the input's paths.
func newRedaction(paths []string, input json.RawMessage) *redaction {
	if len(paths) == 0 {
		return nil
	}
	r := &redaction{}
	for _, p := range paths {
		if rest, ok := strings.CutPrefix(p, "input."); ok {
			r.inputPaths = append(r.inputPaths, rest)
		} else if rest, ok := strings.CutPrefix(p, "result."); ok {
			r.resultPaths = append(r.resultPaths, rest)
		} else {
			r.inputPaths = append(r.inputPaths, p)
			r.resultPaths = append(r.resultPaths, p)
		}
	}
	r.collect(input, r.inputPaths)
	return r
}

// input is the input with the redaction applied: for the approval shown to
// approvers and the audit record.
func (r *redaction) input(doc json.RawMessage) json.RawMessage {
	if r == nil {
		return doc
	}
	return r.scrub(audit.Redact(doc, r.inputPaths))
}

// result is a backend's result with the redaction applied. The values at
// the result's own paths join those hidden from then on.
func (r *redaction) result(doc json.RawMessage) json.RawMessage {
	if r == nil {
		return doc
	}
	r.collect(doc, r.resultPaths)
	return r.scrub(audit.Redact(doc, r.resultPaths))
}

// text is a message (a backend's error, which may quote the request) with
// the hidden values replaced.
func (r *redaction) text(s string) string {
	if r == nil || len(r.secrets) == 0 || s == "" {
		return s
	}
	if r.all {
		return redactedValue
	}
	s = r.replace(s)
	// A message may quote JSON, where a value is escaped.
	for _, v := range r.secrets {
		if q, _ := json.Marshal(v); string(q[1:len(q)-1]) != v {
			s = replaceValue(s, string(q[1:len(q)-1]))
		}
	}
	return s
}

// replace replaces the secrets in s: the long ones wherever they occur, the
// short ones where they stand alone.
func (r *redaction) replace(s string) string {
	if r.long != nil {
		s = r.long.Replace(s)
	}
	for _, v := range r.secrets {
		if utf8.RuneCountInString(v) < minInside {
			s = replaceValue(s, v)
		}
	}
	return s
}

// collect adds the string and number values at paths in doc to the
// secrets; an object or array at a path gives all of its own.
func (r *redaction) collect(doc json.RawMessage, paths []string) {
	if len(paths) == 0 || len(doc) == 0 {
		return
	}
	v, ok := decodeJSON(doc)
	if !ok {
		return
	}
	n := len(r.secrets)
	for _, p := range paths {
		for _, hit := range lookupAll(v, strings.Split(p, ".")) {
			r.secrets = appendLeaves(r.secrets, hit)
		}
	}
	if len(r.secrets) == n {
		return
	}
	slices.SortFunc(r.secrets, func(a, b string) int {
		if len(a) != len(b) {
			return len(b) - len(a)
		}
		return strings.Compare(a, b)
	})
	r.secrets = slices.Compact(r.secrets)
	if len(r.secrets) > maxSecrets {
		r.all = true
		return
	}
	// Longest first: where two overlap, the longer is replaced whole.
	var pairs []string
	for _, v := range r.secrets {
		if utf8.RuneCountInString(v) >= minInside {
			pairs = append(pairs, v, redactedValue)
		}
	}
	r.long = nil
	if len(pairs) > 0 {
		r.long = strings.NewReplacer(pairs...)
	}
}

// scrub replaces the secrets wherever they appear in doc's values: a whole
// string or number equal to one becomes "[redacted]", and one of at least
// minInside characters is replaced inside longer strings (a shorter one
// where it stands alone). Object keys are kept. doc is returned as is if
// it has none of them.
func (r *redaction) scrub(doc json.RawMessage) json.RawMessage {
	if len(r.secrets) == 0 || len(doc) == 0 {
		return doc
	}
	if r.all {
		return json.RawMessage(`"` + redactedValue + `"`)
	}
	// Without a backslash every string in doc is spelled literally, so a
	// byte search settles the common case.
	if !bytes.ContainsRune(doc, '\\') && !slices.ContainsFunc(r.secrets, func(s string) bool { return bytes.Contains(doc, []byte(s)) }) {
		return doc
	}
	v, ok := decodeJSON(doc)
	if !ok {
		return doc
	}
	v, changed := r.scrubValue(v)
	if !changed {
		return doc
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return json.RawMessage(`"` + redactedValue + `"`)
	}
	return bytes.TrimRight(out.Bytes(), "\n")
}

func (r *redaction) scrubValue(v any) (any, bool) {
	switch x := v.(type) {
	case string:
		if slices.Contains(r.secrets, x) {
			return redactedValue, true
		}
		s := r.replace(x)
		return s, s != x
	case json.Number:
		if slices.Contains(r.secrets, x.String()) {
			return redactedValue, true
		}
	case map[string]any:
		changed := false
		for k, e := range x {
			if ne, c := r.scrubValue(e); c {
				x[k], changed = ne, true
			}
		}
		return x, changed
	case []any:
		changed := false
		for i, e := range x {
			if ne, c := r.scrubValue(e); c {
				x[i], changed = ne, true
			}
		}
		return x, changed
	}
	return v, false
}

// replaceValue replaces secret in s: everywhere if it is at least
// minInside characters long, else only where no letter or digit touches it.
func replaceValue(s, secret string) string {
	if secret == "" || !strings.Contains(s, secret) {
		return s
	}
	if utf8.RuneCountInString(secret) >= minInside {
		return strings.ReplaceAll(s, secret, redactedValue)
	}
	var b strings.Builder
	for {
		i := strings.Index(s, secret)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		end := i + len(secret)
		before, _ := utf8.DecodeLastRuneInString(s[:i])
		after, _ := utf8.DecodeRuneInString(s[end:])
		b.WriteString(s[:i])
		if isWordRune(before) || isWordRune(after) {
			b.WriteString(secret)
		} else {
			b.WriteString(redactedValue)
		}
		s = s[end:]
	}
}

func isWordRune(r rune) bool {
	return r != utf8.RuneError && (unicode.IsLetter(r) || unicode.IsDigit(r))
}

func decodeJSON(doc json.RawMessage) (any, bool) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	return v, true
}

// lookupAll is every value at path in v, with audit.Redact's reading of a
// path: object keys, and an array on the way applies the rest to each item.
func lookupAll(v any, path []string) []any {
	switch d := v.(type) {
	case map[string]any:
		e, ok := d[path[0]]
		if !ok {
			return nil
		}
		if len(path) == 1 {
			return []any{e}
		}
		return lookupAll(e, path[1:])
	case []any:
		var out []any
		for _, e := range d {
			out = append(out, lookupAll(e, path)...)
		}
		return out
	}
	return nil
}

// appendLeaves appends the strings and numbers in v, as text; booleans,
// nulls and empty strings say too little to hide.
func appendLeaves(dst []string, v any) []string {
	switch x := v.(type) {
	case string:
		if x != "" && x != redactedValue {
			dst = append(dst, x)
		}
	case json.Number:
		dst = append(dst, x.String())
	case map[string]any:
		for _, e := range x {
			dst = appendLeaves(dst, e)
		}
	case []any:
		for _, e := range x {
			dst = appendLeaves(dst, e)
		}
	}
	return dst
}
