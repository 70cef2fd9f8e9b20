package jsonschema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// maxDecodeDepth bounds the nesting of a decoded document, as encoding/json does.
const maxDecodeDepth = 10000

// decodeStrict decodes one JSON value with numbers as json.Number, rejecting
// duplicate member names (a validator that saw the last of two "amount"s while
// the action reads the first would protect nothing) and trailing data.
func decodeStrict(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	v, err := readValue(d, 0)
	if err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, fmt.Errorf("unexpected data after the JSON value at byte %d", d.InputOffset())
	}
	return v, nil
}

func readValue(d *json.Decoder, depth int) (any, error) {
	if depth > maxDecodeDepth {
		return nil, fmt.Errorf("nested deeper than %d levels", maxDecodeDepth)
	}
	tok, err := d.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("unexpected end of JSON input")
		}
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			m := map[string]any{}
			for d.More() {
				at := d.InputOffset()
				kt, err := d.Token()
				if err != nil {
					return nil, err
				}
				k, ok := kt.(string)
				if !ok {
					return nil, fmt.Errorf("want a member name at byte %d", at)
				}
				if _, dup := m[k]; dup {
					return nil, fmt.Errorf("duplicate member name %q at byte %d", k, at)
				}
				if m[k], err = readValue(d, depth+1); err != nil {
					return nil, err
				}
			}
			if _, err := d.Token(); err != nil { // '}'
				return nil, err
			}
			return m, nil
		case '[':
			a := []any{}
			for d.More() {
				v, err := readValue(d, depth+1)
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
			if _, err := d.Token(); err != nil { // ']'
				return nil, err
			}
			return a, nil
		}
		return nil, fmt.Errorf("unexpected %v at byte %d", t, d.InputOffset())
	default:
		return tok, nil
	}
}
