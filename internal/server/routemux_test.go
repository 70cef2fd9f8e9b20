package server

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestRouteMuxPostsAnswerAsTheServeMux: a POST route found by its path
// gets the same handler and pattern as through the ServeMux; every other
// request (another method, an unclean path, a wildcard) goes to the
// ServeMux.
func TestRouteMuxPostsAnswerAsTheServeMux(t *testing.T) {
	m := &routeMux{ServeMux: http.NewServeMux()}
	for _, p := range []string{"POST /v1/check", "POST /v1/check/batch", "GET /v1/check/x", "POST /v1/agents/{id}/kill", "POST /v1/dir/", "/"} {
		m.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(p + "|" + r.Pattern + "|" + r.PathValue("id")))
		})
	}
	if len(m.posts) != 2 {
		t.Fatalf("posts: %v, want the two POST routes without wildcards", m.posts)
	}
	for _, tc := range []struct{ method, target, want string }{
		{"POST", "/v1/check", "POST /v1/check|POST /v1/check|"},
		{"POST", "/v1/check/batch", "POST /v1/check/batch|POST /v1/check/batch|"},
		{"POST", "/v1/%63heck", "POST /v1/check|POST /v1/check|"},
		{"GET", "/v1/check", "/|/|"},
		{"POST", "/v1/check/", "/|/|"},
		{"POST", "/v1/agents/a1/kill", "POST /v1/agents/{id}/kill|POST /v1/agents/{id}/kill|a1"},
		{"POST", "/v1/dir/x", "POST /v1/dir/|POST /v1/dir/|"},
	} {
		rec := httptest.NewRecorder()
		m.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.target, strings.NewReader("{}")))
		if got := rec.Body.String(); got != tc.want {
			t.Errorf("%s %s: %q, want %q", tc.method, tc.target, got, tc.want)
		}
		// The ServeMux alone answers the same.
		rec = httptest.NewRecorder()
		m.ServeMux.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.target, strings.NewReader("{}")))
		if got := rec.Body.String(); got != tc.want {
			t.Errorf("%s %s through the ServeMux: %q, want %q", tc.method, tc.target, got, tc.want)
		}
	}
	// An unclean path is the ServeMux's redirect, not the route.
	rec := httptest.NewRecorder()
	m.ServeHTTP(rec, httptest.NewRequest("POST", "/v1//check", nil))
	if rec.Code != http.StatusTemporaryRedirect {
		t.Errorf("POST /v1//check: %d %q, want the ServeMux's 307", rec.Code, rec.Body)
	}
}
