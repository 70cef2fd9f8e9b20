package server_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/aibos/kernel/api"
)

// The edges of the API that a probe of a node hits first: a wrong method,
// a malformed query parameter, a malformed action name, ids that are not
// UTF-8. Each answers an error that says what is wrong, never a decision
// or a silently changed value.

// wantError checks that an answer is status with {error:{code,message}}
// and that the message mentions every one of mention.
func wantError(t *testing.T, resp *http.Response, body string, status int, mention ...string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d: %.300s", resp.StatusCode, status, body)
	}
	var eb api.ErrorBody
	if err := json.Unmarshal([]byte(body), &eb); err != nil || eb.Error.Code == "" || eb.Error.Message == "" {
		t.Fatalf("error answer %.300s is not {error:{code,message}}", body)
	}
	for _, m := range mention {
		if !strings.Contains(eb.Error.Message, m) {
			t.Errorf("message %q does not mention %q", eb.Error.Message, m)
		}
	}
}

// TestWrongMethodIs405 walks every route the server registers and sends
// each path every method it does not serve: 405, an Allow header listing
// the methods it does serve, and a JSON error.
func TestWrongMethodIs405(t *testing.T) {
	n, _ := startNode(t)
	routes := n.Server.Routes()
	if len(routes) < 40 {
		t.Fatalf("only %d routes registered: %v", len(routes), routes)
	}
	methods := map[string][]string{} // path pattern → methods it serves
	for _, r := range routes {
		m, p, ok := strings.Cut(r, " ")
		if !ok {
			t.Fatalf("route %q has no method: every route names its method", r)
		}
		methods[p] = append(methods[p], m)
	}
	for pattern, served := range methods {
		// A concrete path for the pattern: each wildcard becomes a value.
		var segs []string
		for s := range strings.SplitSeq(pattern, "/") {
			if strings.HasPrefix(s, "{") {
				s = "x1"
			}
			segs = append(segs, s)
		}
		path := strings.Join(segs, "/")
		for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"} {
			if slices.Contains(served, m) || m == "HEAD" && slices.Contains(served, "GET") {
				continue
			}
			t.Run(m+" "+pattern, func(t *testing.T) {
				resp, body := do(t, n.URL(), m, path, "")
				if resp.StatusCode != http.StatusMethodNotAllowed {
					t.Fatalf("status %d, want 405: %.200s", resp.StatusCode, body)
				}
				allow := strings.Split(resp.Header.Get("Allow"), ", ")
				for _, s := range served {
					if !slices.Contains(allow, s) {
						t.Errorf("Allow %q lacks %s", resp.Header.Get("Allow"), s)
					}
				}
				if slices.Contains(allow, m) {
					t.Errorf("Allow %q lists the refused method", resp.Header.Get("Allow"))
				}
				if m == "HEAD" {
					return // no body
				}
				wantError(t, resp, body, http.StatusMethodNotAllowed, m, path)
			})
		}
	}
	resp, body := do(t, n.URL(), "GET", "/v1/nowhere", "")
	wantError(t, resp, body, http.StatusNotFound)
}

// TestMinRevisionParamMustBeANumber: a min_revision that is not a revision
// number is refused, on every read that takes it, instead of ignored.
func TestMinRevisionParamMustBeANumber(t *testing.T) {
	n, _ := startNode(t)
	paths := []string{"/v1/policies", "/v1/policies/versions", "/v1/policies/versions/1",
		"/v1/entities/user/u1", "/v1/agents", "/v1/kill", "/v1/approvals", "/v1/rollouts/current"}
	for _, p := range paths {
		for _, v := range []string{"abc", "-1", "1.5", "18446744073709551616"} {
			t.Run(p+"="+v, func(t *testing.T) {
				resp, body := do(t, n.URL(), "GET", p+"?min_revision="+v, "")
				wantError(t, resp, body, http.StatusBadRequest, "min_revision", v)
			})
		}
	}
	resp, body := do(t, n.URL(), "GET", "/v1/policies/versions?min_revision=1&min_revision=2", "")
	wantError(t, resp, body, http.StatusBadRequest, "min_revision")
	if resp, body := do(t, n.URL(), "GET", "/v1/policies/versions?min_revision=1", ""); resp.StatusCode != 200 {
		t.Fatalf("a valid min_revision: %d %s", resp.StatusCode, body)
	}
}

// TestMalformedActionNameIsRefused: a check of an action name outside the
// grammar of action names (namespace.verb: dot-separated segments of
// letters, digits, '_' and '-') is a bad request, not a decision.
func TestMalformedActionNameIsRefused(t *testing.T) {
	n, _ := startNode(t)
	for _, name := range []string{"data query", "data..query", ".data", "data.", "data.*", "données.lire", "data/query"} {
		t.Run(name, func(t *testing.T) {
			req, _ := json.Marshal(api.CheckRequest{Subject: api.Entity{Type: "user", ID: "u1"}, Action: api.Action{Name: name}})
			resp, body := do(t, n.URL(), "POST", "/v1/check", string(req))
			wantError(t, resp, body, http.StatusBadRequest, "action.name")
			// In a batch the bad check gets its error in its slot; the
			// others are decided.
			resp, body = do(t, n.URL(), "POST", "/v1/check/batch", `{"checks":[{"action":{"name":"data.query"}},`+string(req)+`]}`)
			var br api.BatchCheckResponse
			if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &br) != nil || len(br.Results) != 2 {
				t.Fatalf("batch: %d %s", resp.StatusCode, body)
			}
			if br.Results[0].Error != nil {
				t.Errorf("batch: the valid check got an error: %+v", br.Results[0].Error)
			}
			if e := br.Results[1].Error; e == nil || e.Code != "bad_request" || !strings.Contains(e.Message, "checks[1].action.name") || br.Results[1].Decision != api.Deny {
				t.Errorf("batch: want a denial with a bad_request error naming checks[1].action.name in slot 1, got %+v", br.Results[1])
			}
		})
	}
	for _, name := range []string{"data.query", "kernel.agent.quarantine", "cost.purchase-v2", "x"} {
		resp, body := do(t, n.URL(), "POST", "/v1/check", `{"action":{"name":"`+name+`"}}`)
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d %s", name, resp.StatusCode, body)
		}
	}
}

// TestInvalidUTF8IDsAreRefused: an id that is not valid UTF-8 (which JSON
// decoding would silently turn into U+FFFD) is refused with the field
// named, in checks, batches and entity writes; valid non-ASCII text,
// escaped surrogate pairs included, is accepted.
func TestInvalidUTF8IDsAreRefused(t *testing.T) {
	n, _ := startNode(t)
	before := n.Store.AppliedRevision()
	cases := []struct {
		name, method, path, body, field string
	}{
		{"subject id", "POST", "/v1/check", `{"subject":{"type":"user","id":"u` + "\xff" + `"},"action":{"name":"data.query"}}`, "subject.id"},
		{"resource id", "POST", "/v1/check", `{"action":{"name":"data.query"},"resource":{"type":"table","id":"t` + "\xc3\x28" + `"}}`, "resource.id"},
		{"subject type", "POST", "/v1/check", `{"subject":{"type":"us` + "\xed\xa0\x80" + `er","id":"u1"},"action":{"name":"data.query"}}`, "subject.type"},
		{"lone surrogate", "POST", "/v1/check", `{"subject":{"type":"user","id":"u\ud800"},"action":{"name":"data.query"}}`, "subject.id"},
		{"property", "POST", "/v1/check", `{"action":{"name":"data.query"},"context":{"region":"eu` + "\xff" + `"}}`, "context.region"},
		{"entity id", "PUT", "/v1/entities", `{"entities":[{"type":"user","id":"u1"},{"type":"user","id":"u` + "\xff" + `"}]}`, "entities[1].id"},
		{"entity type", "PUT", "/v1/entities", `{"entities":[{"type":"us` + "\xfe" + `r","id":"u1"}]}`, "entities[0].type"},
		{"entity property", "PUT", "/v1/entities", `{"entities":[{"type":"user","id":"u1","properties":{"name":"` + "\xff" + `"}}]}`, "entities[0].properties.name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(t, n.URL(), tc.method, tc.path, tc.body)
			wantError(t, resp, body, http.StatusBadRequest, tc.field, "UTF-8")
		})
	}
	// In a batch the check with the bad id gets its error in its slot.
	resp, body := do(t, n.URL(), "POST", "/v1/check/batch", `{"checks":[{"action":{"name":"data.query"}},{"subject":{"type":"user","id":"`+"\xff"+`"},"action":{"name":"data.query"}}]}`)
	var br api.BatchCheckResponse
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &br) != nil || len(br.Results) != 2 {
		t.Fatalf("batch: %d %s", resp.StatusCode, body)
	}
	if e := br.Results[1].Error; br.Results[0].Error != nil || e == nil || !strings.Contains(e.Message, "checks[1].subject.id") || !strings.Contains(e.Message, "UTF-8") {
		t.Errorf("batch: want an error naming checks[1].subject.id and UTF-8 in slot 1 only, got %s", body)
	}
	if after := n.Store.AppliedRevision(); after != before {
		t.Fatalf("refused writes changed the state: revision %d → %d", before, after)
	}
	for _, body := range []string{
		`{"subject":{"type":"user","id":"zoë"},"action":{"name":"data.query"}}`,
		`{"subject":{"type":"user","id":"u\ud83d\ude00"},"action":{"name":"data.query"}}`,
	} {
		if resp, b := do(t, n.URL(), "POST", "/v1/check", body); resp.StatusCode != 200 {
			t.Errorf("%s: %d %s", body, resp.StatusCode, b)
		}
	}
	resp, b := do(t, n.URL(), "PUT", "/v1/entities", `{"entities":[{"type":"user","id":"zoë\ud83d\ude00"}]}`)
	if resp.StatusCode != 200 {
		t.Fatalf("valid entity: %d %s", resp.StatusCode, b)
	}
	if _, ok := n.Store.Entity("user", "zoë😀"); !ok {
		t.Fatal("the valid entity is not stored under its id")
	}
}
