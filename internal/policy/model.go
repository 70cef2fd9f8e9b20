// Package policy owns the source model of a policy bundle: the documents of
// kind Bundle, Policy and Test, their parsing from YAML or JSON files with
// positions, and the structural validation that needs no CEL (names, layers,
// effects, action patterns, obligations). It never evaluates anything; the
// engine compiles what this package loads.
package policy

import (
	"time"

	"github.com/aibos/kernel/api"
)

// DefaultLayers is the layer order of a bundle that declares none, highest
// precedence first.
var DefaultLayers = []string{"platform", "region", "tenant", "agent"}

// Bundle is the parsed source of a whole policy bundle.
type Bundle struct {
	// Layers in precedence order, highest first.
	Layers   []string
	Policies []*Policy
	Tests    []*TestSuite
	// LayersPos is where the layer list was declared (zero if defaulted).
	LayersPos Pos
}

// Policy is a named set of rules in one layer.
type Policy struct {
	Name        string
	Layer       string
	Description string
	Rules       []*Rule
	Pos         Pos
}

// Rule is one effect on a set of actions under an optional condition.
type Rule struct {
	Name    string
	Effect  api.Effect
	Actions []string
	// When is a CEL expression; empty means always.
	When    string
	WhenPos Pos
	Message string
	// Obligations apply if the rule holds and the action runs.
	Obligations *api.Obligations
	Pos         Pos
}

// TestSuite is a document of kind Test: entities and cases that make a
// bundle's tests self-contained.
type TestSuite struct {
	Name     string
	Entities []api.Entity
	Cases    []*TestCase
	Pos      Pos
}

// TestCase is one request and the decision expected for it.
type TestCase struct {
	Name    string
	Request api.CheckRequest
	Expect  api.Effect
	// ExpectRules, when set, lists "policy/rule" names that must be exactly
	// the determining rules of the decision.
	ExpectRules []string
	// ExpectObligations, when set, must equal the decision's merged
	// obligations (redactions and approvers compared as sets; no
	// obligations equal the empty set).
	ExpectObligations *api.Obligations
	// ExpectErrors, when set, lists one substring for each error the
	// decision must report, in order; an empty list expects no errors.
	ExpectErrors []string
	// Now fixes the time of the decision; zero means the run's time.
	Now time.Time
	Pos Pos
}

// Audit levels an obligation may ask for, lowest first.
var AuditLevels = []string{"none", "digest", "full"}

// AuditRank orders audit levels; unknown levels rank -1.
func AuditRank(level string) int {
	for i, l := range AuditLevels {
		if l == level {
			return i
		}
	}
	return -1
}
