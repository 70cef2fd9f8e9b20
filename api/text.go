package api

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Text that is not UTF-8. encoding/json decodes invalid UTF-8, and \u
// escapes of unpaired UTF-16 surrogates, to U+FFFD without an error: an id
// sent as such bytes would be stored, matched and audited as another id.
// The check decoders refuse it, naming the field; MangledText and
// CheckEntityText let other decoders of ids do the same. The fast decoder
// never meets it (it gives up on such text), so the check costs nothing on
// the fast path.

// MangledText reports whether the JSON text data may decode to a U+FFFD
// that was not in it: it holds invalid UTF-8 or a \u escape of a UTF-16
// surrogate. It is a cheap filter: a valid surrogate pair also counts, and
// the strings decoded from data then tell whether any text was lost.
func MangledText(data []byte) bool {
	if !utf8.Valid(data) {
		return true
	}
	for i := 0; ; {
		j := bytes.Index(data[i:], []byte(`\u`))
		if j < 0 {
			return false
		}
		i += j + 2
		if r := hex4(data[i:]); 0xD800 <= r && r < 0xE000 {
			return true
		}
	}
}

// CheckEntityText refuses an entity whose type, id or properties hold
// U+FFFD, for an entity decoded from JSON text of which MangledText is
// true. where names the entity in the error ("entities[3]").
func CheckEntityText(where string, e *Entity) error {
	return checkEntityText(where+".", e)
}

func checkEntityText(prefix string, e *Entity) error {
	if err := checkText(prefix+"type", e.Type); err != nil {
		return err
	}
	if err := checkText(prefix+"id", e.ID); err != nil {
		return err
	}
	return checkValueText(prefix+"properties", e.Properties)
}

// checkRequestText is CheckEntityText for every string of a check request.
func checkRequestText(src source, req *CheckRequest) error {
	err := checkEntityText(src.path("subject."), &req.Subject)
	if err == nil {
		err = checkText(src.path("action.name"), req.Action.Name)
	}
	if err == nil {
		err = checkValueText(src.path("action.properties"), req.Action.Properties)
	}
	if err == nil {
		err = checkEntityText(src.path("resource."), &req.Resource)
	}
	if err == nil {
		err = checkValueText(src.path("context"), req.Context)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	return nil
}

func checkText(path, s string) error {
	if strings.ContainsRune(s, utf8.RuneError) {
		return fmt.Errorf("%s is not valid UTF-8 (invalid bytes, or an unpaired \\u surrogate escape, which would be read as U+FFFD): send it as UTF-8 text", path)
	}
	return nil
}

func checkValueText(path string, v any) error {
	switch t := v.(type) {
	case string:
		return checkText(path, t)
	case map[string]any:
		for k, x := range t {
			if err := checkText(path+" key "+fmt.Sprintf("%q", k), k); err != nil {
				return err
			}
			if err := checkValueText(path+"."+k, x); err != nil {
				return err
			}
		}
	case []any:
		for i, x := range t {
			if err := checkValueText(fmt.Sprintf("%s[%d]", path, i), x); err != nil {
				return err
			}
		}
	}
	return nil
}
