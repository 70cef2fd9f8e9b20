package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/node/nodetest"
	"github.com/aibos/kernel/internal/policy"
)

// conformanceDir is the AuthZEN vectors, copied into the repository from
// the shared conformance directory (testdata/authzen/README.md).
const conformanceDir = "../../testdata/authzen"

type vectors struct {
	Evaluation []struct {
		Request  json.RawMessage `json:"request"`
		Expected bool            `json:"expected"`
	} `json:"evaluation"`
	Evaluations []struct {
		Request  json.RawMessage `json:"request"`
		Expected json.RawMessage `json:"expected"`
	} `json:"evaluations"`
}

// loadTodoScenario publishes the example bundle and stores the scenario's
// users as entities, both through the API.
func loadTodoScenario(t *testing.T, c *client.Client) uint64 {
	t.Helper()
	ctx := context.Background()
	raw, err := os.ReadFile(filepath.Join(conformanceDir, "todo-users.json"))
	if err != nil {
		t.Fatalf("the AuthZEN conformance vectors must be present: %v", err)
	}
	var users map[string]map[string]any
	if err := json.Unmarshal(raw, &users); err != nil {
		t.Fatal(err)
	}
	var ents []api.Entity
	for id, props := range users {
		ents = append(ents, api.Entity{Type: "user", ID: id, Properties: props})
	}
	files, err := policy.ReadPath("../../examples/authzen-todo")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, files, client.PublishOptions{Message: "authzen todo"}); err != nil {
		t.Fatal(err)
	}
	rev, err := c.PutEntities(ctx, ents)
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

// TestAuthZENTodoInterop runs the 43 checks of the interop vectors (40
// single evaluations and 3 batches) exactly as the official harness
// compares them: singles by `decision` (missing means false), batches by
// the whole `evaluations` array.
func TestAuthZENTodoInterop(t *testing.T) {
	n, c := startNode(t)
	loadTodoScenario(t, c)
	raw, err := os.ReadFile(filepath.Join(conformanceDir, "todo-decisions.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	checks := 0
	for i, ev := range v.Evaluation {
		resp, body := do(t, n.URL(), "POST", "/access/v1/evaluation", string(ev.Request))
		if resp.StatusCode != 200 {
			t.Fatalf("evaluation %d: %d %s", i, resp.StatusCode, body)
		}
		var got struct {
			Decision bool `json:"decision"`
		}
		json.Unmarshal([]byte(body), &got)
		if got.Decision != ev.Expected {
			t.Errorf("evaluation %d: got %v, want %v\nrequest: %s\nanswer: %s", i, got.Decision, ev.Expected, ev.Request, body)
		}
		checks++
	}
	for i, ev := range v.Evaluations {
		resp, body := do(t, n.URL(), "POST", "/access/v1/evaluations", string(ev.Request))
		if resp.StatusCode != 200 {
			t.Fatalf("evaluations %d: %d %s", i, resp.StatusCode, body)
		}
		var got struct {
			Evaluations json.RawMessage `json:"evaluations"`
		}
		json.Unmarshal([]byte(body), &got)
		var gotV, wantV any
		json.Unmarshal(got.Evaluations, &gotV)
		json.Unmarshal(ev.Expected, &wantV)
		if !reflect.DeepEqual(gotV, wantV) {
			t.Errorf("evaluations %d: got %s, want %s", i, got.Evaluations, ev.Expected)
		}
		checks++
	}
	if checks != 43 {
		t.Fatalf("ran %d checks, want the 43 of the interop suite", checks)
	}
}

func TestAuthZENProtocol(t *testing.T) {
	n, c := startNode(t)
	loadTodoScenario(t, c)
	rick := `{"type":"user","id":"CiRmZDA2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"}`
	beth := `{"type":"user","id":"CiRmZDM2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"}`
	todo := `{"type":"todo","id":"t1","properties":{"ownerID":"x@y"}}`

	t.Run("malformed requests are 400", func(t *testing.T) {
		for _, body := range []string{
			``, `{`, `[]`, `"x"`, `{}`,
			`{"action":{"name":"can_read_todos"},"resource":` + todo + `}`,
			`{"subject":{"id":"x"},"action":{"name":"can_read_todos"},"resource":` + todo + `}`,
			`{"subject":{"type":"user"},"action":{"name":"can_read_todos"},"resource":` + todo + `}`,
			`{"subject":` + rick + `,"resource":` + todo + `}`,
			`{"subject":` + rick + `,"action":{},"resource":` + todo + `}`,
			`{"subject":` + rick + `,"action":{"name":"can_read_todos"}}`,
			`{"subject":` + rick + `,"action":{"name":"can_read_todos"},"resource":{"type":"todo"}}`,
			`{"subject":` + rick + `,"action":{"name":5},"resource":` + todo + `}`,
			`{"subject":"rick","action":{"name":"can_read_todos"},"resource":` + todo + `}`,
			`{"subject":` + rick + `,"action":{"name":"can_read_todos"},"resource":` + todo + `,"context":[]}`,
		} {
			resp, out := do(t, n.URL(), "POST", "/access/v1/evaluation", body)
			if resp.StatusCode != 400 {
				t.Errorf("evaluation %q: %d %s", body, resp.StatusCode, out)
			}
		}
		for _, body := range []string{
			// An error of one item is answered in its place
			// (TestAuthZENBatchItemErrors); these are errors of the payload.
			`{"subject":"rick","evaluations":[{"action":{"name":"can_read_todos"}}]}`,
			`{"subject":` + rick + `,"action":{"name":"can_read_todos"},"resource":` + todo + `,"evaluations":[{}],"options":{"evaluations_semantic":"first"}}`,
			`{"evaluations":{}}`,
			`{"subject":` + rick + `,"action":{"name":"can_read_todos"},"resource":` + todo + `,"options":{"evaluations_semantic":1}}`,
		} {
			resp, out := do(t, n.URL(), "POST", "/access/v1/evaluations", body)
			if resp.StatusCode != 400 {
				t.Errorf("evaluations %q: %d %s", body, resp.StatusCode, out)
			}
		}
	})

	t.Run("request id is echoed", func(t *testing.T) {
		req, _ := http.NewRequest("POST", n.URL()+"/access/v1/evaluation",
			bytes.NewBufferString(`{"subject":`+rick+`,"action":{"name":"can_read_todos"},"resource":`+todo+`}`))
		req.Header.Set("X-Request-ID", "req-123")
		resp, err := http.DefaultClient.Do(nodetest.Authorize(req, n))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Header.Get("X-Request-ID") != "req-123" {
			t.Fatalf("X-Request-ID not echoed: %v", resp.Header)
		}
	})

	t.Run("evaluation semantics", func(t *testing.T) {
		// beth (viewer): read allowed, create and delete denied.
		items := `[{"action":{"name":"can_read_todos"}},{"action":{"name":"can_create_todo"}},{"action":{"name":"can_read_user"}},{"action":{"name":"can_delete_todo"}}]`
		for _, tc := range []struct{ semantic, want string }{
			{"", `[{"decision":true},{"decision":false},{"decision":true},{"decision":false}]`},
			{"execute_all", `[{"decision":true},{"decision":false},{"decision":true},{"decision":false}]`},
			{"deny_on_first_deny", `[{"decision":true},{"decision":false}]`},
			{"permit_on_first_permit", `[{"decision":true}]`},
		} {
			opts := ""
			if tc.semantic != "" {
				opts = `,"options":{"evaluations_semantic":"` + tc.semantic + `"}`
			}
			resp, body := do(t, n.URL(), "POST", "/access/v1/evaluations", `{"subject":`+beth+`,"resource":`+todo+`,"evaluations":`+items+opts+`}`)
			if resp.StatusCode != 200 {
				t.Fatalf("%s: %d %s", tc.semantic, resp.StatusCode, body)
			}
			if got := strings.TrimSpace(body); got != `{"evaluations":`+tc.want+`}` {
				t.Errorf("%s: got %s, want %s", tc.semantic, got, tc.want)
			}
		}
		// Without evaluations the batch endpoint answers as a single one.
		resp, body := do(t, n.URL(), "POST", "/access/v1/evaluations", `{"subject":`+rick+`,"action":{"name":"can_create_todo"},"resource":`+todo+`}`)
		if resp.StatusCode != 200 || !strings.Contains(body, `"decision":true`) {
			t.Fatalf("single through the batch endpoint: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("discovery", func(t *testing.T) {
		resp, body := do(t, n.URL(), "GET", "/.well-known/authzen-configuration", "")
		var doc map[string]any
		if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &doc) != nil {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		if doc["policy_decision_point"] != n.URL() || doc["access_evaluation_endpoint"] != n.URL()+"/access/v1/evaluation" ||
			doc["access_evaluations_endpoint"] != n.URL()+"/access/v1/evaluations" {
			t.Fatalf("discovery: %v", doc)
		}
	})
}
