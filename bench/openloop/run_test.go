package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func server(t *testing.T, closeEach bool, chunked bool) (*httptest.Server, *atomic.Int64) {
	var hits atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" ||
			r.Header.Get("Authorization") != "Bearer tok" || string(b) != `{"q":1}` || r.URL.RequestURI() != "/v1/check?x=1" {
			http.Error(w, "bad request", 400)
			return
		}
		hits.Add(1)
		if closeEach {
			w.Header().Set("Connection", "close")
		}
		if chunked {
			w.(http.Flusher).Flush()
		}
		io.WriteString(w, `{"decision":"allow"}`)
	}))
	t.Cleanup(s.Close)
	return s, &hits
}

func TestRun(t *testing.T) {
	for _, tc := range []struct {
		name               string
		closeEach, chunked bool
	}{{"keepalive", false, false}, {"close", true, false}, {"chunked", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			s, hits := server(t, tc.closeEach, tc.chunked)
			res, err := run(config{url: s.URL + "/v1/check?x=1", body: []byte(`{"q":1}`), rate: 2000, dur: 500 * time.Millisecond,
				conns: 8, expect: `"decision":"allow"`, token: "tok"})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.lat) != 1000 || res.errors != 0 || hits.Load() != 1000 {
				t.Fatalf("%s (first error %v), %d served", res, res.firstErr, hits.Load())
			}
			if res.elapsed < 490*time.Millisecond {
				t.Fatalf("done too fast: %s", res)
			}
			if !strings.HasPrefix(res.String(), "requests 1000 in ") {
				t.Fatalf("line %q", res)
			}
		})
	}
}

func TestRunExpectMismatch(t *testing.T) {
	s, _ := server(t, false, false)
	res, err := run(config{url: s.URL + "/v1/check?x=1", body: []byte(`{"q":1}`), rate: 2000, dur: 100 * time.Millisecond,
		conns: 4, expect: `"decision":"deny"`, token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.lat) != 200 || res.errors != 200 || res.firstErr == nil {
		t.Fatalf("%s, first error %v", res, res.firstErr)
	}
	// A status other than 200 is an error too (wrong token: 400).
	res, err = run(config{url: s.URL + "/v1/check?x=1", body: []byte(`{"q":1}`), rate: 1000, dur: 100 * time.Millisecond, conns: 2})
	if err != nil || res.errors != 100 || !strings.Contains(res.firstErr.Error(), "status 400") {
		t.Fatalf("%s, %v, first error %v", res, err, res.firstErr)
	}
}

func TestRunRefused(t *testing.T) {
	s, _ := server(t, false, false)
	u := s.URL
	s.Close()
	res, err := run(config{url: u + "/", body: nil, rate: 1000, dur: 50 * time.Millisecond, conns: 2})
	if err != nil || res.errors != 50 || len(res.lat) != 50 {
		t.Fatalf("%s, %v", res, err)
	}
}

func TestParseTarget(t *testing.T) {
	addr, host, path, err := parseTarget("http://localhost/a?b=c")
	if err != nil || addr != "localhost:80" || host != "localhost" || path != "/a?b=c" {
		t.Fatal(addr, host, path, err)
	}
	for _, bad := range []string{"https://x/", "x:1", "http:///p", "%"} {
		if _, _, _, err := parseTarget(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
