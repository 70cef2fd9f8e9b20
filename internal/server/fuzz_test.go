package server_test

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"testing"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/node"
)

// fuzzEndpoints are every endpoint that decodes a request body.
var fuzzEndpoints = []struct{ method, path string }{
	{"POST", "/v1/check"},
	{"POST", "/v1/check/batch"},
	{"POST", "/access/v1/evaluation"},
	{"POST", "/access/v1/evaluations"},
	{"PUT", "/v1/policies"},
	{"POST", "/v1/policies/rollback"},
	{"PUT", "/v1/entities"},
	{"POST", "/v1/cluster/join"},
	{"POST", "/v1/cluster/remove"},
	{"POST", "/v1/rollouts"},
	{"POST", "/v1/rollouts/abort"},
	{"POST", "/v1/rollouts/promote"},
	{"POST", "/v1/policies/simulate?since=1h"},
	{"POST", "/v1/agents"},
	{"PATCH", "/v1/agents/a1"},
	{"POST", "/v1/agents/a1/retire"},
	{"POST", "/v1/agents/a1/credentials/rotate"},
}

// FuzzAPIBodies sends arbitrary bodies to every decoding endpoint of a real
// node. The node must never fail with a 5xx or a panic, and every answer
// must be JSON; every error must be {error: {code, message}}.
func FuzzAPIBodies(f *testing.F) {
	seeds := []string{
		`{"subject":{"type":"agent","id":"a1"},"action":{"name":"data.query"},"resource":{"type":"table","id":"t1","properties":{"region":"eu"}},"context":{"region":"eu"}}`,
		`{"checks":[{"action":{"name":"data.query"}},{"action":{"name":"x"},"min_revision":1}]}`,
		`{"subject":{"type":"user","id":"u"},"action":{"name":"can_read_todos"},"resource":{"type":"todo","id":"1"}}`,
		`{"subject":{"type":"user","id":"u"},"resource":{"type":"todo","id":"1"},"evaluations":[{"action":{"name":"a"}}],"options":{"evaluations_semantic":"deny_on_first_deny"}}`,
		residencyBundle,
		`{"to":1}`,
		`{"entities":[{"type":"agent","id":"a1","properties":{"roles":["admin"]}}]}`,
		`{"id":"n9","raft":"127.0.0.1:1","http":"127.0.0.1:2","voter":false}`,
		`{"id":"n9"}`,
		`{"action":{"name":"data.query"},"min_revision":18446744073709551615}`,
		`{"candidate":1,"percent":10,"abort":{"max_flip_rate":0.5,"min_samples":10}}`,
		`{"reason":"by hand"}`,
		`{"id":"a1","version":"1","tenant":"acme","capabilities":["data.*"],"labels":{"team":"x"},"skills":[{"id":"s"}],"endpoints":[{"url":"https://a.example","protocol":"a2a"}]}`,
		`{"description":"d","labels":{}}`,
	}
	for i, s := range seeds {
		f.Add(uint8(i), []byte(s))
		f.Add(uint8(i+1), []byte(s))
	}
	n, _ := startNode(f, func(c *node.Config) { c.MinRevisionWait = 1 })
	f.Fuzz(func(t *testing.T, sel uint8, body []byte) {
		ep := fuzzEndpoints[int(sel)%len(fuzzEndpoints)]
		if ep.path == "/v1/cluster/join" {
			// Joining a real voter at a dead address would cost the node its
			// quorum; join bodies are decoded but must not reach Raft.
			var probe map[string]any
			if json.Unmarshal(body, &probe) == nil {
				if v, ok := probe["voter"].(bool); !ok || v {
					return
				}
			}
		}
		req := httptest.NewRequest(ep.method, ep.path, bytes.NewReader(body))
		rec := httptest.NewRecorder()
		n.Server.ServeHTTP(rec, req)
		if rec.Code >= 500 && rec.Code != 503 {
			t.Fatalf("%s %s %q: status %d: %s", ep.method, ep.path, body, rec.Code, rec.Body)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %s %q: answer is not JSON: %s", ep.method, ep.path, body, rec.Body)
		}
		if rec.Code >= 400 {
			var eb api.ErrorBody
			if json.Unmarshal(rec.Body.Bytes(), &eb); eb.Error.Code == "" || eb.Error.Message == "" {
				t.Fatalf("%s %s: error answer %s is not {error:{code,message}}", ep.method, ep.path, rec.Body)
			}
		}
	})
}
