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
	req, _, err := decodeBatchItems(data, false)
	return req, err
}

// decodeBatchItems is decodeBatchSlow; with perItem, a check that is not a
// valid check request (or is too large) does not fail the batch: its slot
// in Checks is the zero CheckRequest and its error is in the same slot of
// errs (nil when every check is valid).
func decodeBatchItems(data []byte, perItem bool) (*BatchCheckRequest, []error, error) {
	// Syntax first, so that malformed JSON anywhere is reported as such.
	dec := json.NewDecoder(bytes.NewReader(data))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		var syn *json.SyntaxError
		switch {
		case errors.As(err, &syn):
			return nil, nil, invalid(data, syn.Offset-1, "malformed JSON: "+syn.Error())
		case errors.Is(err, io.EOF):
			return nil, nil, fmt.Errorf("%w: the body is empty: send a JSON object {\"checks\": [check, ...]}", ErrInvalidRequest)
		case errors.Is(err, io.ErrUnexpectedEOF):
			return nil, nil, invalid(data, int64(len(data)), "the JSON ends before the batch object does")
		}
		return nil, nil, invalid(data, dec.InputOffset(), "malformed JSON: "+trimJSON(err.Error()))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, nil, invalid(data, dec.InputOffset(), "unexpected data after the batch object: send one JSON object")
	}

	dec = json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		start := int64(len(data) - len(bytes.TrimLeft(data, " \t\r\n")))
		return nil, nil, invalid(data, start, "the batch must be a JSON object {\"checks\": [check, ...]}, not "+article(tokenKind(tok, err)))
	}
	req := new(BatchCheckRequest)
	var errs []error
	for dec.More() {
		tok, err := dec.Token()
		key, ok := tok.(string)
		if err != nil || !ok {
			return nil, nil, invalid(data, dec.InputOffset(), "malformed batch object")
		}
		at := keyOffset(data, dec.InputOffset(), key)
		if !strings.EqualFold(key, "checks") {
			return nil, nil, invalid(data, at, fmt.Sprintf("unknown field %q (a batch is {\"checks\": [check, ...]})", key))
		}
		switch tok, err := dec.Token(); {
		case err == nil && tok == nil:
			req.Checks, errs = nil, nil
			continue
		case err != nil || tok != json.Delim('['):
			return nil, nil, invalid(data, at, "checks must be an array of check requests, not "+article(tokenKind(tok, err)))
		}
		checks := []CheckRequest{}
		var itemErrs []error
		// fail records the error of check i: the batch's, or only its own.
		fail := func(i int, err error) error {
			if !perItem {
				return err
			}
			if itemErrs == nil {
				itemErrs = make([]error, i, i+1)
			}
			itemErrs = append(itemErrs[:i], err)
			checks = append(checks, CheckRequest{})
			return nil
		}
		for i := 0; dec.More(); i++ {
			if i == MaxBatch {
				return nil, nil, fmt.Errorf("%w: the batch has more than %d checks; at most %d are allowed", ErrRequestTooLarge, MaxBatch, MaxBatch)
			}
			var item json.RawMessage
			if err := dec.Decode(&item); err != nil {
				return nil, nil, invalid(data, dec.InputOffset(), "malformed JSON: "+trimJSON(err.Error()))
			}
			// The decoder stops right after the item, which has no white
			// space around it.
			src := source{body: data, base: dec.InputOffset() - int64(len(item)), where: "checks[" + strconv.Itoa(i) + "]"}
			if len(item) > MaxCheckRequestSize {
				if err := fail(i, fmt.Errorf("%w: %s is %d bytes; at most %d are allowed", ErrRequestTooLarge, src.where, len(item), MaxCheckRequestSize)); err != nil {
					return nil, nil, err
				}
				continue
			}
			c, err := decodeCheckSlow(src, item)
			if err != nil {
				if err := fail(i, err); err != nil {
					return nil, nil, err
				}
				continue
			}
			checks = append(checks, *c)
			if itemErrs != nil {
				itemErrs = append(itemErrs, nil)
			}
		}
		if _, err := dec.Token(); err != nil {
			return nil, nil, invalid(data, dec.InputOffset(), "malformed JSON: "+trimJSON(err.Error()))
		}
		req.Checks, errs = checks, itemErrs
	}
	return req, errs, nil
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
