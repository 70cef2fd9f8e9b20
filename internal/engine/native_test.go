package engine

import (
	"math"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
)

// nativeConditions exercise every shape the native evaluator handles, and
// some it hands to CEL.
var nativeConditions = []string{
	`subject.id == "a1"`,
	`"a1" == subject.id`,
	`subject.id != "a1"`,
	`subject.type == "agent" && subject.id.startsWith("agent-")`,
	`subject.id.endsWith("1") || subject.id.contains("x")`,
	`"admin" in subject.properties.roles`,
	`!("admin" in subject.properties.roles)`,
	`subject.properties.roles.size() > 1`,
	`size(subject.properties.roles) == 2`,
	`size(subject.id) == 2`,
	`size(resource.properties) >= 1`,
	`resource.properties.region == context.region`,
	`resource.properties.region != context.region`,
	`context.amount > 100`,
	`context.amount >= 100.0`,
	`context.amount < 100`,
	`context.amount <= 1e3`,
	`context.amount == 250`,
	`context.amount == 250.0`,
	`context.amount != 250`,
	`context.count > context.amount`,
	`context.amount in [250, 500]`,
	`context.region in ["eu-west", "eu-north"]`,
	`context.region in ["eu-west", 1, true, null]`,
	`"eu-west" in context.regions`,
	`250 in context.regions`,
	`context.flag`,
	`!context.flag`,
	`context.flag == true`,
	`context.flag != false`,
	`context.flag ? context.amount > 1 : context.amount < 1`,
	`(context.flag ? "x" : "y") == "x"`,
	`context.missing == null`,
	`context.nothing == null`,
	`context.nothing != "x"`,
	`has(context.region)`,
	`has(context.nested.level)`,
	`has(subject.properties.roles)`,
	`has(subject.id)`,
	`has(action.name)`,
	`"roles" in subject.properties`,
	`"region" in context`,
	`context.count in context.nested`,
	`context.nested.level > 2`,
	`context["nested"]["level"] == 3`,
	`subject.properties["roles"].size() == 2`,
	`action.name == "data.query"`,
	`action.name.startsWith("data.")`,
	`action.properties.dry_run == true`,
	`has(action.properties.dry_run)`,
	`resource.properties.owner == subject.id || "admin" in subject.properties.roles`,
	`resource.properties.owner == subject.id && context.amount < 1000`,
	`context.s < "m"`,
	`context.s >= "m"`,
	`context.flag < true`,
	`context.amount > "x"`,
	`context.big > 9007199254740993`,
	`context.big == 9223372036854775807`,
	`context.nan == context.nan`,
	`context.nan > 1`,
	`context.list == [1, 2]`,
	`context.regions.exists(r, r == "eu-west")`,
	`now > timestamp("2026-01-01T00:00:00Z")`,
	`subject.properties.level >= 3 && subject.properties.level < 10`,
	`context.amount > 100 && subject.properties.missing == "x"`,
	`subject.properties.missing == "x" && context.amount > 100`,
	`subject.properties.missing == "x" || true`,
	`context.flag && context.flag && context.flag`,
	`context.uint == 1`,
}

// nativeRequests cover the value kinds a request can carry, with missing
// keys and mismatched types.
func nativeRequests() []*api.CheckRequest {
	base := func(ctx map[string]any) *api.CheckRequest {
		return &api.CheckRequest{
			Subject:  api.Entity{Type: "agent", ID: "a1", Properties: map[string]any{"roles": []any{"reader", "admin"}, "level": 4.0}},
			Action:   api.Action{Name: "data.query", Properties: map[string]any{"dry_run": true}},
			Resource: api.Entity{Type: "table", ID: "t1", Properties: map[string]any{"region": "eu-west", "owner": "a1"}},
			Context:  ctx,
		}
	}
	reqs := []*api.CheckRequest{
		base(map[string]any{"region": "eu-west", "amount": 250.0, "count": 3, "flag": true, "nothing": nil,
			"regions": []any{"eu-west", 250.0}, "nested": map[string]any{"level": 3.0}, "s": "q",
			"big": int64(9007199254740993), "nan": math.NaN(), "list": []any{1.0, 2.0}, "uint": uint(1)}),
		base(map[string]any{"region": "us-east", "amount": 1e9, "count": int64(-1), "flag": false,
			"regions": []string{"us-east"}, "nested": map[string]any{}, "s": 5.0, "big": 9.3e18}),
		base(map[string]any{"region": 7.0, "amount": "250", "flag": "yes", "regions": "eu-west",
			"nested": []any{1.0}, "s": []any{}, "list": []any{1, 2}}),
		base(nil),
		{Action: api.Action{Name: "data.query"}},
		{
			Subject:  api.Entity{Type: "user", ID: "agent-7", Properties: map[string]any{"roles": []string{"admin"}, "level": 12}},
			Action:   api.Action{Name: "data.read"},
			Resource: api.Entity{Type: "table", ID: "t2", Properties: map[string]any{"region": nil}},
			Context:  map[string]any{"region": nil, "amount": 100, "flag": true, "regions": []any{[]any{"x"}, "eu-west"}},
		},
	}
	return reqs
}

// TestNativeAgreesWithCEL holds the native evaluator to CEL's answers:
// whenever it answers, CEL gives the same bool without an error.
func TestNativeAgreesWithCEL(t *testing.T) {
	env, err := newEnv()
	if err != nil {
		t.Fatal(err)
	}
	nc := newNativeCompiler()
	var conds []*condition
	for _, text := range nativeConditions {
		c, msgs := compileCondition(env, nc, text, DefaultMaxCost)
		if c == nil {
			t.Fatalf("%s: %v", text, msgs)
		}
		c.id = len(conds)
		conds = append(conds, c)
	}
	b := &Bundle{conds: len(conds), slots: nc.slots}
	ents := NewMapEntities([]api.Entity{{Type: "user", ID: "agent-7", Properties: map[string]any{"level": 2.0}}})
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	var answered, total int
	for ri, req := range nativeRequests() {
		for _, c := range conds {
			total++
			ev := b.getEvaluator(req, ents, now)
			out, _, celErr := c.prg.Eval(ev)
			putEvaluator(ev)
			if c.native == nil {
				continue
			}
			ev = b.getEvaluator(req, ents, now)
			v, ok := c.native(ev)
			putEvaluator(ev)
			if !ok {
				continue
			}
			answered++
			if celErr != nil {
				t.Errorf("request %d: %s: native says %t, CEL errs: %v", ri, c.text, v, celErr)
				continue
			}
			if cv, isBool := out.Value().(bool); !isBool || cv != v {
				t.Errorf("request %d: %s: native says %t, CEL says %v", ri, c.text, v, out)
			}
		}
	}
	if answered < total/2 {
		t.Errorf("the native evaluator answered only %d of %d evaluations", answered, total)
	}
	t.Logf("native answered %d of %d evaluations", answered, total)
}

// TestNativeCoverage lists conditions the native evaluator must compile,
// so that a change that silently sends common conditions to CEL shows.
func TestNativeCoverage(t *testing.T) {
	env, err := newEnv()
	if err != nil {
		t.Fatal(err)
	}
	celOnly := map[string]bool{
		`context.regions.exists(r, r == "eu-west")`:              true,
		`now > timestamp("2026-01-01T00:00:00Z")`:                true,
		`context.list == [1, 2]`:                                 false, // compiles; lists are left to CEL at run time
		`context.big > 9007199254740993`:                         false,
		`context.flag ? context.amount > 1 : context.amount < 1`: false,
	}
	nc := newNativeCompiler()
	for _, text := range nativeConditions {
		c, msgs := compileCondition(env, nc, text, DefaultMaxCost)
		if c == nil {
			t.Fatalf("%s: %v", text, msgs)
		}
		if got, want := c.native != nil, !celOnly[text]; got != want {
			t.Errorf("%s: native compiled = %t, want %t", text, got, want)
		}
	}
}
