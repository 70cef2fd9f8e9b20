package api

import (
	"errors"
	"strings"
	"testing"
)

func TestMangledText(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want bool
	}{
		{`{"id":"u1"}`, false},
		{`{"id":"zoë"}`, false},
		{`{"id":"\u00e9"}`, false},
		{`{"id":"` + "\xff" + `"}`, true},
		{`{"id":"\ud800"}`, true},
		{`{"id":"\uDFFF"}`, true},
		{`{"id":"\ud83d\ude00"}`, true}, // a valid pair: the decoded strings tell
		{`{"id":"\u12"}`, false},
		{`\u`, false},
	} {
		if got := MangledText([]byte(tt.in)); got != tt.want {
			t.Errorf("MangledText(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestDecodeRefusesTextThatIsNotUTF8(t *testing.T) {
	for _, tt := range []struct{ body, field string }{
		{`{"subject":{"type":"user","id":"` + "\xff" + `"},"action":{"name":"a.b"}}`, "subject.id"},
		{`{"action":{"name":"a.b"},"resource":{"type":"t","id":"x\udc00"}}`, "resource.id"},
		{`{"action":{"name":"a.b","properties":{"k":["ok","` + "\xc0" + `"]}}}`, "action.properties.k[1]"},
		{`{"action":{"name":"a.b"},"context":{"` + "\xff" + `":1}}`, "context key"},
	} {
		_, err := DecodeCheckRequest([]byte(tt.body))
		if !errors.Is(err, ErrInvalidRequest) || !strings.Contains(err.Error(), tt.field+" ") || !strings.Contains(err.Error(), "UTF-8") {
			t.Errorf("%q: %v, want an error naming %s", tt.body, err, tt.field)
		}
		_, err = DecodeBatchCheckRequest([]byte(`{"checks":[` + tt.body + `]}`))
		if !errors.Is(err, ErrInvalidRequest) || !strings.Contains(err.Error(), "checks[0]."+tt.field) {
			t.Errorf("batch of %q: %v, want an error naming checks[0].%s", tt.body, err, tt.field)
		}
	}
	req, err := DecodeCheckRequest([]byte(`{"subject":{"type":"user","id":"u\ud83d\ude00"},"action":{"name":"a.b"}}`))
	if err != nil || req.Subject.ID != "u😀" {
		t.Fatalf("a surrogate pair: %v %+v", err, req)
	}
}
