package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// DecodeStrict decodes one YAML or JSON document (JSON is YAML) into v the
// way the API reads its JSON form: through encoding/json, unknown fields
// refused. Its error is an Error at the place in file that is wrong: the
// line of a syntax error, the key of an unknown field, the value of a
// field of the wrong type. It is for documents other than bundles (an
// orchestra, an agent manifest) that deserve the same positions.
func DecodeStrict(file string, data []byte, v any) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return Error{Pos: yamlErrPos(file, err), Msg: "invalid YAML/JSON: " + yamlErrMsg(err)}
	}
	if len(doc.Content) == 0 {
		return Error{Pos: Pos{File: file}, Msg: "the file has no document"}
	}
	root := doc.Content[0]
	var raw any
	if err := root.Decode(&raw); err != nil {
		return Error{Pos: pos(file, root), Msg: yamlErrMsg(err)}
	}
	b, err := json.Marshal(jsonable(raw))
	if err != nil {
		return Error{Pos: pos(file, root), Msg: err.Error()}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		at := root
		var ute *json.UnmarshalTypeError
		switch {
		case errors.As(err, &ute) && ute.Field != "":
			if n := fieldNode(root, strings.Split(ute.Field, ".")); n != nil {
				at = n
			}
		default:
			if m := unknownField.FindStringSubmatch(err.Error()); m != nil {
				if n := keyNode(root, m[1]); n != nil {
					at = n
				}
			}
		}
		return Error{Pos: pos(file, at), Msg: jsonErrMsg(err)}
	}
	return nil
}

var unknownField = regexp.MustCompile(`unknown field "([^"]*)"`)

// keyNode finds the first mapping key named name, depth first.
func keyNode(n *yaml.Node, name string) *yaml.Node {
	n = resolveAlias(n)
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == name {
				return n.Content[i]
			}
		}
	}
	for _, c := range n.Content {
		if k := keyNode(c, name); k != nil {
			return k
		}
	}
	return nil
}

// fieldNode finds the value at a dotted field path as encoding/json names
// it (struct fields only: the path does not say which element of a list,
// so the first element that has the field is taken).
func fieldNode(n *yaml.Node, path []string) *yaml.Node {
	n = resolveAlias(n)
	if len(path) == 0 {
		return n
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == path[0] {
				return fieldNode(n.Content[i+1], path[1:])
			}
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			if f := fieldNode(c, path); f != nil {
				return f
			}
		}
	}
	return nil
}
