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
	codeBadRequest     = api.CodeBadRequest
	codeInvalidBundle  = api.CodeInvalidBundle
	codeTestsFailed    = api.CodeTestsFailed
	codeNotFound       = api.CodeNotFound
	codeNoLeader       = api.CodeNoLeader
	codeStale          = api.CodeStale
	codeTooLarge       = api.CodeTooLarge
	codeInternal       = api.CodeInternal
	codeUnavailable    = api.CodeUnavailable
	codeNotReady       = api.CodeNotReady
	codeOutcomeUnknown = api.CodeOutcomeUnknown
	codeBadMethod      = api.CodeBadMethod

	codeResidency         = api.CodeResidency
	codeRegionUnavailable = api.CodeRegionUnavailable
	codeNotHome           = api.CodeNotHome
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

// writeJSONBytes answers 200 with body, JSON already encoded. It is the
// check endpoints' answer, so it allocates nothing for the headers: the
// Content-Type value is shared (a header's values are replaced, never
// written in place; its capacity makes an Add copy it), and a body that
// fits net/http's response buffer gets its Content-Length from net/http,
// which formats it into a buffer of its own; a larger one is given it here
// rather than be chunked.
func writeJSONBytes(w http.ResponseWriter, body []byte) {
	h := w.Header()
	h["Content-Type"] = contentTypeJSON[:1:1]
	if len(body) > responseBuffered {
		h["Content-Length"] = []string{strconv.Itoa(len(body))}
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// contentTypeJSON is the shared Content-Type header value of JSON answers;
// never modified.
var contentTypeJSON = [1]string{"application/json"}

// responseBuffered is the size of net/http's response buffer: a body that
// fits is written whole when the handler returns, with its Content-Length.
const responseBuffered = 2048

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
			// Closed, net/http need not look for more of it after the
			// handler (an io.CopyN through an io.LimitReader each time).
			_ = r.Body.Close()
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
