package mcp

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"

	"github.com/aibos/kernel/api"
)

// A tool may declare how its calls map to an AuthZEN request with
// x-authzen-mapping in its inputSchema (COAZ-MCP, "Declared Mappings"):
//
//	{"evaluation": {"subject": {"type": "identity", "id": "$token.sub"},
//	                "action": {"name": "get_customer"},
//	                "resource": {"type": "customer", "id": "$params.arguments.id"},
//	                "context": {"case": "$params.arguments.case"}}}
//
// A string starting with "$" is a CEL expression over token (sub, client_id,
// aud) and params (name, arguments); "$$" starts a literal "$"; anything
// else is a literal. In the kernel the subject is always the registered
// agent: a mapping's subject.id must resolve to token.sub (the agent), or
// the call is refused as a mapping error; its other subject fields are
// ignored. The mapping's resource becomes the decision's resource, its
// context is merged into the decision's context (the kernel's own keys,
// input and action, win), and its action name is passed as
// context.mcp_action (the decision's action stays the catalog action, so
// policies keep one name per tool). The evaluations envelope is refused
// (not yet supported).

// MaxMappingBytes bounds a declared mapping.
const MaxMappingBytes = 16 << 10

// mappingCostLimit bounds one expression's evaluation.
const mappingCostLimit = 100000

// ErrMapping is a declared mapping that cannot be compiled or evaluated.
var ErrMapping = errors.New("x-authzen-mapping")

// Mapping is a compiled declared mapping.
type Mapping struct {
	subjectID, action *expr
	resource, context *node
}

// node is a mapping template: a literal, an expression or an object of
// nodes.
type node struct {
	lit    any
	expr   *expr
	fields map[string]*node
}

type expr struct {
	src string
	prg cel.Program
}

// MappingInput is what a mapping's expressions see.
type MappingInput struct {
	Token  map[string]any // sub, client_id, aud
	Params map[string]any // name, arguments
}

// Mapped is a mapping's result: what the decision is asked with.
type Mapped struct {
	Resource *api.Entity
	Context  map[string]any
}

var mappingEnv = func() *cel.Env {
	dyn := cel.MapType(cel.StringType, cel.DynType)
	env, err := cel.NewEnv(cel.Variable("token", dyn), cel.Variable("params", dyn), cel.OptionalTypes(),
		cel.ParserExpressionSizeLimit(4096), cel.ParserRecursionLimit(64))
	if err != nil {
		panic("mcp: CEL environment: " + err.Error())
	}
	return env
}()

// compileMapping compiles the x-authzen-mapping of an inputSchema (a map
// as the SDK decodes it, or JSON); nil if there is none.
func compileMapping(inputSchema any) (*Mapping, error) {
	var raw json.RawMessage
	switch s := inputSchema.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		var m map[string]json.RawMessage
		if json.Unmarshal(s, &m) != nil {
			return nil, nil
		}
		raw = m["x-authzen-mapping"]
	case map[string]any:
		v, ok := s["x-authzen-mapping"]
		if !ok {
			return nil, nil
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMapping, err)
		}
		raw = b
	default:
		b, err := json.Marshal(s)
		if err != nil {
			return nil, fmt.Errorf("%w: inputSchema: %v", ErrMapping, err)
		}
		return compileMapping(json.RawMessage(b))
	}
	if raw == nil {
		return nil, nil
	}
	return ParseMapping(raw)
}

// ParseMapping compiles a declared mapping document.
func ParseMapping(b []byte) (*Mapping, error) {
	if len(b) > MaxMappingBytes {
		return nil, fmt.Errorf("%w is %d bytes; at most %d", ErrMapping, len(b), MaxMappingBytes)
	}
	var env map[string]any
	if err := json.Unmarshal(b, &env); err != nil || env == nil {
		return nil, fmt.Errorf("%w must be a JSON object {\"evaluation\": {...}}", ErrMapping)
	}
	if _, ok := env["evaluations"]; ok {
		return nil, fmt.Errorf("%w: the evaluations envelope is not supported; use evaluation", ErrMapping)
	}
	if len(env) != 1 {
		return nil, fmt.Errorf("%w must have exactly one key, evaluation", ErrMapping)
	}
	ev, ok := env["evaluation"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: evaluation must be an object with subject, action, resource and context", ErrMapping)
	}
	m := &Mapping{}
	for k, v := range ev {
		var err error
		switch k {
		case "subject":
			s, ok := v.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%w: evaluation.subject must be an object", ErrMapping)
			}
			if id, ok := s["id"]; ok {
				n, err := compileNode(id, "evaluation.subject.id", 0)
				if err != nil {
					return nil, err
				}
				if n.expr == nil {
					return nil, fmt.Errorf("%w: evaluation.subject.id is a literal; the subject is the caller: use \"$token.sub\" or leave it out", ErrMapping)
				}
				m.subjectID = n.expr
			}
		case "action":
			a, ok := v.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%w: evaluation.action must be an object", ErrMapping)
			}
			if name, ok := a["name"]; ok {
				n, err := compileNode(name, "evaluation.action.name", 0)
				if err != nil {
					return nil, err
				}
				if n.expr != nil {
					m.action = n.expr
				} else {
					m.action = &expr{src: fmt.Sprint(n.lit)}
				}
			}
		case "resource":
			if m.resource, err = compileNode(v, "evaluation.resource", 0); err != nil {
				return nil, err
			}
			if m.resource.fields == nil {
				return nil, fmt.Errorf("%w: evaluation.resource must be an object {type, id, properties?}", ErrMapping)
			}
		case "context":
			if m.context, err = compileNode(v, "evaluation.context", 0); err != nil {
				return nil, err
			}
			if m.context.fields == nil {
				return nil, fmt.Errorf("%w: evaluation.context must be an object", ErrMapping)
			}
		default:
			return nil, fmt.Errorf("%w: evaluation has the unknown key %q (want subject, action, resource, context)", ErrMapping, k)
		}
	}
	return m, nil
}

func compileNode(v any, path string, depth int) (*node, error) {
	if depth > 16 {
		return nil, fmt.Errorf("%w: %s is nested deeper than 16 levels", ErrMapping, path)
	}
	switch t := v.(type) {
	case string:
		if strings.HasPrefix(t, "$$") {
			return &node{lit: t[1:]}, nil
		}
		if src, ok := strings.CutPrefix(t, "$"); ok {
			ast, iss := mappingEnv.Compile(src)
			if iss != nil && iss.Err() != nil {
				return nil, fmt.Errorf("%w: %s: %q: %v", ErrMapping, path, t, iss.Err())
			}
			prg, err := mappingEnv.Program(ast, cel.CostLimit(mappingCostLimit))
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %v", ErrMapping, path, err)
			}
			return &node{expr: &expr{src: src, prg: prg}}, nil
		}
		return &node{lit: t}, nil
	case map[string]any:
		n := &node{fields: make(map[string]*node, len(t))}
		for k, fv := range t {
			c, err := compileNode(fv, path+"."+k, depth+1)
			if err != nil {
				return nil, err
			}
			n.fields[k] = c
		}
		return n, nil
	default:
		return &node{lit: t}, nil
	}
}

// absent is an optional expression without a value: its key is left out.
type absentT struct{}

var absent = absentT{}

func (e *expr) eval(in MappingInput) (any, error) {
	if e.prg == nil {
		return e.src, nil
	}
	out, _, err := e.prg.Eval(map[string]any{"token": in.Token, "params": in.Params})
	if err != nil {
		return nil, fmt.Errorf("%w: $%s: %v", ErrMapping, e.src, err)
	}
	return native(out)
}

func native(v ref.Val) (any, error) {
	if o, ok := v.(*types.Optional); ok {
		if !o.HasValue() {
			return absent, nil
		}
		return native(o.GetValue())
	}
	if types.IsError(v) {
		return nil, fmt.Errorf("%w: %v", ErrMapping, v)
	}
	x, err := v.ConvertToNative(reflect.TypeFor[any]())
	if err != nil {
		// Maps and lists of CEL values: through JSON.
		j, jerr := v.ConvertToNative(reflect.TypeFor[json.RawMessage]())
		if jerr != nil {
			return v.Value(), nil
		}
		var out any
		if err := json.Unmarshal(j.(json.RawMessage), &out); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMapping, err)
		}
		return out, nil
	}
	return x, nil
}

func (n *node) eval(in MappingInput) (any, error) {
	switch {
	case n.expr != nil:
		return n.expr.eval(in)
	case n.fields != nil:
		out := make(map[string]any, len(n.fields))
		for k, f := range n.fields {
			v, err := f.eval(in)
			if err != nil {
				return nil, err
			}
			if v != absent {
				out[k] = v
			}
		}
		return out, nil
	}
	return n.lit, nil
}

// Eval applies the mapping to one call. A subject.id that does not
// resolve to the token's subject (the agent) is a mapping error: a tool
// cannot make the caller someone else.
func (m *Mapping) Eval(in MappingInput) (Mapped, error) {
	var out Mapped
	if m.subjectID != nil {
		v, err := m.subjectID.eval(in)
		if err != nil {
			return out, err
		}
		if s, _ := v.(string); s == "" || s != in.Token["sub"] {
			return out, fmt.Errorf("%w: subject.id resolves to %v, not the authenticated agent: the subject is anchored to the token ($token.sub)", ErrMapping, v)
		}
	}
	if m.resource != nil {
		v, err := m.resource.eval(in)
		if err != nil {
			return out, err
		}
		r := v.(map[string]any)
		typ, _ := r["type"].(string)
		id, _ := r["id"].(string)
		if typ == "" || id == "" {
			return out, fmt.Errorf("%w: resource must resolve to a non-empty type and id (strings), got type %v and id %v", ErrMapping, r["type"], r["id"])
		}
		res := &api.Entity{Type: typ, ID: id}
		if p, ok := r["properties"].(map[string]any); ok {
			res.Properties = p
		}
		out.Resource = res
	}
	if m.context != nil {
		v, err := m.context.eval(in)
		if err != nil {
			return out, err
		}
		out.Context = v.(map[string]any)
	}
	if m.action != nil {
		v, err := m.action.eval(in)
		if err != nil {
			return out, err
		}
		if v != absent {
			if out.Context == nil {
				out.Context = map[string]any{}
			}
			out.Context["mcp_action"] = v
		}
	}
	return out, nil
}
