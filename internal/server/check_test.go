package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/node/nodetest"
)

// TestCheckEndpoints drives /v1/check and /v1/check/batch over HTTP: the
// answers, their errors and their limits.
func TestCheckEndpoints(t *testing.T) {
	n, c := startNode(t)
	if _, err := c.Publish(context.Background(), file("b.yaml", residencyBundle), client.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	admin, _ := json.Marshal(check("a1", []any{"admin"}, "eu"))
	viewer, _ := json.Marshal(check("a1", []any{"viewer"}, "eu"))
	nothing := `{"action":{"name":"data.query"},"explain":true}`
	tests := []struct {
		name, path, body string
		status           int
		want             string // substring of the answer
	}{
		{"allow", "/v1/check", string(admin), 200, `"decision":"allow"`},
		{"deny has reasons", "/v1/check", string(viewer), 200, `"reasons":[{`},
		{"explain", "/v1/check", nothing, 200, `"explain":[{"layer":`},
		{"batch in order", "/v1/check/batch", `{"checks":[` + string(admin) + `,` + string(viewer) + `]}`, 200, `{"results":[{"decision":"allow"`},
		{"empty batch", "/v1/check/batch", `{"checks":[]}`, 200, `{"results":[]}`},
		{"malformed", "/v1/check", `{"action":`, 400, "the JSON ends before the request object does"},
		{"empty body", "/v1/check", ``, 400, "the body is empty"},
		{"unknown field", "/v1/check", `{"action":{"name":"x"},"bogus":1}`, 400, `line 1, column 24: unknown field \"bogus\"`},
		{"batch item", "/v1/check/batch", `{"checks":[{"action":{"name":"a"}},{"action":{}}]}`, 200, `"error":{"code":"bad_request","message":"invalid check request: checks[1].action.name is missing`},
		{"batch malformed", "/v1/check/batch", `{"checks":[{"action":{"name":"a"}},{]}`, 400, "malformed JSON"},
		{"batch not an array", "/v1/check/batch", `{"checks":{}}`, 400, "checks must be an array"},
		{"check too large", "/v1/check", `{"action":{"name":"x"},"context":{"s":"` + strings.Repeat("a", api.MaxCheckRequestSize) + `"}}`, 413, "too_large"},
		{"batch too long", "/v1/check/batch", `{"checks":[` + strings.Repeat(`{"action":{"name":"a"}},`, api.MaxBatch) + `{"action":{"name":"a"}}]}`, 413, "more than 10000 checks"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, n.URL(), "POST", tt.path, tt.body)
			if resp.StatusCode != tt.status || !strings.Contains(body, tt.want) {
				t.Fatalf("status %d, %.300s\nwant %d with %q", resp.StatusCode, body, tt.status, tt.want)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if !json.Valid([]byte(body)) {
				t.Errorf("the answer is not JSON: %.300s", body)
			}
			if resp.StatusCode >= 400 {
				var eb api.ErrorBody
				if err := json.Unmarshal([]byte(body), &eb); err != nil || eb.Error.Code == "" || eb.Error.Message == "" {
					t.Errorf("error answer %.300s is not {error:{code,message}}", body)
				}
			}
		})
	}
}

// TestBatchAnswersLikeChecks: each result of a batch is the decision the
// single check gets, and both are what encoding/json would have written.
func TestBatchAnswersLikeChecks(t *testing.T) {
	n, c := startNode(t)
	if _, err := c.Publish(context.Background(), file("b.yaml", residencyBundle), client.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	var checks []api.CheckRequest
	for _, roles := range [][]any{{"admin"}, {"viewer"}, nil} {
		for _, region := range []string{"eu", "us"} {
			req := check("a1", roles, region)
			checks = append(checks, req)
			req.Explain = true
			checks = append(checks, req)
		}
	}
	body, _ := json.Marshal(api.BatchCheckRequest{Checks: checks})
	resp, out := do(t, n.URL(), "POST", "/v1/check/batch", string(body))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, out)
	}
	var batch api.BatchCheckResponse
	if err := json.Unmarshal([]byte(out), &batch); err != nil || len(batch.Results) != len(checks) {
		t.Fatalf("%v: %s", err, out)
	}
	if again, _ := json.Marshal(batch); !bytes.Equal(append(again, '\n'), []byte(out)) {
		t.Errorf("the batch answer is not what encoding/json writes:\n%s\n%s", out, again)
	}
	for i, req := range checks {
		b, _ := json.Marshal(req)
		resp, out := do(t, n.URL(), "POST", "/v1/check", string(b))
		var d api.Decision
		if err := json.Unmarshal([]byte(out), &d); resp.StatusCode != 200 || err != nil {
			t.Fatalf("check %d: %d %v %s", i, resp.StatusCode, err, out)
		}
		if d.Reasons == nil {
			t.Errorf("check %d: reasons is not an array: %s", i, out)
		}
		want, _ := json.Marshal(batch.Results[i])
		if got, _ := json.Marshal(d); !bytes.Equal(got, want) {
			t.Errorf("check %d: alone %s\nin a batch %s", i, got, want)
		}
	}
}

// TestCheckBodyOverLimit: a body over the limit announced by Content-Length
// is refused without being read, and one without Content-Length is cut at
// the limit.
func TestCheckBodyOverLimit(t *testing.T) {
	n, _ := startNode(t)
	big := `{"action":{"name":"x"},"context":{"s":"` + strings.Repeat("a", api.MaxCheckRequestSize) + `"}}`
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprint("chunked=", chunked), func(t *testing.T) {
			var rd io.Reader = strings.NewReader(big)
			if chunked {
				rd = io.MultiReader(rd) // no length: sent chunked
			}
			req, _ := http.NewRequest("POST", n.URL()+"/v1/check", rd)
			resp, err := http.DefaultClient.Do(nodetest.Authorize(req, n))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			out, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 413 || !strings.Contains(string(out), "too_large") {
				t.Fatalf("status %d: %s", resp.StatusCode, out)
			}
		})
	}
}
