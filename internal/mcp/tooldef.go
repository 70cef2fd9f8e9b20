package mcp

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/jcs"
)

// MaxDefinitionBytes bounds one tool definition as the kernel pins it.
const MaxDefinitionBytes = 256 << 10

// definition is what of a tool is pinned: everything that tells an agent
// (or a model) what the tool does and takes. _meta and icons are left out:
// they do not change what the tool is.
type definition struct {
	Name         string               `json:"name"`
	Title        string               `json:"title,omitempty"`
	Description  string               `json:"description,omitempty"`
	InputSchema  json.RawMessage      `json:"inputSchema"`
	OutputSchema json.RawMessage      `json:"outputSchema,omitempty"`
	Annotations  *mcp.ToolAnnotations `json:"annotations,omitempty"`
}

// PinTool returns a tool's definition as the kernel stores it and the
// SHA-256 (hex) of its RFC 8785 canonical JSON, so key order and number
// spelling do not change the digest.
func PinTool(t *mcp.Tool) (json.RawMessage, string, error) {
	d := definition{Name: t.Name, Title: t.Title, Description: t.Description, Annotations: t.Annotations}
	var err error
	if d.InputSchema, err = marshalSchema(t.InputSchema); err != nil {
		return nil, "", fmt.Errorf("tool %q: inputSchema: %w", t.Name, err)
	}
	if t.OutputSchema != nil {
		if d.OutputSchema, err = marshalSchema(t.OutputSchema); err != nil {
			return nil, "", fmt.Errorf("tool %q: outputSchema: %w", t.Name, err)
		}
	}
	b, err := json.Marshal(d)
	if err != nil {
		return nil, "", fmt.Errorf("tool %q: %w", t.Name, err)
	}
	return pinDefinition(b)
}

// pinDefinition canonicalizes a definition and digests it.
func pinDefinition(b []byte) (json.RawMessage, string, error) {
	if len(b) > MaxDefinitionBytes {
		return nil, "", fmt.Errorf("tool definition is %d bytes; at most %d", len(b), MaxDefinitionBytes)
	}
	c, err := jcs.Canonicalize(b)
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(c)
	return c, hex.EncodeToString(sum[:]), nil
}

func marshalSchema(s any) (json.RawMessage, error) {
	if s == nil {
		return json.RawMessage(`{"type":"object"}`), nil
	}
	b, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// DecodeDefinition reads a pinned definition back into an MCP tool, with
// its digest recomputed. It refuses what PinTool could not have produced.
func DecodeDefinition(b []byte) (*mcp.Tool, string, error) {
	var d definition
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, "", fmt.Errorf("tool definition: %w", err)
	}
	if d.Name == "" {
		return nil, "", errors.New("tool definition has no name")
	}
	var in map[string]any
	if err := json.Unmarshal(d.InputSchema, &in); err != nil || in == nil {
		return nil, "", fmt.Errorf("tool %q: inputSchema is not a JSON object", d.Name)
	}
	t := &mcp.Tool{Name: d.Name, Title: d.Title, Description: d.Description, Annotations: d.Annotations, InputSchema: in}
	if len(d.OutputSchema) > 0 {
		var out map[string]any
		if err := json.Unmarshal(d.OutputSchema, &out); err != nil || out == nil {
			return nil, "", fmt.Errorf("tool %q: outputSchema is not a JSON object", d.Name)
		}
		t.OutputSchema = out
	}
	_, digest, err := PinTool(t)
	if err != nil {
		return nil, "", err
	}
	return t, digest, nil
}

// RiskOf is the risk class of a tool from its annotations, read as MCP
// defines their defaults (destructiveHint and openWorldHint default to
// true): read-only → read; otherwise destructive unless destructiveHint is
// false; then external unless openWorldHint is false; else write. A tool
// without annotations is destructive: the server said nothing to trust.
func RiskOf(a *mcp.ToolAnnotations) string {
	switch {
	case a == nil:
		return api.RiskDestructive
	case a.ReadOnlyHint:
		return api.RiskRead
	case a.DestructiveHint == nil || *a.DestructiveHint:
		return api.RiskDestructive
	case a.OpenWorldHint == nil || *a.OpenWorldHint:
		return api.RiskExternal
	}
	return api.RiskWrite
}
