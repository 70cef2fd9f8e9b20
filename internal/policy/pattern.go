package policy

import (
	"fmt"
	"strings"
)

// ValidatePattern checks an action pattern of a rule: an exact action name
// ("data.query"), a namespace glob ("data.*", "kernel.agent.*") or "*".
// Action names are dot-separated segments of letters, digits, '_' and '-'.
func ValidatePattern(p string) error {
	if p == "*" {
		return nil
	}
	name, glob := strings.CutSuffix(p, ".*")
	if strings.Contains(name, "*") {
		return fmt.Errorf("invalid action pattern %q: '*' may only stand alone or as the last segment (\"data.*\")", p)
	}
	if err := ValidateActionName(name); err != nil {
		if glob {
			return fmt.Errorf("invalid action pattern %q: %v", p, err)
		}
		return err
	}
	return nil
}

// ValidateActionName checks a concrete action name.
func ValidateActionName(name string) error {
	if name == "" {
		return fmt.Errorf("empty action name")
	}
	if len(name) > 256 {
		return fmt.Errorf("action name is %d bytes; at most 256", len(name))
	}
	for seg := range strings.SplitSeq(name, ".") {
		if seg == "" {
			return fmt.Errorf("invalid action name %q: empty segment (write namespace.verb)", name)
		}
		for _, c := range seg {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
				return fmt.Errorf("invalid action name %q: %q is not allowed (use letters, digits, '_', '-' and '.')", name, c)
			}
		}
	}
	return nil
}

// MatchPattern reports whether action name matches pattern p. "data.*"
// matches "data.query" and "data.x.y" but not "data" or "database.x".
func MatchPattern(p, name string) bool {
	if p == "*" {
		return true
	}
	if prefix, ok := strings.CutSuffix(p, "*"); ok {
		return strings.HasPrefix(name, prefix) && len(name) > len(prefix)
	}
	return p == name
}

// PatternCovers reports whether pattern p matches every action that q
// matches, q being an action name or a pattern: "*" covers everything,
// "ns.*" covers "ns.x", "ns.x.y" and "ns.x.*" (but not "ns" or "*"), and a
// pattern covers itself. For an action name q it is MatchPattern(p, q).
func PatternCovers(p, q string) bool {
	return p == q || q != "*" && MatchPattern(p, q)
}

// keyRoots are the request parts a counter key may be drawn from.
var keyRoots = []string{"subject", "action", "resource", "context"}

// ValidateKey checks the key of a rate limit or budget: empty (one counter
// for the rule) or a dotted path into the request such as "subject.id".
func ValidateKey(k string) error {
	if k == "" {
		return nil
	}
	root, rest, _ := strings.Cut(k, ".")
	for _, r := range keyRoots {
		if root == r && rest != "" {
			return nil
		}
	}
	return fmt.Errorf("invalid key %q: want a path into the request such as subject.id, subject.properties.tenant or action.name", k)
}
