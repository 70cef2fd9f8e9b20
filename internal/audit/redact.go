package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// redactedValue replaces every redacted value.
const redactedValue = "[redacted]"

// redactor removes configured fields from Args and Result. A path is a
// dotted list of object keys ("customer.email"); where a step meets an
// array, the rest of the path applies to each of its elements, so
// "items.card" redacts the card of every object in items. A key that
// contains a dot cannot be named. The same paths apply to Args and to
// Result.
type redactor struct {
	paths [][]string
	// keys are the quoted first keys of the paths: a value that contains
	// none of them is not parsed (the common case costs a byte search).
	keys [][]byte
}

func newRedactor(paths []string) (*redactor, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	r := &redactor{}
	for _, p := range paths {
		steps := strings.Split(p, ".")
		for _, s := range steps {
			if s == "" {
				return nil, fmt.Errorf("audit: redact path %q: want dotted field names like customer.email", p)
			}
		}
		r.paths = append(r.paths, steps)
		k, _ := json.Marshal(steps[0])
		r.keys = append(r.keys, k)
	}
	return r, nil
}

// apply returns v with the configured paths redacted, and appends the
// redacted paths, prefixed by where ("args" or "result"), to done. v is
// not modified; a value without any of the paths is returned as is. The
// redacted value is re-encoded with its object keys sorted.
func (r *redactor) apply(v json.RawMessage, where string, done []string) (json.RawMessage, []string) {
	if r == nil || len(v) == 0 {
		return v, done
	}
	found := false
	for _, k := range r.keys {
		if bytes.Contains(v, k) {
			found = true
			break
		}
	}
	if !found {
		return v, done
	}
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return v, done // not JSON: appendRaw keeps it as a string
	}
	n := len(done)
	for i, p := range r.paths {
		if redactPath(doc, p) {
			done = append(done, where+"."+strings.Join(r.paths[i], "."))
		}
	}
	if len(done) == n {
		return v, done
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return json.RawMessage(`"` + redactedValue + `"`), append(done[:n], where)
	}
	return bytes.TrimRight(out.Bytes(), "\n"), done
}

// redactPath replaces the value at path in doc and reports whether there
// was one.
func redactPath(doc any, path []string) bool {
	switch d := doc.(type) {
	case map[string]any:
		v, ok := d[path[0]]
		if !ok {
			return false
		}
		if len(path) == 1 {
			d[path[0]] = redactedValue
			return true
		}
		return redactPath(v, path[1:])
	case []any:
		hit := false
		for _, e := range d {
			hit = redactPath(e, path) || hit
		}
		return hit
	}
	return false
}

// Redact returns v with the values at paths (the syntax of Config.Redact)
// replaced by "[redacted]"; v is not modified. Invalid paths are ignored.
// The gateway applies a policy's redact obligation with it, so the answer,
// the approval and the record agree on what a path means.
func Redact(v json.RawMessage, paths []string) json.RawMessage {
	var ok []string
	for _, p := range paths {
		if p != "" && !strings.Contains("."+p+".", "..") {
			ok = append(ok, p)
		}
	}
	r, err := newRedactor(ok)
	if err != nil {
		return v
	}
	out, _ := r.apply(v, "", nil)
	return out
}
