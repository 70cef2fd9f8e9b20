package server_test

import (
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/audit"
	"github.com/aibos/kernel/internal/node"
	"github.com/aibos/kernel/internal/node/nodetest"
)

// TestEveryRouteDeclaresAnAction: every route of the table has a kernel.*
// action or is explicitly public, and no file of the package registers a
// handler on the mux around the table (which would skip the guard).
func TestEveryRouteDeclaresAnAction(t *testing.T) {
	n, _ := startNode(t)
	for _, rt := range n.Server.RouteTable() {
		if rt.Public {
			continue
		}
		if !strings.HasPrefix(rt.Action, "kernel.") {
			t.Errorf("route %s has no kernel.* action (%q)", rt.Pattern, rt.Action)
		}
	}
	files, _ := filepath.Glob("*.go")
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(af, func(x ast.Node) bool {
			call, ok := x.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if ok && (sel.Sel.Name == "HandleFunc" || sel.Sel.Name == "Handle") && f != "routes.go" {
				t.Errorf("%s: registers a handler outside the route table (routes.go): add a route with its action instead", fset.Position(call.Pos()))
			}
			return true
		})
	}
}

// concrete turns a route pattern into a method and a path.
func concrete(pattern string) (string, string) {
	method, path, _ := strings.Cut(pattern, " ")
	r := strings.NewReplacer("{v}", "1", "{type}", "t", "{id}", "x", "{name}", "crm.read", "{accessor}", "acc_00000000000000000000000000000000")
	return method, r.Replace(path)
}

type stateSum struct {
	revision                               uint64
	versions, tokens, kills, agents, apprs int
}

func sum(n *node.Node) stateSum {
	return stateSum{n.Store.AppliedRevision(), len(n.Store.Versions()), len(n.Store.Tokens()), len(n.Store.Kills()), len(n.Store.Agents()), len(n.Store.Approvals())}
}

// TestEveryRouteRefusesWithoutPermission goes over every route of the
// mux: no credential → 401, a credential without the route's permission
// → 403, an agent's token on an operator route → 403. Each refusal changes
// nothing (same revision, same state) and leaves an audit record.
func TestEveryRouteRefusesWithoutPermission(t *testing.T) {
	n, c := startNode(t, func(cfg *node.Config) { cfg.AuthFailureLimit = 1 << 20 })
	ctx := context.Background()
	if _, err := c.Publish(ctx, file("b.yaml", residencyBundle), client.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	reg, err := c.RegisterAgent(ctx, api.AgentManifest{ID: "a1", Version: "1", Tenant: "t1", Capabilities: []string{"data.*"}})
	if err != nil {
		t.Fatal(err)
	}
	// A role with no permission on the route: node for everything but
	// joining and reading the cluster and the sandbox host calls, pep for
	// those.
	nodeTok := nodetest.NewToken(t, n, "a-node", "node")
	pepTok := nodetest.NewToken(t, n, "a-pep", "pep")
	body := `{"x":1}`

	for _, rt := range n.Server.RouteTable() {
		if rt.Public {
			continue
		}
		method, path := concrete(rt.Pattern)
		unpermitted := nodeTok
		if rt.Action == "kernel.cluster.join" || rt.Action == "kernel.cluster.read" || rt.Action == "kernel.sandbox.host" {
			unpermitted = pepTok
		}
		cases := []struct {
			name, token string
			status      int
		}{
			{"no credential", "", http.StatusUnauthorized},
			{"an unknown token", "aibos_op_" + strings.Repeat("A", 43), http.StatusUnauthorized},
		}
		if !rt.Agent && rt.Action != "kernel.whoami" {
			cases = append(cases,
				struct {
					name, token string
					status      int
				}{"a credential without the permission", unpermitted, http.StatusForbidden},
				struct {
					name, token string
					status      int
				}{"an agent token", reg.Token, http.StatusForbidden})
		}
		for _, tc := range cases {
			t.Run(rt.Pattern+"/"+tc.name, func(t *testing.T) {
				before := sum(n)
				req, _ := http.NewRequest(method, n.URL()+path, strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				if tc.token != "" {
					req.Header.Set("Authorization", "Bearer "+tc.token)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				out, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tc.status || !strings.Contains(string(out), `"error"`) {
					t.Fatalf("%s %s: %d %s; want %d with a JSON error", method, path, resp.StatusCode, out, tc.status)
				}
				if after := sum(n); after != before {
					t.Fatalf("state changed: %+v -> %+v", before, after)
				}
				if rt.Agent {
					return // the gateway audits its own refusals as invocations
				}
				recs, err := n.Audit.Query(audit.Filter{Kind: "access", Action: rt.Action, Limit: 10_000})
				if err != nil {
					t.Fatal(err)
				}
				found := false
				for _, r := range recs {
					found = found || r.Resource == method+" "+path && r.Status == fmt.Sprint(tc.status) && r.Decision == "deny"
				}
				if !found {
					t.Fatalf("no audit record of the refusal of %s %s", method, path)
				}
				for _, r := range recs {
					if tc.token != "" && strings.Contains(fmt.Sprintf("%+v", r), tc.token) {
						t.Fatalf("the audit log holds the secret: %+v", r)
					}
				}
			})
		}
	}
}
