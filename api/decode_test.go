package api

import (
	"errors"
	"strings"
	"testing"
)

func TestDecodeCheckRequest(t *testing.T) {
	big := `{"action": {"name": "x"}, "context": {"l": [` + strings.Repeat("1,", MaxCollectionLen) + `1]}}`
	deep := `{"action": {"name": "x"}, "context": ` + strings.Repeat(`{"a": `, MaxNestingDepth+1) + `1` + strings.Repeat(`}`, MaxNestingDepth+1) + `}`
	tests := []struct {
		name, body string
		err        error
		msg        string // substring of the error
	}{
		{"ok", `{"subject": {"type": "agent", "id": "a1", "properties": {"roles": ["x"]}},
		  "action": {"name": "data.query"}, "resource": {"type": "table", "id": "t1"},
		  "context": {"region": "eu-west", "amount": 2.5}, "min_revision": 7, "explain": true}`, nil, ""},
		{"empty", ``, ErrInvalidRequest, "the body is empty"},
		{"not an object", `[1, 2]`, ErrInvalidRequest, "line 1, column 1: the request must be a JSON object, not an array"},
		{"unknown top-level field", `{"action": {"name": "x"}, "subjekt": {}}`, ErrInvalidRequest, `line 1, column 27: unknown field "subjekt"`},
		{"unknown nested field", "{\"action\": {\"name\": \"x\"},\n \"subject\": {\"typ\": \"a\"}}", ErrInvalidRequest, `line 2, column 14: unknown field "typ"`},
		{"wrong type", "{\"action\": {\"name\": \"x\"},\n  \"subject\": {\"id\": 5}}", ErrInvalidRequest, `line 2, column 15: subject.id must be a string, not a number`},
		{"negative revision", `{"action": {"name": "x"}, "min_revision": -1}`, ErrInvalidRequest, "min_revision must be a whole number, not a number -1"},
		{"properties not an object", `{"action": {"name": "x"}, "context": [1]}`, ErrInvalidRequest, "context must be an object, not an array"},
		{"malformed", `{"action": {"name": "x",}}`, ErrInvalidRequest, "line 1, column 25: malformed JSON"},
		{"truncated", `{"action": {"name": "x"}`, ErrInvalidRequest, "the JSON ends before the request object does"},
		{"trailing data", `{"action": {"name": "x"}} {}`, ErrInvalidRequest, "unexpected data after the request object"},
		{"no action", `{"subject": {"type": "a", "id": "b"}}`, ErrInvalidRequest, "action.name is missing"},
		{"long action", `{"action": {"name": "` + strings.Repeat("a", MaxActionNameLen+1) + `"}}`, ErrInvalidRequest, "action.name is 257 bytes"},
		{"too many items", big, ErrInvalidRequest, "context.l has 1001 items; at most 1000"},
		{"too deep", deep, ErrInvalidRequest, "nested more than 32 levels deep"},
		{"too large", `{"action": {"name": "x"}, "context": {"s": "` + strings.Repeat("a", MaxCheckRequestSize) + `"}}`, ErrRequestTooLarge, "at most 1048576"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := DecodeCheckRequest([]byte(tt.body))
			if tt.err == nil {
				if err != nil {
					t.Fatal(err)
				}
				if req.Action.Name != "data.query" || req.Subject.Properties["roles"].([]any)[0] != "x" || req.Context["amount"] != 2.5 || req.MinRevision != 7 || !req.Explain {
					t.Errorf("decoded %+v", req)
				}
				return
			}
			if req != nil || !errors.Is(err, tt.err) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("got %v, %v\nwant an error wrapping %q containing %q", req, err, tt.err, tt.msg)
			}
		})
	}
}
