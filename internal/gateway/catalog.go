package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/audit"
	"github.com/aibos/kernel/internal/jsonschema"
)

// maxTimeout bounds any action's timeout.
const maxTimeout = 10 * time.Minute

// entry is one action of the catalog, ready to run.
type entry struct {
	def       api.ActionDef
	orchestra string
	backend   api.Backend
	schema    *jsonschema.Schema // nil: any JSON object
	timeout   time.Duration
	builtin   builtinFunc
	// leader: the action writes the replicated state, so it runs on the
	// leader (a follower forwards the invocation).
	leader bool
}

// catalog is an immutable index of the actions.
type catalog struct {
	actions map[string]*entry
	order   []string
}

// builtinFunc performs one of the kernel's own actions.
type builtinFunc func(ctx context.Context, g *Gateway, agent *api.Agent, inv string, input map[string]any) (json.RawMessage, error)

// builtins is the kernel's own orchestra. Its schemas are compiled once.
var builtins = []struct {
	def    api.ActionDef
	fn     builtinFunc
	leader bool
}{
	{
		def: api.ActionDef{
			Name:        "kernel.agent.quarantine",
			Description: "Stop an agent: sets a kill switch of scope agent on it (lift it with aibos kill lift).",
			Risk:        api.RiskDestructive,
			InputSchema: json.RawMessage(`{"type":"object","properties":{"agent":{"type":"string","minLength":1},"reason":{"type":"string","minLength":1}},"required":["agent","reason"],"additionalProperties":false}`),
			Timeout:     api.Duration(10 * time.Second),
		},
		fn:     builtinQuarantine,
		leader: true,
	},
	{
		def: api.ActionDef{
			Name:        "kernel.audit.query",
			Description: "Query this node's audit log (newest first).",
			Risk:        api.RiskRead,
			InputSchema: json.RawMessage(`{"type":"object","properties":{"agent":{"type":"string"},"action":{"type":"string"},"decision":{"type":"string"},"kind":{"type":"string"},"limit":{"type":"integer","minimum":1,"maximum":1000}},"additionalProperties":false}`),
			Timeout:     api.Duration(10 * time.Second),
		},
		fn: builtinAuditQuery,
	},
}

func builtinQuarantine(ctx context.Context, g *Gateway, agent *api.Agent, inv string, in map[string]any) (json.RawMessage, error) {
	target, _ := in["agent"].(string)
	reason, _ := in["reason"].(string)
	k, err := g.cfg.Store.SetKill(ctx, api.KillSwitch{
		ID: NewID("kill_"), Scope: api.KillAgent, Target: target, Reason: reason,
		By: "agent:" + agent.ID + " (" + inv + ")", CreatedAt: g.now(),
	})
	if err != nil {
		return nil, err
	}
	return json.Marshal(k)
}

func builtinAuditQuery(ctx context.Context, g *Gateway, agent *api.Agent, inv string, in map[string]any) (json.RawMessage, error) {
	f := audit.Filter{Desc: true, Limit: 100}
	f.Agent, _ = in["agent"].(string)
	f.Action, _ = in["action"].(string)
	f.Decision, _ = in["decision"].(string)
	f.Kind, _ = in["kind"].(string)
	if n, ok := in["limit"].(float64); ok {
		f.Limit = int(n)
	}
	recs, err := g.cfg.Audit.Query(f)
	if err != nil {
		return nil, err
	}
	if recs == nil {
		recs = []audit.Record{}
	}
	return json.Marshal(map[string]any{"records": recs})
}

// builtinOrchestra is the kernel's orchestra as the catalog API shows it.
func builtinOrchestra() api.Orchestra {
	o := api.Orchestra{Name: api.BuiltinOrchestra, Description: "The kernel's own actions.", Backend: api.Backend{Type: api.BackendBuiltin}}
	for _, b := range builtins {
		o.Actions = append(o.Actions, b.def)
	}
	return o
}

// BuiltinOrchestra is the kernel's own orchestra.
func BuiltinOrchestra() api.Orchestra { return builtinOrchestra() }

// catalog returns the current index, rebuilding it after a change. A
// rebuild that fails for one action keeps the others: the broken action is
// left out and logged (ValidateOrchestra keeps that from happening for
// orchestras written through the API).
func (g *Gateway) catalog() *catalog {
	if !g.catDirty.Load() {
		if c := g.cat.Load(); c != nil {
			return c
		}
	}
	g.catMu.Lock()
	defer g.catMu.Unlock()
	if !g.catDirty.Load() && g.cat.Load() != nil {
		return g.cat.Load()
	}
	g.catDirty.Store(false)
	c := &catalog{actions: make(map[string]*entry)}
	add := func(o api.Orchestra, def api.ActionDef, fn builtinFunc, leader bool) {
		e, err := newEntry(o, def)
		if err != nil {
			g.log.Error("catalog: action left out", "action", def.Name, "err", err)
			return
		}
		e.builtin, e.leader = fn, leader
		c.actions[def.Name] = e
		c.order = append(c.order, def.Name)
	}
	bo := builtinOrchestra()
	for _, b := range builtins {
		add(bo, b.def, b.fn, b.leader)
	}
	for _, o := range g.cfg.Store.Orchestras() {
		for _, a := range o.Actions {
			add(o, a, nil, false)
		}
	}
	sort.Strings(c.order[len(builtins):])
	g.cat.Store(c)
	return c
}

func newEntry(o api.Orchestra, def api.ActionDef) (*entry, error) {
	e := &entry{def: def, orchestra: o.Name, backend: o.Backend, timeout: time.Duration(def.Timeout)}
	if len(def.InputSchema) > 0 {
		s, err := jsonschema.Compile(def.InputSchema)
		if err != nil {
			return nil, fmt.Errorf("input_schema: %w", err)
		}
		e.schema = s
	}
	return e, nil
}

// ValidateOrchestra checks what the store cannot: that every action's input
// schema compiles. The server calls it (after the store's structural
// checks) before proposing an orchestra.
func ValidateOrchestra(o *api.Orchestra) error {
	var errs []error
	for _, a := range o.Actions {
		if len(a.InputSchema) == 0 {
			continue
		}
		if _, err := jsonschema.Compile(a.InputSchema); err != nil {
			errs = append(errs, fmt.Errorf("orchestra %q, action %q: input_schema: %w", o.Name, a.Name, err))
		}
	}
	return errors.Join(errs...)
}
