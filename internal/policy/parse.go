package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/aibos/kernel/api"
)

// Limits on a bundle's source, so that a hostile upload cannot exhaust a
// node: every node compiles a published bundle, and compile time grows with
// the rules (the 1,000-policy benchmark bundle has about 2,000 rules and
// compiles in about 0.2 s; 50,000 rules take a few seconds).
const (
	MaxFileSize   = 8 << 20
	MaxBundleSize = 64 << 20
	MaxFiles      = 10_000
	MaxPolicies   = 10_000
	MaxRules      = 50_000
)

// Limits bound the policies and the rules of a bundle. A zero field takes
// its default, MaxPolicies or MaxRules: the zero Limits are the product's.
// A node may be configured with others (tests use small ones, so that a
// bundle over them is cheap to build); every node of a cluster should use
// the same, since each compiles every published bundle.
type Limits struct {
	Policies, Rules int
}

// OrDefaults returns l with each zero or negative field set to its
// default.
func (l Limits) OrDefaults() Limits {
	if l.Policies <= 0 {
		l.Policies = MaxPolicies
	}
	if l.Rules <= 0 {
		l.Rules = MaxRules
	}
	return l
}

// A ParseOption adjusts how a bundle is parsed.
type ParseOption func(*parseConfig)

type parseConfig struct {
	limits Limits
}

// WithLimits parses with l instead of the default limits (see
// Limits.OrDefaults).
func WithLimits(l Limits) ParseOption {
	return func(c *parseConfig) { c.limits = l }
}

// Parse loads a bundle from its source files. It reports every problem it
// finds, each with its position, as a sorted ErrorList; on any error it
// returns no bundle, so nothing is ever half-loaded.
func Parse(files []api.File, opts ...ParseOption) (*Bundle, error) {
	return ParseContext(context.Background(), files, opts...)
}

// ParseContext is Parse that gives up, with ctx's error, when ctx is done.
func ParseContext(ctx context.Context, files []api.File, opts ...ParseOption) (*Bundle, error) {
	b, err := ParsePartialContext(ctx, files, opts...)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// ParsePartial parses like Parse, but on error it also returns what could
// be read, so that a caller can check the rest — the engine type-checks its
// conditions — and report every problem of a bundle at once. A bundle
// returned with an error is incomplete and must never be used for
// decisions.
//
// A bundle over its Limits is returned as nil with its ErrorList: its
// rules are counted but not kept, so that nobody compiles them.
func ParsePartial(files []api.File, opts ...ParseOption) (*Bundle, error) {
	return ParsePartialContext(context.Background(), files, opts...)
}

// ParsePartialContext is ParsePartial that gives up, with ctx's error and
// no bundle, when ctx is done.
func ParsePartialContext(ctx context.Context, files []api.File, opts ...ParseOption) (*Bundle, error) {
	var cfg parseConfig
	for _, o := range opts {
		o(&cfg)
	}
	p := &parser{ctx: ctx, limits: cfg.limits.OrDefaults()}
	var total int
	if len(files) == 0 {
		p.errs.Add(Pos{File: "(bundle)"}, "the bundle has no files: give at least one YAML or JSON document of kind Policy")
	}
	if len(files) > MaxFiles {
		p.errs.Add(Pos{File: "(bundle)"}, "the bundle has %d files; at most %d are allowed", len(files), MaxFiles)
		p.finish()
		return &p.b, p.errs.Err()
	}
	for _, f := range files {
		total += len(f.Data)
		if len(f.Data) > MaxFileSize {
			p.errs.Add(Pos{File: f.Name}, "file is %d bytes; at most %d are allowed", len(f.Data), MaxFileSize)
			continue
		}
		p.file(f)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	if total > MaxBundleSize {
		p.errs.Add(Pos{File: "(bundle)"}, "the bundle is %d bytes; at most %d are allowed", total, MaxBundleSize)
	}
	if lim := p.limits; p.policies > lim.Policies {
		p.errs.Add(p.overPolicies, "the bundle has %d policies; at most %d are allowed (this is policy %d): merge policies of the same layer",
			p.policies, lim.Policies, lim.Policies+1)
	}
	if lim := p.limits; p.rules > lim.Rules {
		p.errs.Add(p.overRules, "the bundle has %d rules; at most %d are allowed (this is rule %d): remove rules, or give one rule several actions instead of repeating it",
			p.rules, lim.Rules, lim.Rules+1)
	}
	p.finish()
	if p.overLimit() {
		return nil, p.errs.Err()
	}
	return &p.b, p.errs.Err()
}

type parser struct {
	ctx        context.Context
	limits     Limits // with their defaults applied
	b          Bundle
	errs       ErrorList
	layersSeen bool
	// policies and rules count what the source holds, kept or not;
	// overPolicies and overRules are where the first one over its limit
	// starts.
	policies, rules         int
	overPolicies, overRules Pos
}

// overLimit reports whether the source has more policies or rules than a
// bundle may: from there on they are counted, not kept.
func (p *parser) overLimit() bool {
	return p.policies > p.limits.Policies || p.rules > p.limits.Rules
}

func (p *parser) file(f api.File) {
	dec := yaml.NewDecoder(bytes.NewReader(f.Data))
	for doc := 0; ; doc++ {
		if p.ctx.Err() != nil {
			return
		}
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			if doc == 0 {
				p.errs.Add(Pos{File: f.Name}, "file has no documents")
			}
			return
		}
		if err != nil {
			p.errs.Add(yamlErrPos(f.Name, err), "invalid YAML/JSON: %s", yamlErrMsg(err))
			return
		}
		if len(n.Content) == 0 {
			continue // an empty document between two "---"
		}
		p.document(f.Name, n.Content[0])
	}
}

func (p *parser) document(file string, n *yaml.Node) {
	m, ok := p.mapping(file, n, "a document")
	if !ok {
		return
	}
	kindNode := m.get("kind")
	if kindNode == nil {
		p.errs.Add(pos(file, n), "document has no kind: set kind to Policy, Test or Bundle")
		return
	}
	switch kind := kindNode.Value; kind {
	case "Policy":
		p.policy(m)
	case "Test":
		p.test(m)
	case "Bundle":
		p.bundleDoc(m)
	default:
		p.errs.Add(pos(file, kindNode), "unknown kind %q: want Policy, Test or Bundle", kind)
	}
}

func (p *parser) bundleDoc(m *mapNode) {
	m.allow("kind", "name", "description", "layers")
	if p.layersSeen {
		p.errs.Add(m.pos, "a second Bundle document: a bundle declares its layers once")
		return
	}
	p.layersSeen = true
	ln := m.get("layers")
	if ln == nil {
		p.errs.Add(m.pos, "Bundle document has no layers: list the layers, highest precedence first")
		return
	}
	layers, ok := p.stringList(m.file, ln, "layers")
	if !ok {
		return
	}
	if len(layers) == 0 {
		p.errs.Add(pos(m.file, ln), "layers is empty: list at least one layer")
	}
	seen := map[string]bool{}
	for i, l := range layers {
		if !validName(l) {
			p.errs.Add(pos(m.file, ln.Content[i]), "invalid layer name %q: use letters, digits, '_' and '-'", l)
		}
		if seen[l] {
			p.errs.Add(pos(m.file, ln.Content[i]), "layer %q is listed twice", l)
		}
		seen[l] = true
	}
	p.b.Layers = layers
	p.b.LayersPos = pos(m.file, ln)
}

func (p *parser) policy(m *mapNode) {
	if p.policies++; p.policies == p.limits.Policies+1 {
		p.overPolicies = m.pos
	}
	if p.overLimit() {
		if rn := m.get("rules"); rn != nil && rn.Kind == yaml.SequenceNode {
			for _, r := range rn.Content {
				p.countRule(m.file, r)
			}
		}
		return
	}
	m.allow("kind", "name", "layer", "description", "rules")
	pol := &Policy{Pos: m.pos}
	pol.Name = p.requiredName(m, "name", "policy")
	if ln := m.get("layer"); ln == nil {
		p.errs.Add(m.pos, "policy %q has no layer: set layer to one of the bundle's layers", pol.Name)
	} else if p.scalar(m.file, ln, "layer") {
		pol.Layer = ln.Value
		if pol.Layer == "" {
			p.errs.Add(pos(m.file, ln), "policy %q has an empty layer: set layer to one of the bundle's layers", pol.Name)
		}
	}
	pol.Description = p.optString(m, "description")
	rn := m.get("rules")
	if rn == nil {
		p.errs.Add(m.pos, "policy %q has no rules", pol.Name)
	} else if rn.Kind != yaml.SequenceNode {
		p.errs.Add(pos(m.file, rn), "rules must be a list of rules")
	} else {
		if len(rn.Content) == 0 {
			p.errs.Add(pos(m.file, rn), "policy %q has an empty rules list", pol.Name)
		}
		names := map[string]bool{}
		for _, r := range rn.Content {
			if p.countRule(m.file, r); p.overLimit() {
				continue
			}
			rule := p.rule(m.file, r)
			if rule == nil {
				continue
			}
			if rule.Name != "" && names[rule.Name] {
				p.errs.Add(rule.Pos, "duplicate rule name %q in policy %q: rule names are unique in a policy", rule.Name, pol.Name)
			}
			names[rule.Name] = true
			pol.Rules = append(pol.Rules, rule)
		}
	}
	p.b.Policies = append(p.b.Policies, pol)
}

// countRule counts a rule of the source and notes where the first rule
// over the limit is.
func (p *parser) countRule(file string, n *yaml.Node) {
	if p.rules++; p.rules == p.limits.Rules+1 {
		p.overRules = pos(file, n)
	}
}

func (p *parser) rule(file string, n *yaml.Node) *Rule {
	m, ok := p.mapping(file, n, "a rule")
	if !ok {
		return nil
	}
	m.allow("name", "effect", "actions", "when", "message", "obligations", "description")
	r := &Rule{Pos: m.pos}
	r.Name = p.requiredName(m, "name", "rule")
	if en := m.get("effect"); en == nil {
		p.errs.Add(m.pos, "rule %q has no effect: set effect to allow, deny or require_approval", r.Name)
	} else if p.scalar(file, en, "effect") {
		r.Effect = api.Effect(en.Value)
		if !r.Effect.Valid() {
			p.errs.Add(pos(file, en), "invalid effect %q: want allow, deny or require_approval", en.Value)
		}
	}
	if an := m.get("actions"); an == nil {
		p.errs.Add(m.pos, "rule %q has no actions: list action names or patterns such as \"data.*\" or \"*\"", r.Name)
	} else if acts, ok := p.stringList(file, an, "actions"); ok {
		if len(acts) == 0 {
			p.errs.Add(pos(file, an), "rule %q has an empty actions list", r.Name)
		}
		for i, a := range acts {
			if err := ValidatePattern(a); err != nil {
				p.errs.Add(pos(file, an.Content[i]), "%v", err)
			}
		}
		r.Actions = acts
	}
	if wn := m.get("when"); wn != nil && p.scalar(file, wn, "when") {
		r.When = strings.TrimSpace(wn.Value)
		r.WhenPos = pos(file, wn)
		if r.When == "" {
			p.errs.Add(r.WhenPos, "when is empty: remove it for an unconditional rule, or write a CEL condition")
		}
	}
	r.Message = p.optString(m, "message")
	if on := m.get("obligations"); on != nil {
		var o api.Obligations
		if p.strict(file, on, "obligations", &o) {
			p.checkObligations(pos(file, on), &o)
			r.Obligations = &o
		}
	}
	return r
}

func (p *parser) checkObligations(at Pos, o *api.Obligations) {
	if o.Audit != "" && AuditRank(o.Audit) < 0 {
		p.errs.Add(at, "invalid audit level %q: want one of %s", o.Audit, strings.Join(AuditLevels, ", "))
	}
	if rl := o.RateLimit; rl != nil {
		if rl.Limit <= 0 || rl.Per <= 0 {
			p.errs.Add(at, "rate_limit needs limit > 0 and per > 0 (e.g. {limit: 100, per: 1m})")
		}
		if err := ValidateKey(rl.Key); err != nil {
			p.errs.Add(at, "rate_limit: %v", err)
		}
	}
	if b := o.Budget; b != nil {
		if b.Limit <= 0 || b.Per <= 0 {
			p.errs.Add(at, "budget needs limit > 0 and per > 0 (e.g. {limit: 50, per: 24h})")
		}
		if err := ValidateKey(b.Key); err != nil {
			p.errs.Add(at, "budget: %v", err)
		}
	}
}

func (p *parser) test(m *mapNode) {
	m.allow("kind", "name", "description", "entities", "cases")
	ts := &TestSuite{Pos: m.pos}
	ts.Name = p.requiredName(m, "name", "test")
	if en := m.get("entities"); en != nil {
		var ents []api.Entity
		if p.strict(m.file, en, "entities", &ents) {
			for i, e := range ents {
				if e.Type == "" || e.ID == "" {
					p.errs.Add(pos(m.file, en.Content[i]), "entity needs a type and an id")
				}
			}
			ts.Entities = ents
		}
	}
	cn := m.get("cases")
	if cn == nil || cn.Kind != yaml.SequenceNode || len(cn.Content) == 0 {
		p.errs.Add(m.pos, "test %q has no cases: give a list of {name, request, expect}", ts.Name)
	} else {
		names := map[string]bool{}
		for _, c := range cn.Content {
			tc := p.testCase(m.file, c)
			if tc == nil {
				continue
			}
			if names[tc.Name] {
				p.errs.Add(tc.Pos, "duplicate case name %q in test %q", tc.Name, ts.Name)
			}
			names[tc.Name] = true
			ts.Cases = append(ts.Cases, tc)
		}
	}
	p.b.Tests = append(p.b.Tests, ts)
}

func (p *parser) testCase(file string, n *yaml.Node) *TestCase {
	m, ok := p.mapping(file, n, "a test case")
	if !ok {
		return nil
	}
	m.allow("name", "request", "expect", "expect_rules", "expect_obligations", "expect_errors", "now", "description")
	tc := &TestCase{Pos: m.pos}
	tc.Name = p.requiredString(m, "name", "test case")
	if rn := m.get("request"); rn == nil {
		p.errs.Add(m.pos, "case %q has no request", tc.Name)
	} else if p.strict(file, rn, "request", &tc.Request) {
		if tc.Request.Action.Name == "" {
			p.errs.Add(pos(file, rn), "case %q: request has no action.name", tc.Name)
		}
	}
	if en := m.get("expect"); en == nil {
		p.errs.Add(m.pos, "case %q has no expect: set it to allow, deny or require_approval", tc.Name)
	} else if p.scalar(file, en, "expect") {
		tc.Expect = api.Effect(en.Value)
		if !tc.Expect.Valid() {
			p.errs.Add(pos(file, en), "invalid expect %q: want allow, deny or require_approval", en.Value)
		}
	}
	if rn := m.get("expect_rules"); rn != nil {
		if rules, ok := p.stringList(file, rn, "expect_rules"); ok {
			tc.ExpectRules = rules
		}
	}
	if on := m.get("expect_obligations"); on != nil {
		var o api.Obligations
		if p.strict(file, on, "expect_obligations", &o) {
			tc.ExpectObligations = &o
		}
	}
	if en := m.get("expect_errors"); en != nil {
		if errs, ok := p.stringList(file, en, "expect_errors"); ok {
			tc.ExpectErrors = errs
		}
	}
	if nn := m.get("now"); nn != nil && p.scalar(file, nn, "now") {
		t, err := time.Parse(time.RFC3339, nn.Value)
		if err != nil {
			p.errs.Add(pos(file, nn), "invalid now %q: want an RFC 3339 time such as 2026-01-02T15:04:05Z", nn.Value)
		}
		tc.Now = t
	}
	return tc
}

// finish checks what spans documents: layers and policy names.
func (p *parser) finish() {
	if p.b.Layers == nil {
		p.b.Layers = slices.Clone(DefaultLayers)
	}
	names := map[string]Pos{}
	for _, pol := range p.b.Policies {
		if pol.Name != "" {
			if first, dup := names[pol.Name]; dup {
				p.errs.Add(pol.Pos, "duplicate policy name %q (first at %s): policy names are unique in a bundle", pol.Name, first)
			} else {
				names[pol.Name] = pol.Pos
			}
		}
		if pol.Layer != "" && !slices.Contains(p.b.Layers, pol.Layer) {
			p.errs.Add(pol.Pos, "policy %q has unknown layer %q: want one of %s", pol.Name, pol.Layer, strings.Join(p.b.Layers, ", "))
		}
	}
	tests := map[string]bool{}
	for _, ts := range p.b.Tests {
		if ts.Name != "" && tests[ts.Name] {
			p.errs.Add(ts.Pos, "duplicate test name %q: test names are unique in a bundle", ts.Name)
		}
		tests[ts.Name] = true
	}
}

// mapNode is a YAML mapping with its keys checked against the allowed set.
type mapNode struct {
	p    *parser
	file string
	pos  Pos
	keys map[string]*yaml.Node
	key  map[string]*yaml.Node
}

func (p *parser) mapping(file string, n *yaml.Node, what string) (*mapNode, bool) {
	n = resolveAlias(n)
	if n.Kind != yaml.MappingNode {
		p.errs.Add(pos(file, n), "expected %s as a mapping of fields, got %s", what, describe(n))
		return nil, false
	}
	m := &mapNode{p: p, file: file, pos: pos(file, n), keys: map[string]*yaml.Node{}, key: map[string]*yaml.Node{}}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if _, dup := m.keys[k.Value]; dup {
			p.errs.Add(pos(file, k), "field %q is given twice", k.Value)
			continue
		}
		m.keys[k.Value] = resolveAlias(v)
		m.key[k.Value] = k
	}
	return m, true
}

// allow reports every field that is not one of names.
func (m *mapNode) allow(names ...string) {
	for k, kn := range m.key {
		if !slices.Contains(names, k) {
			m.p.errs.Add(pos(m.file, kn), "unknown field %q: allowed fields are %s", k, strings.Join(names, ", "))
		}
	}
}

func (m *mapNode) get(name string) *yaml.Node { return m.keys[name] }

func (p *parser) scalar(file string, n *yaml.Node, field string) bool {
	if n.Kind != yaml.ScalarNode {
		p.errs.Add(pos(file, n), "%s must be a single value, got %s", field, describe(n))
		return false
	}
	return true
}

func (p *parser) optString(m *mapNode, field string) string {
	n := m.get(field)
	if n == nil || !p.scalar(m.file, n, field) {
		return ""
	}
	return n.Value
}

func (p *parser) requiredString(m *mapNode, field, what string) string {
	n := m.get(field)
	if n == nil {
		p.errs.Add(m.pos, "%s has no %s", what, field)
		return ""
	}
	if !p.scalar(m.file, n, field) {
		return ""
	}
	if strings.TrimSpace(n.Value) == "" {
		p.errs.Add(pos(m.file, n), "%s has an empty %s", what, field)
	}
	return n.Value
}

func (p *parser) requiredName(m *mapNode, field, what string) string {
	v := p.requiredString(m, field, what)
	if v != "" && !validName(v) {
		p.errs.Add(pos(m.file, m.get(field)), "invalid %s name %q: use letters, digits, '_', '-' and '.'", what, v)
	}
	return v
}

func (p *parser) stringList(file string, n *yaml.Node, field string) ([]string, bool) {
	if n.Kind != yaml.SequenceNode {
		p.errs.Add(pos(file, n), "%s must be a list of strings, got %s", field, describe(n))
		return nil, false
	}
	out := make([]string, 0, len(n.Content))
	ok := true
	for _, c := range n.Content {
		c = resolveAlias(c)
		if c.Kind != yaml.ScalarNode {
			p.errs.Add(pos(file, c), "%s must be a list of strings, got %s in it", field, describe(c))
			ok = false
			continue
		}
		out = append(out, c.Value)
	}
	return out, ok
}

// strict decodes a node into v through JSON with unknown fields rejected, so
// that requests and entities in tests are read exactly as the API reads them.
func (p *parser) strict(file string, n *yaml.Node, field string, v any) bool {
	var raw any
	if err := n.Decode(&raw); err != nil {
		p.errs.Add(pos(file, n), "%s: %s", field, yamlErrMsg(err))
		return false
	}
	b, err := json.Marshal(jsonable(raw))
	if err != nil {
		p.errs.Add(pos(file, n), "%s: %v", field, err)
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		p.errs.Add(pos(file, n), "invalid %s: %s", field, jsonErrMsg(err))
		return false
	}
	return true
}

// jsonable turns what YAML decodes (maps with any keys) into JSON-encodable
// values.
func jsonable(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			t[k] = jsonable(x)
		}
		return t
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[fmt.Sprint(k)] = jsonable(x)
		}
		return m
	case []any:
		for i, x := range t {
			t[i] = jsonable(x)
		}
		return t
	case time.Time:
		return t.Format(time.RFC3339Nano)
	default:
		return v
	}
}

func jsonErrMsg(err error) string {
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		return fmt.Sprintf("field %q must be %s, not a %s", ute.Field, ute.Type, ute.Value)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 16; i++ {
		n = n.Alias
	}
	return n
}

func pos(file string, n *yaml.Node) Pos { return Pos{File: file, Line: n.Line, Col: n.Column} }

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("the value %q", n.Value)
	case yaml.AliasNode:
		return "an alias"
	default:
		return "nothing"
	}
}

func validName(s string) bool {
	if s == "" || len(s) > 200 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
