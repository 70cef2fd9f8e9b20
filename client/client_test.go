package client

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/aibos/kernel/api"
)

// TestFailsOverPastDeadNodes checks that calls move on from nodes that
// cannot be reached, on every call, wherever the rotation stands.
func TestFailsOverPastDeadNodes(t *testing.T) {
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(api.Decision{Decision: api.Allow})
	}))
	defer live.Close()
	dead := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return "http://" + addr
	}
	c, err := New([]string{dead(), dead(), live.URL}, Options{RetryFor: -1})
	if err != nil {
		t.Fatal(err)
	}
	// Start the rotation past a full turn, where the counter and the index
	// differ.
	c.next.Store(4)
	ok := 0
	for range 20 {
		if _, err := c.Check(context.Background(), api.CheckRequest{Action: api.Action{Name: "x"}}); err == nil {
			ok++
		}
	}
	// Without retries a call may land on a dead node, but the rotation must
	// reach the live one and stay there.
	if ok < 18 {
		t.Fatalf("only %d of 20 calls reached the live node", ok)
	}
}

func TestSafeToRetry(t *testing.T) {
	dial := &net.OpError{Op: "dial", Err: errors.New("connection refused")}
	reset := &net.OpError{Op: "read", Err: errors.New("connection reset by peer")}
	for _, tc := range []struct {
		name, method, path string
		err                error
		want               bool
	}{
		{"no leader answer", "PUT", "/v1/policies?x=1", &Error{Code: "no_leader"}, true},
		{"not ready answer", "PUT", "/v1/policies?x=1", &Error{Code: "not_ready"}, true},
		{"outcome unknown answer", "PUT", "/v1/entities", &Error{Code: "write_outcome_unknown"}, false},
		{"bad request", "POST", "/v1/check", &Error{Code: "bad_request"}, false},
		{"publish never sent", "PUT", "/v1/policies?x=1", dial, true},
		{"publish reset after sending", "PUT", "/v1/policies?x=1", reset, false},
		{"rollback reset after sending", "POST", "/v1/policies/rollback", reset, false},
		{"check reset", "POST", "/v1/check", reset, true},
		{"upsert reset", "PUT", "/v1/entities", reset, true},
		{"read reset", "GET", "/v1/policies/versions", reset, true},
	} {
		if got := safeToRetry(tc.method, tc.path, tc.err); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}
