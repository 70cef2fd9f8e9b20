// Package jsonschema owns validation of an action's input against the JSON
// Schema its catalog entry declares. It implements the subset of JSON Schema
// 2020-12 that input schemas use, compiled once and evaluated many times:
//
//	type, enum, const; properties, required, additionalProperties,
//	minProperties, maxProperties; items, minItems, maxItems, uniqueItems;
//	minimum, maximum, exclusiveMinimum, exclusiveMaximum (numbers, 2020-12
//	style); minLength, maxLength (counted in Unicode code points); pattern;
//	allOf, anyOf, oneOf, not; and boolean schemas (true, false).
//
// The annotations title, description, $schema, $id, $comment, default and
// examples are accepted and ignored. Every other keyword — format, $ref,
// $defs, patternProperties, the draft-04 boolean exclusiveMinimum — is a
// compile error naming the supported ones: a schema is never half-enforced
// with its author believing otherwise.
//
// pattern is a Go regular expression (RE2 syntax: no backreferences or
// lookaround), unanchored as JSON Schema specifies: write ^…$ to match the
// whole string. Numbers compare exactly, whatever their size or precision;
// 3.0 and 1e2 are integers.
package jsonschema

import (
	"fmt"
	"strings"
)

// MaxDepth is the deepest nesting of subschemas Compile accepts.
const MaxDepth = 32

// Schema is a compiled schema. It is immutable and safe for concurrent use.
type Schema struct {
	root *node
}

// Error is one way an instance fails its schema.
type Error struct {
	// Path is a JSON Pointer (RFC 6901) to the failing value in the instance:
	// "" for the instance itself, "/items/2/amount" for a nested member.
	Path string
	// Message says what is wrong and what is expected: "is 1500, want at most 1000".
	Message string
}

func (e Error) Error() string {
	if e.Path == "" {
		return "(root): " + e.Message
	}
	return e.Path + ": " + e.Message
}

// CompileError lists every problem Compile found in a schema, sorted by path.
type CompileError struct {
	Problems []Problem
}

// Problem is one thing wrong with a schema.
type Problem struct {
	// Path is the dotted path of the offending keyword in the schema:
	// "properties.amount.minimum", "anyOf.1.type".
	Path    string
	Message string
}

func (p Problem) String() string {
	if p.Path == "" {
		return "(root): " + p.Message
	}
	return p.Path + ": " + p.Message
}

func (e *CompileError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.String()
	}
	return fmt.Sprintf("invalid input schema: %s", strings.Join(parts, "; "))
}
