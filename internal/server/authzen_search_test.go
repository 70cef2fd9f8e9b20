package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/policy"
)

// searchVectors is the Search interop scenario, kept in the repository.
const searchVectors = "../../testdata/authzen/search"

// loadSearchScenario publishes examples/authzen-search and stores the
// scenario's users and records as entities.
func loadSearchScenario(t *testing.T, c *client.Client) {
	t.Helper()
	ctx := context.Background()
	var ents []api.Entity
	for _, f := range []struct{ file, typ string }{{"users.json", "user"}, {"records.json", "record"}} {
		raw, err := os.ReadFile(filepath.Join(searchVectors, f.file))
		if err != nil {
			t.Fatal(err)
		}
		var rows []map[string]any
		if err := json.Unmarshal(raw, &rows); err != nil {
			t.Fatal(err)
		}
		for _, row := range rows {
			id := fmt.Sprint(row["id"]) // record ids are numbers
			delete(row, "id")
			ents = append(ents, api.Entity{Type: f.typ, ID: id, Properties: row})
		}
	}
	files, err := policy.ReadPath("../../examples/authzen-search")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, files, client.PublishOptions{Message: "authzen search"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutEntities(ctx, ents); err != nil {
		t.Fatal(err)
	}
}

// TestAuthZENSearchInterop runs the 198 searches of the Search interop
// scenario (subject 60, resource 18, action 120) over HTTP and compares
// the results unordered, as the official harness does.
func TestAuthZENSearchInterop(t *testing.T) {
	n, c := startNode(t)
	loadSearchScenario(t, c)
	total := 0
	for _, kind := range []struct {
		name string
		want int
	}{{"subject", 60}, {"resource", 18}, {"action", 120}} {
		raw, err := os.ReadFile(filepath.Join(searchVectors, kind.name+"-results.json"))
		if err != nil {
			t.Fatal(err)
		}
		var v struct {
			Evaluation []struct {
				Request  json.RawMessage `json:"request"`
				Expected struct {
					Results []map[string]any `json:"results"`
				} `json:"expected"`
			} `json:"evaluation"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatal(err)
		}
		passed := 0
		for i, ev := range v.Evaluation {
			resp, body := do(t, n.URL(), "POST", "/access/v1/search/"+kind.name, string(ev.Request))
			if resp.StatusCode != 200 {
				t.Errorf("%s %d: %d %s", kind.name, i, resp.StatusCode, body)
				continue
			}
			var got struct {
				Page struct {
					NextToken *string `json:"next_token"`
				} `json:"page"`
				Results []map[string]any `json:"results"`
			}
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatal(err)
			}
			if g, w := sortedResults(got.Results), sortedResults(ev.Expected.Results); !reflect.DeepEqual(g, w) {
				t.Errorf("%s %d: got %v, want %v\nrequest: %s", kind.name, i, g, w, ev.Request)
				continue
			}
			if got.Page.NextToken == nil || *got.Page.NextToken != "" {
				t.Errorf("%s %d: a complete answer has page.next_token \"\": %s", kind.name, i, body)
				continue
			}
			passed++
		}
		if len(v.Evaluation) != kind.want {
			t.Fatalf("%s: %d vectors, want %d", kind.name, len(v.Evaluation), kind.want)
		}
		t.Logf("%s search: %d of %d vectors pass", kind.name, passed, len(v.Evaluation))
		total += len(v.Evaluation)
	}
	if total != 198 {
		t.Fatalf("ran %d vectors, want the 198 of the interop scenario", total)
	}
}

// sortedResults renders results as sorted strings: the harness compares
// them as sets.
func sortedResults(rs []map[string]any) []string {
	out := []string{}
	for _, r := range rs {
		b, _ := json.Marshal(r)
		out = append(out, string(b))
	}
	sort.Strings(out)
	return out
}

func TestAuthZENSearchProtocol(t *testing.T) {
	n, c := startNode(t)
	loadSearchScenario(t, c)
	ctx := context.Background()

	t.Run("discovery", func(t *testing.T) {
		_, body := do(t, n.URL(), "GET", "/.well-known/authzen-configuration", "")
		var doc map[string]any
		json.Unmarshal([]byte(body), &doc)
		for _, k := range []string{"subject", "resource", "action"} {
			if doc["search_"+k+"_endpoint"] != n.URL()+"/access/v1/search/"+k {
				t.Errorf("search_%s_endpoint: %v", k, doc)
			}
		}
	})

	t.Run("malformed requests are 400", func(t *testing.T) {
		for _, tc := range []struct{ path, body, want string }{
			{"subject", `{"action":{"name":"view"},"resource":{"type":"record","id":"101"}}`, "subject is missing"},
			{"subject", `{"subject":{},"action":{"name":"view"},"resource":{"type":"record","id":"101"}}`, "subject.type is missing"},
			{"subject", `{"subject":{"type":"user"},"resource":{"type":"record","id":"101"}}`, "action is missing"},
			{"subject", `{"subject":{"type":"user"},"action":{"name":"view"},"resource":{"type":"record"}}`, "resource.id is missing"},
			{"resource", `{"subject":{"type":"user"},"action":{"name":"view"},"resource":{"type":"record"}}`, "subject.id is missing"},
			{"resource", `{"subject":{"type":"user","id":"bob"},"action":{"name":"view"}}`, "resource is missing"},
			{"action", `{"subject":{"type":"user","id":"bob"},"resource":{"type":"record"}}`, "resource.id is missing"},
			{"action", `{"subject":{"type":"user","id":"bob"},"resource":{"type":"record","id":"1"},"page":{"limit":-1}}`, "page.limit -1 is negative"},
			{"action", `{"subject":{"type":"user","id":"bob"},"resource":{"type":"record","id":"1"},"page":{"limit":1.5}}`, "page.limit"},
			{"action", `{"subject":{"type":"user","id":"bob"},"resource":{"type":"record","id":"1"},"page":{"token":"nope"}}`, "not a token this kernel issued"},
			{"action", `[]`, "invalid JSON body"},
		} {
			resp, out := do(t, n.URL(), "POST", "/access/v1/search/"+tc.path, tc.body)
			if resp.StatusCode != 400 || !strings.Contains(out, tc.want) || !strings.Contains(out, `"code":"bad_request"`) {
				t.Errorf("%s %s: %d %s, want 400 with %q", tc.path, tc.body, resp.StatusCode, out, tc.want)
			}
		}
	})

	// pages collects every page of a search of limit results each.
	pages := func(t *testing.T, path, query string, limit int) ([][]string, []string) {
		t.Helper()
		var all [][]string
		var tokens []string
		token := ""
		for range 100 {
			page := fmt.Sprintf(`{"limit":%d}`, limit)
			if token != "" {
				page = fmt.Sprintf(`{"limit":%d,"token":%q}`, limit, token)
			}
			resp, body := do(t, n.URL(), "POST", path, query[:len(query)-1]+`,"page":`+page+`}`)
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			var got struct {
				Page struct {
					NextToken string `json:"next_token"`
					Count     int    `json:"count"`
				} `json:"page"`
				Results []map[string]string `json:"results"`
			}
			json.Unmarshal([]byte(body), &got)
			var ids []string
			for _, r := range got.Results {
				ids = append(ids, r["id"]+r["name"])
			}
			if got.Page.Count != len(ids) || len(ids) > limit {
				t.Fatalf("page of %d results says count %d (limit %d): %s", len(ids), got.Page.Count, limit, body)
			}
			all = append(all, ids)
			if got.Page.NextToken == "" {
				return all, tokens
			}
			token = got.Page.NextToken
			tokens = append(tokens, token)
		}
		t.Fatal("more than 100 pages")
		return nil, nil
	}
	aliceViews := `{"subject":{"type":"user","id":"alice"},"action":{"name":"view"},"resource":{"type":"record"}}`

	t.Run("paging", func(t *testing.T) {
		got, _ := pages(t, "/access/v1/search/resource", aliceViews, 3)
		var flat []string
		for _, p := range got {
			flat = append(flat, p...)
		}
		if len(flat) != 20 || len(got) != 7 {
			t.Fatalf("alice views 20 records, in pages of 3: %v", got)
		}
		if !sort.StringsAreSorted(flat) {
			t.Fatalf("results are not in id order across pages: %v", flat)
		}
		// One result per page, for the subjects who may edit record 104
		// (Accounting, owned by dan): dan only.
		got, _ = pages(t, "/access/v1/search/subject", `{"subject":{"type":"user"},"action":{"name":"edit"},"resource":{"type":"record","id":"104"}}`, 1)
		if fmt.Sprint(got) != "[[dan] []]" && fmt.Sprint(got) != "[[dan]]" {
			t.Fatalf("pages of editors of 104: %v", got)
		}
		got, _ = pages(t, "/access/v1/search/action", `{"subject":{"type":"user","id":"alice"},"resource":{"type":"record","id":"101"}}`, 2)
		if fmt.Sprint(got) != "[[delete edit] [view]]" {
			t.Fatalf("action pages: %v", got)
		}
	})

	t.Run("a token is bound to its query", func(t *testing.T) {
		_, tokens := pages(t, "/access/v1/search/resource", aliceViews, 5)
		other := `{"subject":{"type":"user","id":"bob"},"action":{"name":"view"},"resource":{"type":"record"},"page":{"limit":5,"token":"` + tokens[0] + `"}}`
		resp, out := do(t, n.URL(), "POST", "/access/v1/search/resource", other)
		if resp.StatusCode != 400 || !strings.Contains(out, "another query") {
			t.Fatalf("token of another query: %d %s", resp.StatusCode, out)
		}
		limit := aliceViews[:len(aliceViews)-1] + `,"page":{"limit":6,"token":"` + tokens[0] + `"}}`
		if resp, out := do(t, n.URL(), "POST", "/access/v1/search/resource", limit); resp.StatusCode != 400 {
			t.Fatalf("token with another limit: %d %s", resp.StatusCode, out)
		}
		if resp, out := do(t, n.URL(), "POST", "/access/v1/search/subject", aliceViews[:len(aliceViews)-1]+`,"page":{"limit":5,"token":"`+tokens[0]+`"}}`); resp.StatusCode != 400 {
			t.Fatalf("token of a resource search on subject search: %d %s", resp.StatusCode, out)
		}
	})

	t.Run("a token from another revision is refused", func(t *testing.T) {
		_, tokens := pages(t, "/access/v1/search/resource", aliceViews, 5)
		if _, err := c.PutEntities(ctx, []api.Entity{{Type: "record", ID: "121", Properties: map[string]any{"department": "Sales", "owner": "bob"}}}); err != nil {
			t.Fatal(err)
		}
		next := aliceViews[:len(aliceViews)-1] + `,"page":{"limit":5,"token":"` + tokens[0] + `"}}`
		resp, out := do(t, n.URL(), "POST", "/access/v1/search/resource", next)
		if resp.StatusCode != 409 || !strings.Contains(out, `"code":"page_token_stale"`) || !strings.Contains(out, "start the search again") {
			t.Fatalf("stale token: %d %s", resp.StatusCode, out)
		}
	})
}

// TestAuthZENSearchAgents: a subject search of type agent finds registered
// agents and stored entities of type agent, deciding each with its
// registry properties (which win over a stored entity of the same id).
func TestAuthZENSearchAgents(t *testing.T) {
	_, c := startNode(t)
	ctx := context.Background()
	bundle := "kind: Policy\nname: p\nlayer: tenant\nrules:\n  - {name: acme, effect: allow, actions: [report.run], when: 'subject.properties.tenant == \"acme\"'}\n"
	if _, err := c.Publish(ctx, file("p.yaml", bundle), client.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []api.AgentManifest{{ID: "a1", Version: "1", Tenant: "acme"}, {ID: "a2", Version: "1", Tenant: "globex"}} {
		if _, err := c.RegisterAgent(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.PutEntities(ctx, []api.Entity{
		{Type: "agent", ID: "a2", Properties: map[string]any{"tenant": "acme"}}, // the registry wins
		{Type: "agent", ID: "e3", Properties: map[string]any{"tenant": "acme"}},
		{Type: "user", ID: "u4", Properties: map[string]any{"tenant": "acme"}},
	}); err != nil {
		t.Fatal(err)
	}
	got, err := c.SearchAll(ctx, "subject", api.SearchRequest{Subject: api.Entity{Type: "agent"},
		Action: &api.Action{Name: "report.run"}, Resource: api.Entity{Type: "report", ID: "r1"}, Page: &api.PageRequest{Limit: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[{agent a1 } {agent e3 }]" {
		t.Fatalf("agents allowed to run reports: %v", got)
	}
}
