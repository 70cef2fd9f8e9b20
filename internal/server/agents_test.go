package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
)

const tenantBundle = `kind: Policy
name: tenant-scope
layer: platform
rules:
  - name: own-tenant
    effect: allow
    actions: ["data.query"]
    when: subject.properties.tenant == resource.properties.tenant
`

func manifest(id, version, tenant string, caps ...string) api.AgentManifest {
	return api.AgentManifest{
		ID: id, Name: id, Tenant: tenant, Version: version, Owner: "alice", Capabilities: caps,
		Labels:    map[string]string{"team": "data"},
		Skills:    []api.AgentSkill{{ID: "sql", Tags: []string{"query"}}},
		Endpoints: []api.AgentEndpoint{{URL: "https://" + id + ".example/a2a", Protocol: "a2a"}},
	}
}

func wantCode(t *testing.T, err error, status int, code string) {
	t.Helper()
	var ae *client.Error
	if !errors.As(err, &ae) || ae.Status != status || ae.Code != code {
		t.Fatalf("got %v, want %d %s", err, status, code)
	}
}

func TestAgentRegistry(t *testing.T) {
	n, c := startNode(t)
	ctx := context.Background()

	reg, err := c.RegisterAgent(ctx, manifest("a1", "1", "acme", "data.*"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(reg.Token, "aibos_") || len(reg.Token) != len("aibos_")+43 || reg.Agent.State != api.AgentActive || !reg.Agent.HasCredential {
		t.Fatalf("registration %+v", reg)
	}
	if a, ok := n.Store.AgentByToken(reg.Token); !ok || a.ID != "a1" {
		t.Fatal("token does not authenticate a1")
	}
	// The token is shown once: never by a read, nor by registering the same
	// manifest again.
	_, body := do(t, n.URL(), "GET", "/v1/agents/a1", "")
	if strings.Contains(body, reg.Token) || strings.Contains(body, "token") {
		t.Fatalf("GET shows the credential: %s", body)
	}
	again, err := c.RegisterAgent(ctx, manifest("a1", "1", "acme", "data.*"))
	if err != nil || again.Token != "" {
		t.Fatalf("same manifest again: %+v, %v", again, err)
	}
	// A version is immutable.
	_, err = c.RegisterAgent(ctx, manifest("a1", "1", "other", "data.*"))
	wantCode(t, err, http.StatusConflict, "conflict")
	_, err = c.RegisterAgent(ctx, manifest("a2", "1", "acme", "data.**"))
	wantCode(t, err, http.StatusBadRequest, "bad_request")
	_, err = c.Agent(ctx, "nope")
	wantCode(t, err, http.StatusNotFound, "not_found")

	// Policies see the stored tenant, whatever the caller sends.
	pub, err := c.Publish(ctx, file("b.yaml", tenantBundle), client.PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, sent, resource string
		want                 api.Effect
	}{
		{"own tenant", "", "acme", api.Allow},
		{"forged tenant", "evil", "evil", api.Deny},
		{"forged away", "evil", "acme", api.Allow},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := api.CheckRequest{
				Subject:     api.Entity{Type: "agent", ID: "a1"},
				Action:      api.Action{Name: "data.query"},
				Resource:    api.Entity{Type: "table", ID: "t", Properties: map[string]any{"tenant": tc.resource}},
				MinRevision: pub.Revision,
			}
			if tc.sent != "" {
				req.Subject.Properties = map[string]any{"tenant": tc.sent}
			}
			d, err := c.Check(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if d.Decision != tc.want {
				t.Fatalf("got %s, want %s", d.Decision, tc.want)
			}
		})
	}

	// Discovery.
	if _, err := c.RegisterAgent(ctx, manifest("b1", "1", "globex", "mail.send")); err != nil {
		t.Fatal(err)
	}
	upd := "x"
	if _, err := c.UpdateAgent(ctx, "b1", api.AgentUpdate{Description: &upd, Labels: map[string]string{"team": "ops"}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		f    client.AgentFilter
		want string
	}{
		{"all", client.AgentFilter{}, "a1,b1"},
		{"capability by glob", client.AgentFilter{Capability: "data.query"}, "a1"},
		{"capability exact", client.AgentFilter{Capability: "mail.send"}, "b1"},
		{"capability none", client.AgentFilter{Capability: "fs.write"}, ""},
		{"skill tag", client.AgentFilter{Skill: "query"}, "a1,b1"},
		{"label", client.AgentFilter{Label: "team=ops"}, "b1"},
		{"tenant", client.AgentFilter{Tenant: "acme"}, "a1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			as, err := c.ListAgents(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, a := range as {
				ids = append(ids, a.ID)
			}
			if got := strings.Join(ids, ","); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	if _, err := c.UpdateAgent(ctx, "b1", api.AgentUpdate{}); err != nil {
		t.Fatal(err)
	}
	resp, body := do(t, n.URL(), "PATCH", "/v1/agents/b1", `{"capabilities":["*"]}`)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "new version") {
		t.Fatalf("PATCH of capabilities: %d %s", resp.StatusCode, body)
	}

	// Rotation invalidates the old token; revocation leaves none.
	cr, err := c.RotateAgentCredential(ctx, "a1")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := n.Store.AgentByToken(reg.Token); ok {
		t.Fatal("old token still works after rotation")
	}
	if a, ok := n.Store.AgentByToken(cr.Token); !ok || a.ID != "a1" {
		t.Fatal("new token does not work")
	}
	if a, err := c.RevokeAgentCredential(ctx, "a1"); err != nil || a.HasCredential {
		t.Fatalf("revoke: %+v %v", a, err)
	}
	if _, ok := n.Store.AgentByToken(cr.Token); ok {
		t.Fatal("revoked token still works")
	}

	// Retire: policies see the state, the agent cannot be changed.
	a, err := c.RetireAgent(ctx, "b1")
	if err != nil || a.State != api.AgentRetired {
		t.Fatalf("retire: %+v %v", a, err)
	}
	_, err = c.RetireAgent(ctx, "b1")
	wantCode(t, err, http.StatusConflict, "conflict")
	_, err = c.RotateAgentCredential(ctx, "b1")
	wantCode(t, err, http.StatusConflict, "conflict")
	e, err := c.Entity(ctx, "agent", "b1", a.Revision)
	if err != nil || e.Properties["state"] != api.AgentRetired {
		t.Fatalf("entity of retired agent: %+v %v", e, err)
	}
	as, err := c.ListAgents(ctx, client.AgentFilter{State: api.AgentActive})
	if err != nil || len(as) != 1 || as[0].ID != "a1" {
		b, _ := json.Marshal(as)
		t.Fatalf("active agents %s %v", b, err)
	}
}
