package store

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
)

func orchestra(name string, actions ...string) api.Orchestra {
	o := api.Orchestra{Name: name, Description: "test", Backend: api.Backend{Type: api.BackendHTTP, URL: "https://" + name + ".example/aibos"}}
	for _, a := range actions {
		o.Actions = append(o.Actions, api.ActionDef{
			Name: name + "." + a, Risk: api.RiskWrite,
			InputSchema: json.RawMessage(`{"type":"object"}`),
			Cost:        &api.CostModel{Fixed: 1, Field: "order.total"},
			Timeout:     api.Duration(5 * time.Second),
			Obligations: &api.Obligations{Audit: "full", RateLimit: &api.RateLimit{Limit: 10, Per: api.Duration(time.Minute)}},
			Path:        "/" + a,
		})
	}
	return o
}

func TestValidateOrchestra(t *testing.T) {
	action := func(mod func(a *api.ActionDef)) func(o *api.Orchestra) {
		return func(o *api.Orchestra) { mod(&o.Actions[0]) }
	}
	for _, tc := range []struct {
		name string
		mod  func(o *api.Orchestra)
		want string // a part of the error; "" for valid
	}{
		{"valid", func(o *api.Orchestra) {}, ""},
		{"dotted name", func(o *api.Orchestra) { *o = orchestra("billing.eu", "charge") }, ""},
		{"no name", func(o *api.Orchestra) { o.Name = "" }, "name is required"},
		{"bad name", func(o *api.Orchestra) { o.Name = "c rm" }, "orchestra name"},
		{"reserved", func(o *api.Orchestra) { *o = orchestra("kernel", "x") }, "reserved"},
		{"reserved namespace", func(o *api.Orchestra) { *o = orchestra("kernel.more", "x") }, "reserved"},
		{"builtin backend", func(o *api.Orchestra) { o.Backend = api.Backend{Type: api.BackendBuiltin} }, "reserved for the kernel"},
		{"no backend", func(o *api.Orchestra) { o.Backend = api.Backend{} }, "backend.type is required"},
		{"other backend", func(o *api.Orchestra) { o.Backend.Type = "grpc" }, "unknown backend"},
		{"relative url", func(o *api.Orchestra) { o.Backend.URL = "/hook" }, "backend.url"},
		{"ftp url", func(o *api.Orchestra) { o.Backend.URL = "ftp://x/y" }, "backend.url"},
		{"no host", func(o *api.Orchestra) { o.Backend.URL = "http:///x" }, "backend.url"},
		{"mcp stdio", func(o *api.Orchestra) {
			o.Backend = api.Backend{Type: api.BackendMCP, Command: []string{"node", "server.js"}, Env: map[string]string{"HOME": "/tmp"}}
		}, ""},
		{"mcp url", func(o *api.Orchestra) {
			o.Backend = api.Backend{Type: api.BackendMCP, URL: "http://127.0.0.1:3001/mcp"}
		}, ""},
		{"mcp both", func(o *api.Orchestra) {
			o.Backend = api.Backend{Type: api.BackendMCP, URL: "http://127.0.0.1:3001/mcp", Command: []string{"x"}}
		}, "not both"},
		{"mcp neither", func(o *api.Orchestra) { o.Backend = api.Backend{Type: api.BackendMCP} }, "needs a url"},
		{"mcp empty program", func(o *api.Orchestra) { o.Backend = api.Backend{Type: api.BackendMCP, Command: []string{""}} }, "command[0] is empty"},
		{"mcp bad env name", func(o *api.Orchestra) {
			o.Backend = api.Backend{Type: api.BackendMCP, Command: []string{"x"}, Env: map[string]string{"A=B": "c"}}
		}, "environment names"},
		{"mcp url with env", func(o *api.Orchestra) {
			o.Backend = api.Backend{Type: api.BackendMCP, URL: "http://h/mcp", Env: map[string]string{"A": "b"}}
		}, "backend.env is for a stdio command"},
		{"http with command", func(o *api.Orchestra) { o.Backend.Command = []string{"x"} }, "are for type"},
		{"reserved mcp", func(o *api.Orchestra) { *o = orchestra("mcp", "x") }, "reserved for the MCP methods"},
		{"no actions", func(o *api.Orchestra) { o.Actions = nil }, "between 1 and 1000"},
		{"too many actions", func(o *api.Orchestra) {
			for i := range 1000 {
				o.Actions = append(o.Actions, api.ActionDef{Name: "crm.a" + strings.Repeat("x", i%7) + string(rune('a'+i%26)), Risk: api.RiskRead})
			}
		}, "between 1 and 1000"},
		{"action outside", action(func(a *api.ActionDef) { a.Name = "billing.read" }), "outside the orchestra"},
		{"action is the orchestra", action(func(a *api.ActionDef) { a.Name = "crm" }), "outside the orchestra"},
		{"action bad name", action(func(a *api.ActionDef) { a.Name = "crm..x" }), "empty segment"},
		{"duplicate action", func(o *api.Orchestra) { o.Actions = append(o.Actions, o.Actions[0]) }, "appears twice"},
		{"no risk", action(func(a *api.ActionDef) { a.Risk = "" }), "risk is required"},
		{"bad risk", action(func(a *api.ActionDef) { a.Risk = "low" }), "unknown risk"},
		{"negative timeout", action(func(a *api.ActionDef) { a.Timeout = -1 }), "timeout"},
		{"tiny timeout", action(func(a *api.ActionDef) { a.Timeout = api.Duration(time.Microsecond) }), "timeout"},
		{"huge timeout", action(func(a *api.ActionDef) { a.Timeout = api.Duration(11 * time.Minute) }), "timeout"},
		{"max timeout", action(func(a *api.ActionDef) { a.Timeout = api.Duration(10 * time.Minute) }), ""},
		{"negative cost", action(func(a *api.ActionDef) { a.Cost.Fixed = -1 }), "cost.fixed"},
		{"infinite cost", action(func(a *api.ActionDef) { a.Cost.Fixed = math.Inf(1) }), "cost.fixed"},
		{"nan cost", action(func(a *api.ActionDef) { a.Cost.Fixed = math.NaN() }), "cost.fixed"},
		{"bad cost field", action(func(a *api.ActionDef) { a.Cost.Field = "order..total" }), "cost.field"},
		{"cost field digit", action(func(a *api.ActionDef) { a.Cost.Field = "1x" }), "cost.field"},
		{"schema not object", action(func(a *api.ActionDef) { a.InputSchema = json.RawMessage(`[1]`) }), "JSON object"},
		{"schema null", action(func(a *api.ActionDef) { a.InputSchema = json.RawMessage(`null`) }), "JSON object"},
		{"schema invalid", action(func(a *api.ActionDef) { a.InputSchema = json.RawMessage(`{"a":`) }), "JSON object"},
		{"schema too big", action(func(a *api.ActionDef) {
			a.InputSchema = json.RawMessage(`{"description":"` + strings.Repeat("x", 64<<10) + `"}`)
		}), "at most"},
		{"bad audit", action(func(a *api.ActionDef) { a.Obligations.Audit = "loud" }), "audit level"},
		{"bad rate limit", action(func(a *api.ActionDef) { a.Obligations.RateLimit.Per = 0 }), "rate_limit"},
		{"bad rate key", action(func(a *api.ActionDef) { a.Obligations.RateLimit.Key = "nowhere" }), "rate_limit"},
		{"bad budget", action(func(a *api.ActionDef) { a.Obligations.Budget = &api.Budget{Limit: 0, Per: 1} }), "budget"},
		{"relative path", action(func(a *api.ActionDef) { a.Path = "x" }), "path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := orchestra("crm", "read", "write")
			tc.mod(&o)
			err := ValidateOrchestra(&o)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an error about %q", err, tc.want)
			}
		})
	}
}

func TestCatalogCommands(t *testing.T) {
	var changes []Change
	f := newFSM(func(c Change) { changes = append(changes, c) })
	r := applyOK(t, f, cmdOrchestraPut, orchestraPutCmd{Orchestra: orchestra("crm", "read"), Time: t0})
	if o := r.Orchestra; o.Revision != 1 || !o.UpdatedAt.Equal(t0) || len(o.Actions) != 1 || f.st.catalogRev != 1 {
		t.Fatalf("put %+v", o)
	}
	if c := changes[0]; c.Kind != ChangeCatalog || c.Revision != 1 {
		t.Fatalf("change %+v", c)
	}
	// Upsert replaces the whole orchestra.
	r = applyOK(t, f, cmdOrchestraPut, orchestraPutCmd{Orchestra: orchestra("crm", "read", "write"), Time: t0.Add(time.Hour)})
	if o := f.st.orchestras["crm"]; len(o.Actions) != 2 || o.Revision != 2 || r.Orchestra.Revision != 2 {
		t.Fatalf("upsert %+v", o)
	}
	applyOK(t, f, cmdOrchestraPut, orchestraPutCmd{Orchestra: orchestra("billing.eu", "charge"), Time: t0})
	applyOK(t, f, cmdEntitiesPut, entitiesPutCmd{Entities: []api.Entity{{Type: "u", ID: "1"}}})
	if f.st.catalogRev != 3 {
		t.Fatalf("catalog revision %d after another change, want 3", f.st.catalogRev)
	}

	// Refused, changing nothing: invalid, overlapping namespaces, deleting
	// what is not there.
	applyErr(t, f, ErrBadCommand, cmdOrchestraPut, orchestraPutCmd{Orchestra: orchestra("kernel", "x"), Time: t0})
	applyErr(t, f, ErrBadCommand, cmdOrchestraPut, orchestraPutCmd{Orchestra: api.Orchestra{Name: "x"}, Time: t0})
	applyErr(t, f, ErrCatalogConflict, cmdOrchestraPut, orchestraPutCmd{Orchestra: orchestra("crm.eu", "read"), Time: t0})
	applyErr(t, f, ErrCatalogConflict, cmdOrchestraPut, orchestraPutCmd{Orchestra: orchestra("billing", "read"), Time: t0})
	applyErr(t, f, ErrNotFound, cmdOrchestraDelete, orchestraDeleteCmd{Name: "nope", Time: t0})
	applyErr(t, f, ErrBadCommand, cmdOrchestraDelete, nil)
	if f.st.revision != 4 {
		t.Fatalf("revision %d after refusals, want 4", f.st.revision)
	}
	// Not overlapping: a sibling and a name that only shares characters.
	applyOK(t, f, cmdOrchestraPut, orchestraPutCmd{Orchestra: orchestra("billing.us", "charge"), Time: t0})
	applyOK(t, f, cmdOrchestraPut, orchestraPutCmd{Orchestra: orchestra("crm2", "read"), Time: t0})

	r = applyOK(t, f, cmdOrchestraDelete, orchestraDeleteCmd{Name: "crm", Time: t0})
	if _, ok := f.st.orchestras["crm"]; ok || r.Revision != 7 || f.st.catalogRev != 7 {
		t.Fatalf("delete: revision %d, catalog %d", r.Revision, f.st.catalogRev)
	}
	// With crm gone, crm.eu is free.
	applyOK(t, f, cmdOrchestraPut, orchestraPutCmd{Orchestra: orchestra("crm.eu", "read"), Time: t0})

	g := roundTrip(t, f)
	if g.st.catalogRev != f.st.catalogRev || len(g.st.orchestras) != 4 {
		t.Fatalf("restored catalog revision %d (want %d), %d orchestras", g.st.catalogRev, f.st.catalogRev, len(g.st.orchestras))
	}
}

func TestCatalogStore(t *testing.T) {
	n := startLeader(t)
	ctx := ctxLong(t)
	o := orchestra("crm", "read")
	o.Revision, o.UpdatedAt = 99, t0.Add(time.Hour) // set by the store, not the caller
	got, err := n.PutOrchestra(ctx, o, t0)
	if err != nil {
		t.Fatal(err)
	}
	if got.Revision == 99 || !got.UpdatedAt.Equal(t0) || n.CatalogRevision() != got.Revision {
		t.Fatalf("put %+v, catalog revision %d", got, n.CatalogRevision())
	}
	if _, err := n.PutOrchestra(ctx, orchestra("kernel", "x"), t0); !errors.Is(err, ErrBadCommand) {
		t.Fatalf("reserved name: %v", err)
	}
	if _, err := n.PutOrchestra(ctx, orchestra("crm.eu", "x"), t0); !errors.Is(err, ErrCatalogConflict) {
		t.Fatalf("overlap: %v", err)
	}
	if _, err := n.PutOrchestra(ctx, orchestra("analytics", "query"), t0); err != nil {
		t.Fatal(err)
	}
	if os := n.Orchestras(); len(os) != 2 || os[0].Name != "analytics" || os[1].Name != "crm" {
		t.Fatalf("orchestras %+v", os)
	}
	rev, err := n.DeleteOrchestra(ctx, "crm", t0)
	if err != nil || n.CatalogRevision() != rev {
		t.Fatalf("delete: %v, catalog revision %d vs %d", err, n.CatalogRevision(), rev)
	}
	if _, ok := n.Orchestra("crm"); ok {
		t.Fatal("deleted orchestra still there")
	}
	if _, err := n.DeleteOrchestra(ctx, "crm", t0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	if a, ok := n.Orchestra("analytics"); !ok || string(a.Actions[0].InputSchema) != `{"type":"object"}` {
		t.Fatalf("analytics %+v", a)
	}
}
