package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/aibos/kernel/api"
)

// Error codes of the API. They are stable: scripts branch on them.
const (
	codeBadRequest     = "bad_request"
	codeInvalidBundle  = "invalid_bundle"
	codeTestsFailed    = "bundle_tests_failed"
	codeNotFound       = "not_found"
	codeNoLeader       = "no_leader"
	codeStale          = "revision_not_applied"
	codeTooLarge       = "too_large"
	codeInternal       = "internal"
	codeUnavailable    = "unavailable"
	codeNotReady       = "not_ready"
	codeOutcomeUnknown = "write_outcome_unknown"
	codeBadMethod      = "method_not_allowed"
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string, details ...string) {
	writeJSON(w, status, api.ErrorBody{Error: api.ErrorDetail{Code: code, Message: msg, Details: details}})
}

// decodeJSON reads one JSON value of at most limit bytes into v, rejecting
// unknown fields and trailing data. The error says what was wrong.
func decodeJSON(r *http.Request, limit int64, v any) error {
	body := http.MaxBytesReader(nil, r.Body, limit)
	return decodeJSONFrom(body, v)
}

func decodeJSONFrom(rd io.Reader, v any) error {
	dec := json.NewDecoder(rd)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return describeJSONError(err)
	}
	if dec.More() {
		return errors.New("invalid JSON body: unexpected data after the JSON value")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("invalid JSON body: unexpected data after the JSON value")
	}
	return nil
}

func describeJSONError(err error) error {
	var mbe *http.MaxBytesError
	var se *json.SyntaxError
	var ute *json.UnmarshalTypeError
	switch {
	case errors.As(err, &mbe):
		return fmt.Errorf("%w: the body is larger than %d bytes", errTooLarge, mbe.Limit)
	case errors.Is(err, io.EOF):
		return errors.New("empty body: send a JSON object")
	case errors.As(err, &se):
		return fmt.Errorf("invalid JSON body at byte %d: %v", se.Offset, se)
	case errors.As(err, &ute):
		field := ute.Field
		if field == "" {
			field = "the body"
		}
		return fmt.Errorf("invalid JSON body: %s must be %s, not %s", field, ute.Type, ute.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return fmt.Errorf("invalid JSON body: %s", strings.TrimPrefix(err.Error(), "json: "))
	default:
		return fmt.Errorf("invalid JSON body: %v", err)
	}
}

// errTooLarge marks an oversized body (413); the api decoders' sentinel, so
// that their size errors are answered alike.
var errTooLarge = api.ErrRequestTooLarge

// writeJSONBytes answers 200 with body, JSON already encoded.
func writeJSONBytes(w http.ResponseWriter, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// readBody appends the body of r, of at most limit bytes, to buf.
func readBody(w http.ResponseWriter, r *http.Request, limit int64, buf []byte) ([]byte, error) {
	tooLarge := func() error {
		return fmt.Errorf("%w: the body is larger than %d bytes", errTooLarge, limit)
	}
	if r.ContentLength > limit {
		return buf, tooLarge()
	}
	if r.ContentLength > 0 {
		// One byte more, to read the end of the body without growing.
		buf = slices.Grow(buf, int(r.ContentLength)+1)
	}
	// With w, the server closes the connection of a body over the limit.
	body := http.MaxBytesReader(w, r.Body, limit)
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, max(512, len(buf)))
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
				return buf, tooLarge()
			}
			return buf, fmt.Errorf("read body: %w", err)
		}
	}
}

// buffer is a pooled buffer for the body and the answer of a check.
type buffer struct{ b []byte }

// buffers is a cache, not state: what it holds is never observable, so it
// is a package-level pool as sync.Pool is meant to be used.
var buffers = sync.Pool{New: func() any { return &buffer{b: make([]byte, 0, 4096)} }}

// maxPooledBuffer keeps the buffers of the rare huge batches out of the
// pool.
const maxPooledBuffer = 1 << 20

func getBuffer() *buffer { return buffers.Get().(*buffer) }

func putBuffer(b *buffer) {
	if cap(b.b) > maxPooledBuffer {
		return
	}
	b.b = b.b[:0]
	buffers.Put(b)
}

// badRequest writes a 400 (or 413 for an oversized body).
func badRequest(w http.ResponseWriter, err error) {
	if errors.Is(err, errTooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge, codeTooLarge, err.Error())
		return
	}
	writeError(w, http.StatusBadRequest, codeBadRequest, err.Error())
}
