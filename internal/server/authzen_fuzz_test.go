package server

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// FuzzAuthZENDecoders feeds the decoders of the AuthZEN bodies added for
// per-item errors, search and access requests: none panics, each either
// accepts with every required member present or says what is wrong, and
// a search's page token survives a round trip.
func FuzzAuthZENDecoders(f *testing.F) {
	for _, s := range []string{
		`{"subject":{"type":"user"},"action":{"name":"view"},"resource":{"type":"record","id":"101"}}`,
		`{"subject":{"type":"user","id":"alice"},"action":{"name":"view"},"resource":{"type":"record"},"page":{"limit":2,"token":"czF8cmVzb3VyY2V8MXwyfGFifDEwMQ"}}`,
		`{"subject":{"type":"user","id":"alice"},"resource":{"type":"record","id":"1"},"context":{"a":[1,{"b":null}]}}`,
		`{"action":{"name":5}}`,
		`{"page":{"limit":-1}}`,
		`{"page":{"limit":1e400}}`,
		`{"subject":{"type":"user","id":"a"},"action":{"name":"doc.read"},"resource":{"type":"doc","id":"p"},"denial":{"evaluation_id":"ev_x","expires_at":"2026-01-01T00:00:00Z"}}`,
		`{"subject":{"type":"user","id":"a"},"action":{"name":"d"},"resource":{"type":"d","id":"p"},"items":[],"callback":{}}`,
		`"x"`, `null`, `[]`, `{}`,
	} {
		f.Add([]byte(s))
	}
	defaults := &azEvaluation{}
	json.Unmarshal([]byte(`{"subject":{"type":"user","id":"u"},"resource":{"type":"r","id":"1"}}`), defaults)
	f.Fuzz(func(t *testing.T, data []byte) {
		// An evaluations item, alone and with defaults.
		for _, d := range []*azEvaluation{nil, defaults} {
			req, err := decodeAZItem(data, d, 3)
			if err == nil && (req.Subject.Type == "" || req.Subject.ID == "" || req.Action.Name == "" || req.Resource.Type == "" || req.Resource.ID == "") {
				t.Fatalf("item %q accepted without a required member: %+v", data, req)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "evaluations[3]") {
				t.Fatalf("item error %q does not say which item", err)
			}
		}
		// An access request submission.
		var ar azAccessRequest
		if decodeAuthZEN(httptest.NewRequest("POST", "/", bytes.NewReader(data)), 1<<20, &ar) == nil {
			now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			req, status, code, err := decodeAccessRequest(&ar, now)
			switch {
			case err == nil && (req == nil || req.Action.Name == "" || ar.Denial == nil || ar.Denial.EvaluationID == nil):
				t.Fatalf("submission %q accepted without its binding: %+v", data, req)
			case err != nil && (status < 400 || code == ""):
				t.Fatalf("submission %q: error %v with status %d, code %q", data, err, status, code)
			case err == nil:
				if _, err := bindingDigest(req); err != nil {
					t.Fatalf("accepted submission %q has no digest: %v", data, err)
				}
			}
		}
		// A search body, as each search.
		for _, kind := range []string{searchSubject, searchResource, searchAction} {
			var body azSearchRequest
			r := httptest.NewRequest("POST", "/", bytes.NewReader(data))
			if decodeAuthZEN(r, 1<<20, &body) != nil {
				continue
			}
			q, err := parseSearch(kind, &body)
			if err != nil {
				continue
			}
			if q.limit < 1 || q.limit > MaxSearchLimit || q.digest == "" {
				t.Fatalf("%s search %q: limit %d, digest %q", kind, data, q.limit, q.digest)
			}
			if q.tmpl.Subject.Type == "" || q.tmpl.Resource.Type == "" || (kind != searchAction && q.tmpl.Action.Name == "") {
				t.Fatalf("%s search %q accepted without a required member: %+v", kind, data, q.tmpl)
			}
			if q.token != "" {
				if tok, err := parsePageToken(q.token); err == nil {
					back, err := parsePageToken(tok.String())
					if err != nil || back != tok {
						t.Fatalf("token %q: round trip %+v → %+v (%v)", q.token, tok, back, err)
					}
				}
			}
		}
	})
}
