package api

import (
	"encoding/json"
	"slices"
	"strconv"
)

// AppendCheckRequest appends the JSON of req as encoding/json's Marshal
// writes it (map keys sorted, HTML characters escaped, numbers as it
// formats them), without the reflection that made Marshal the decision
// log's largest cost. A value of a type the decoders never produce is
// written by encoding/json itself, so the output is the same for any
// request; it fails only where Marshal would.
func AppendCheckRequest(dst []byte, req *CheckRequest) ([]byte, error) {
	var err error
	dst = append(dst, `{"subject":`...)
	if dst, err = appendEntity(dst, &req.Subject); err != nil {
		return dst, err
	}
	dst = append(dst, `,"action":{"name":`...)
	dst = appendString(dst, req.Action.Name)
	if len(req.Action.Properties) > 0 {
		dst = append(dst, `,"properties":`...)
		if dst, err = appendObject(dst, req.Action.Properties); err != nil {
			return dst, err
		}
	}
	dst = append(dst, `},"resource":`...)
	if dst, err = appendEntity(dst, &req.Resource); err != nil {
		return dst, err
	}
	if len(req.Context) > 0 {
		dst = append(dst, `,"context":`...)
		if dst, err = appendObject(dst, req.Context); err != nil {
			return dst, err
		}
	}
	if req.MinRevision != 0 {
		dst = append(dst, `,"min_revision":`...)
		dst = strconv.AppendUint(dst, req.MinRevision, 10)
	}
	if req.Explain {
		dst = append(dst, `,"explain":true`...)
	}
	return append(dst, '}'), nil
}

func appendEntity(dst []byte, e *Entity) ([]byte, error) {
	dst = append(dst, `{"type":`...)
	dst = appendString(dst, e.Type)
	dst = append(dst, `,"id":`...)
	dst = appendString(dst, e.ID)
	if len(e.Properties) > 0 {
		var err error
		dst = append(dst, `,"properties":`...)
		if dst, err = appendObject(dst, e.Properties); err != nil {
			return dst, err
		}
	}
	return append(dst, '}'), nil
}

func appendObject(dst []byte, m map[string]any) ([]byte, error) {
	if m == nil {
		return append(dst, "null"...), nil
	}
	var buf [16]string
	keys := buf[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, k)
		dst = append(dst, ':')
		var err error
		if dst, err = appendAny(dst, m[k]); err != nil {
			return dst, err
		}
	}
	return append(dst, '}'), nil
}

func appendAny(dst []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case string:
		return appendString(dst, v), nil
	case bool:
		return strconv.AppendBool(dst, v), nil
	case float64:
		if !isFinite(v) {
			break // Marshal's error
		}
		return appendFloat(dst, v), nil
	case int:
		return strconv.AppendInt(dst, int64(v), 10), nil
	case int64:
		return strconv.AppendInt(dst, v, 10), nil
	case map[string]any:
		return appendObject(dst, v)
	case []any:
		if v == nil {
			return append(dst, "null"...), nil
		}
		dst = append(dst, '[')
		for i, e := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = appendAny(dst, e); err != nil {
				return dst, err
			}
		}
		return append(dst, ']'), nil
	}
	js, err := json.Marshal(v)
	if err != nil {
		return dst, err
	}
	return append(dst, js...), nil
}

func isFinite(f float64) bool { return f-f == 0 }
