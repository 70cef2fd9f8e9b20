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

// decodeBatchSlow decodes a batch with encoding/json: its result, value or
// error, is the one DecodeBatchCheckRequest defines. The batch object is
// walked token by token, so that each check is decoded exactly as
// DecodeCheckRequest decodes one, and its errors say which check and where.
// As in encoding/json, the field name "checks" matches case-insensitively
// and, given twice, the last one counts (every check is validated, though).
func decodeBatchSlow(data []byte) (*BatchCheckRequest, error) {
	// Syntax first, so that malformed JSON anywhere is reported as such.
	dec := json.NewDecoder(bytes.NewReader(data))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		var syn *json.SyntaxError
		switch {
		case errors.As(err, &syn):
			return nil, invalid(data, syn.Offset-1, "malformed JSON: "+syn.Error())
		case errors.Is(err, io.EOF):
			return nil, fmt.Errorf("%w: the body is empty: send a JSON object {\"checks\": [check, ...]}", ErrInvalidRequest)
		case errors.Is(err, io.ErrUnexpectedEOF):
			return nil, invalid(data, int64(len(data)), "the JSON ends before the batch object does")
		}
		return nil, invalid(data, dec.InputOffset(), "malformed JSON: "+trimJSON(err.Error()))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, invalid(data, dec.InputOffset(), "unexpected data after the batch object: send one JSON object")
	}

	dec = json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		start := int64(len(data) - len(bytes.TrimLeft(data, " \t\r\n")))
		return nil, invalid(data, start, "the batch must be a JSON object {\"checks\": [check, ...]}, not "+article(tokenKind(tok, err)))
	}
	req := new(BatchCheckRequest)
	for dec.More() {
		tok, err := dec.Token()
		key, ok := tok.(string)
		if err != nil || !ok {
			return nil, invalid(data, dec.InputOffset(), "malformed batch object")
		}
		at := keyOffset(data, dec.InputOffset(), key)
		if !strings.EqualFold(key, "checks") {
			return nil, invalid(data, at, fmt.Sprintf("unknown field %q (a batch is {\"checks\": [check, ...]})", key))
		}
		switch tok, err := dec.Token(); {
		case err == nil && tok == nil:
			req.Checks = nil
			continue
		case err != nil || tok != json.Delim('['):
			return nil, invalid(data, at, "checks must be an array of check requests, not "+article(tokenKind(tok, err)))
		}
		checks := []CheckRequest{}
		for i := 0; dec.More(); i++ {
			if i == MaxBatch {
				return nil, fmt.Errorf("%w: the batch has more than %d checks; at most %d are allowed", ErrRequestTooLarge, MaxBatch, MaxBatch)
			}
			var item json.RawMessage
			if err := dec.Decode(&item); err != nil {
				return nil, invalid(data, dec.InputOffset(), "malformed JSON: "+trimJSON(err.Error()))
			}
			// The decoder stops right after the item, which has no white
			// space around it.
			src := source{body: data, base: dec.InputOffset() - int64(len(item)), where: "checks[" + strconv.Itoa(i) + "]"}
			if len(item) > MaxCheckRequestSize {
				return nil, fmt.Errorf("%w: %s is %d bytes; at most %d are allowed", ErrRequestTooLarge, src.where, len(item), MaxCheckRequestSize)
			}
			c, err := decodeCheckSlow(src, item)
			if err != nil {
				return nil, err
			}
			checks = append(checks, *c)
		}
		if _, err := dec.Token(); err != nil {
			return nil, invalid(data, dec.InputOffset(), "malformed JSON: "+trimJSON(err.Error()))
		}
		req.Checks = checks
	}
	return req, nil
}

// tokenKind names the kind of JSON value a token starts, for error messages.
func tokenKind(tok json.Token, err error) string {
	if err != nil {
		return "value"
	}
	switch tok := tok.(type) {
	case json.Delim:
		if tok == '[' {
			return "array"
		}
		return "object"
	case string:
		return "string"
	case float64, json.Number:
		return "number"
	case bool:
		return "bool"
	case nil:
		return "null"
	}
	return "value"
}
