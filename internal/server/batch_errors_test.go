package server_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
)

// TestCheckBatchItemErrors: a malformed check of /v1/check/batch gets an
// error result in its slot; the others are decided, in order.
func TestCheckBatchItemErrors(t *testing.T) {
	n, c := startNode(t)
	if _, err := c.Publish(context.Background(), file("b.yaml", residencyBundle), client.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	admin, _ := json.Marshal(check("a1", []any{"admin"}, "eu"))
	viewer, _ := json.Marshal(check("a1", []any{"viewer"}, "eu"))
	body := `{"checks":[` + string(admin) + `,{"action":{}},` + string(viewer) + `,{"action":{"name":"x"},"bogus":1},7,` + string(admin) + `]}`
	resp, out := do(t, n.URL(), "POST", "/v1/check/batch", body)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, out)
	}
	var got api.BatchCheckResponse
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		decision api.Effect
		err      string // substring of the slot's error; "" for none
	}{
		{api.Allow, ""},
		{api.Deny, "checks[1].action.name is missing"},
		{api.Deny, ""}, // a viewer
		{api.Deny, `checks[3]: unknown field "bogus"`},
		{api.Deny, "checks[4] must be an object"},
		{api.Allow, ""},
	}
	if len(got.Results) != len(want) {
		t.Fatalf("%d results, want %d: %s", len(got.Results), len(want), out)
	}
	for i, w := range want {
		r := got.Results[i]
		if r.Decision != w.decision {
			t.Errorf("slot %d: %s, want %s", i, r.Decision, w.decision)
		}
		switch {
		case w.err == "" && r.Error != nil:
			t.Errorf("slot %d: unexpected error %+v", i, r.Error)
		case w.err != "" && (r.Error == nil || r.Error.Code != "bad_request" || !strings.Contains(r.Error.Message, w.err)):
			t.Errorf("slot %d: error %+v, want bad_request with %q", i, r.Error, w.err)
		case w.err != "" && (r.Version == 0 || len(r.Reasons) == 0):
			t.Errorf("slot %d: an error result carries the version and a reason: %+v", i, r)
		}
	}
}

// TestAuthZENBatchItemErrors: an AuthZEN evaluations item in error is
// answered in place as a denial with context.error, in each semantic; it
// counts as a denial for deny_on_first_deny.
func TestAuthZENBatchItemErrors(t *testing.T) {
	n, c := startNode(t)
	loadTodoScenario(t, c)
	beth := `{"type":"user","id":"CiRmZDM2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"}`
	todo := `{"type":"todo","id":"t1","properties":{"ownerID":"x@y"}}`
	// beth (viewer): reads are allowed, creating is not.
	items := []string{
		`{"action":{"name":"can_read_todos"}}`,                           // true
		`{"action":{"name":"can_read_user"},"resource":{"type":"user"}}`, // no resource.id
		`{"action":{"name":5}}`,                                          // wrong type
		`{"action":{"name":"can_create_todo"}}`,                          // false
		`"x"`,                                                            // not an object
		`{"action":{"name":"can_read_user"}}`,                            // true
	}
	errItem := func(msg string) string {
		return `{"decision":false,"context":{"error":{"message":"` + msg + `","status":400}}}`
	}
	all := []string{
		`{"decision":true}`,
		errItem("evaluations[1].resource.id is missing"),
		errItem("evaluations[2].action.name must be a string, not number"),
		`{"decision":false}`,
		errItem("evaluations[4] must be an object {subject?, action?, resource?, context?}, not string"),
		`{"decision":true}`,
	}
	for _, tc := range []struct {
		name, semantic string
		items          []string
		want           []string
	}{
		{"default", "", items, all},
		{"execute_all", "execute_all", items, all},
		{"deny_on_first_deny stops at an error", "deny_on_first_deny", items, all[:2]},
		{"deny_on_first_deny, first item in error", "deny_on_first_deny", items[1:], []string{errItem("evaluations[0].resource.id is missing")}},
		{"permit_on_first_permit passes errors", "permit_on_first_permit", items[1:], []string{
			errItem("evaluations[0].resource.id is missing"),
			errItem("evaluations[1].action.name must be a string, not number"),
			`{"decision":false}`,
			errItem("evaluations[3] must be an object {subject?, action?, resource?, context?}, not string"),
			`{"decision":true}`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := ""
			if tc.semantic != "" {
				opts = `,"options":{"evaluations_semantic":"` + tc.semantic + `"}`
			}
			body := `{"subject":` + beth + `,"resource":` + todo + `,"evaluations":[` + strings.Join(tc.items, ",") + `]` + opts + `}`
			resp, out := do(t, n.URL(), "POST", "/access/v1/evaluations", body)
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, out)
			}
			want := `{"evaluations":[` + strings.Join(tc.want, ",") + `]}`
			if got := strings.TrimSpace(out); got != want {
				t.Fatalf("got  %s\nwant %s", got, want)
			}
		})
	}
}
