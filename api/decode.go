package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Limits of a check request decoded by DecodeCheckRequest, and of each check
// of a batch decoded by DecodeBatchCheckRequest. The engine's static cost
// bound on conditions assumes that no list or map of a request holds more
// than MaxCollectionLen items; the decoders make it so.
const (
	MaxCheckRequestSize = 1 << 20
	MaxCollectionLen    = 1_000
	MaxNestingDepth     = 32
	MaxActionNameLen    = 256
)

// Limits of a batch decoded by DecodeBatchCheckRequest.
const (
	MaxBatch                 = 10_000
	MaxBatchCheckRequestSize = 16 << 20
)

// Errors of DecodeCheckRequest and DecodeBatchCheckRequest, for callers to
// branch on (an HTTP server answers 413 for the first and 400 for the
// second).
var (
	ErrRequestTooLarge = errors.New("request too large")
	ErrInvalidRequest  = errors.New("invalid check request")
)

// DecodeCheckRequest decodes one check request from JSON, strictly: unknown
// fields, trailing data, a missing action name, text that is not UTF-8
// (see MangledText) and oversized input are errors that say what is wrong
// and where (line and column, or the field). Every error wraps
// ErrInvalidRequest or ErrRequestTooLarge.
//
// The decoding is that of encoding/json into a CheckRequest (with
// DisallowUnknownFields), followed by the checks of the limits above. A
// parser written for the shape of a check request decodes the requests it
// can, much faster; on anything else encoding/json runs and has the last
// word (see decode_fast.go). The result never refers to data, but its
// strings may share one copy of it: keep a strings.Clone of a string held
// long after the request, so as not to keep the whole request alive.
func DecodeCheckRequest(data []byte) (*CheckRequest, error) {
	if len(data) > MaxCheckRequestSize {
		return nil, fmt.Errorf("%w: the body is %d bytes; at most %d are allowed", ErrRequestTooLarge, len(data), MaxCheckRequestSize)
	}
	if req, ok := decodeCheckFast(data); ok {
		return req, nil
	}
	return decodeCheckSlow(source{body: data}, data)
}

// DecodeBatchCheckRequest decodes {"checks": [check, ...]} from JSON, as
// strictly as DecodeCheckRequest decodes each check and with the same limits
// for each, at most MaxBatch checks and MaxBatchCheckRequestSize bytes in
// all. An error about a check says which: "checks[3].action.name is
// missing". A missing or null "checks" is an empty batch.
func DecodeBatchCheckRequest(data []byte) (*BatchCheckRequest, error) {
	if len(data) > MaxBatchCheckRequestSize {
		return nil, fmt.Errorf("%w: the body is %d bytes; at most %d are allowed", ErrRequestTooLarge, len(data), MaxBatchCheckRequestSize)
	}
	if req, _, ok := decodeBatchFast(data, false); ok {
		return req, nil
	}
	return decodeBatchSlow(data)
}

// source says where a check request is, for error messages: at base in body,
// and in a batch, which check it is (where is "checks[3]").
type source struct {
	body  []byte
	base  int64
	where string
}

// path is the path of a field of the request for error messages.
func (s source) path(field string) string {
	if s.where == "" {
		return field
	}
	return s.where + "." + field
}

// invalid is an ErrInvalidRequest at offset in the request.
func (s source) invalid(offset int64, msg string) error {
	return invalid(s.body, s.base+offset, msg)
}

// decodeCheckSlow decodes data, a check request at src, with encoding/json.
// Its result, value or error, is the one DecodeCheckRequest defines.
func decodeCheckSlow(src source, data []byte) (*CheckRequest, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var req CheckRequest
	if err := dec.Decode(&req); err != nil {
		return nil, decodeError(src, data, dec, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, src.invalid(dec.InputOffset(), "unexpected data after the request object: send one JSON object")
	}
	if err := checkRequest(src, &req); err != nil {
		return nil, err
	}
	if MangledText(data) {
		if err := checkRequestText(src, &req); err != nil {
			return nil, err
		}
	}
	return &req, nil
}

// checkRequest validates what JSON decoding cannot.
func checkRequest(src source, req *CheckRequest) error {
	switch n := req.Action.Name; {
	case n == "":
		return fmt.Errorf("%w: %s is missing: name the action, such as {\"action\": {\"name\": \"data.query\"}}", ErrInvalidRequest, src.path("action.name"))
	case len(n) > MaxActionNameLen:
		return fmt.Errorf("%w: %s is %d bytes; at most %d are allowed", ErrInvalidRequest, src.path("action.name"), len(n), MaxActionNameLen)
	}
	for _, part := range []struct {
		path string
		v    map[string]any
	}{
		{"subject.properties", req.Subject.Properties},
		{"action.properties", req.Action.Properties},
		{"resource.properties", req.Resource.Properties},
		{"context", req.Context},
	} {
		if err := checkValue(src.path(part.path), part.v, 1); err != nil {
			return err
		}
	}
	return nil
}

func checkValue(path string, v any, depth int) error {
	if depth > MaxNestingDepth {
		return fmt.Errorf("%w: %s is nested more than %d levels deep", ErrInvalidRequest, path, MaxNestingDepth)
	}
	switch t := v.(type) {
	case map[string]any:
		if len(t) > MaxCollectionLen {
			return fmt.Errorf("%w: %s has %d entries; at most %d are allowed", ErrInvalidRequest, path, len(t), MaxCollectionLen)
		}
		for k, x := range t {
			if err := checkValue(path+"."+k, x, depth+1); err != nil {
				return err
			}
		}
	case []any:
		if len(t) > MaxCollectionLen {
			return fmt.Errorf("%w: %s has %d items; at most %d are allowed", ErrInvalidRequest, path, len(t), MaxCollectionLen)
		}
		for i, x := range t {
			if err := checkValue(path+"["+strconv.Itoa(i)+"]", x, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// decodeError turns an encoding/json error about data, a check request at
// src, into one that says where.
func decodeError(src source, data []byte, dec *json.Decoder, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		// Offset counts the bytes read, the bad one included.
		return src.invalid(syn.Offset-1, "malformed JSON: "+syn.Error())
	case errors.As(err, &typ):
		what := typ.Value
		if what == "" {
			what = "value"
		}
		field := typ.Field
		if field == "" {
			if src.where != "" {
				return src.invalid(0, fmt.Sprintf("%s must be an object, not %s", src.where, article(what)))
			}
			return src.invalid(0, fmt.Sprintf("the request must be a JSON object, not %s", article(what)))
		}
		key := field[strings.LastIndexByte(field, '.')+1:]
		return src.invalid(keyOffset(data, typ.Offset, key), fmt.Sprintf("%s must be %s, not %s", src.path(field), describeType(typ.Type.String()), article(what)))
	case errors.Is(err, io.EOF):
		return fmt.Errorf("%w: the body is empty: send a JSON object with subject, action, resource and context", ErrInvalidRequest)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return src.invalid(int64(len(data)), "the JSON ends before the request object does")
	}
	// Unknown fields, and errors of the types' own decoders.
	offset := dec.InputOffset()
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if key, err := strconv.Unquote(name); err == nil {
			offset = keyOffset(data, offset, key)
		}
	}
	msg := trimJSON(err.Error())
	if src.where != "" {
		msg = src.where + ": " + msg
	}
	return src.invalid(offset, msg+
		" (a check request has subject {type, id, properties}, action {name, properties}, resource {type, id, properties}, context, min_revision and explain)")
}

func invalid(data []byte, offset int64, msg string) error {
	line, col := position(data, offset)
	return fmt.Errorf("%w at line %d, column %d: %s", ErrInvalidRequest, line, col, msg)
}

// keyOffset finds the object key "key" last written before offset (where
// encoding/json reports an error: after the key's value), so that an error
// points at the field it is about.
func keyOffset(data []byte, offset int64, key string) int64 {
	offset = min(max(offset, 0), int64(len(data)))
	quoted, _ := json.Marshal(key)
	if i := bytes.LastIndex(data[:offset], quoted); i >= 0 {
		return int64(i)
	}
	return offset
}

// position turns a byte offset into a 1-based line and column.
func position(data []byte, offset int64) (line, col int) {
	offset = min(max(offset, 0), int64(len(data)))
	before := data[:offset]
	line = bytes.Count(before, []byte{'\n'}) + 1
	col = int(offset) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}

func trimJSON(s string) string { return strings.TrimPrefix(s, "json: ") }

func describeType(goType string) string {
	switch goType {
	case "string":
		return "a string"
	case "uint64", "int", "int64":
		return "a whole number"
	case "float64":
		return "a number"
	case "bool":
		return "true or false"
	case "map[string]interface {}":
		return "an object"
	}
	return "an object"
}

func article(what string) string {
	switch {
	case what == "":
		return "a value"
	case what[0] == 'a' || what[0] == 'o':
		return "an " + what
	}
	return "a " + what
}
