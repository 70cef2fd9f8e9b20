package policy

import (
	"strings"
	"testing"
)

func TestPatternCovers(t *testing.T) {
	tests := []struct {
		p, q string
		want bool
	}{
		// Exact names.
		{"data.query", "data.query", true},
		{"data.query", "data.write", false},
		{"data.query", "data", false},
		{"data", "data.query", false},
		// "*" covers every name and pattern, and only "*" covers "*".
		{"*", "data.query", true},
		{"*", "data.*", true},
		{"*", "*", true},
		{"data.*", "*", false},
		{"data.query", "*", false},
		// A namespace glob covers names under it, at any depth.
		{"data.*", "data.query", true},
		{"data.*", "data.x.y", true},
		{"data.*", "data", false},
		{"data.*", "database.x", false},
		{"data.*", "datax", false},
		{"data.*", "other.query", false},
		// Nested prefixes.
		{"kernel.agent.*", "kernel.agent.register", true},
		{"kernel.agent.*", "kernel.agent.x.y", true},
		{"kernel.agent.*", "kernel.agents.x", false},
		{"kernel.agent.*", "kernel.agent", false},
		{"kernel.agent.*", "kernel.policy.publish", false},
		{"kernel.*", "kernel.agent.register", true},
		// Pattern against pattern.
		{"data.*", "data.*", true},
		{"data.*", "data.x.*", true},
		{"kernel.*", "kernel.agent.*", true},
		{"kernel.agent.*", "kernel.*", false},
		{"kernel.agent.*", "kernel.agents.*", false},
		{"data.query", "data.*", false},
		{"data.x.*", "data.*", false},
		{"data.*", "database.*", false},
	}
	for _, tt := range tests {
		if got := PatternCovers(tt.p, tt.q); got != tt.want {
			t.Errorf("PatternCovers(%q, %q) = %v, want %v", tt.p, tt.q, got, tt.want)
		}
		if err := ValidatePattern(tt.q); err == nil && !strings.Contains(tt.q, "*") {
			if got, match := PatternCovers(tt.p, tt.q), MatchPattern(tt.p, tt.q); got != match {
				t.Errorf("PatternCovers(%q, %q) = %v but MatchPattern = %v", tt.p, tt.q, got, match)
			}
		}
	}
}

// TestPatternCoversMeansMatchesAll checks PatternCovers against its
// meaning over a small universe: p covers q exactly when every name q
// matches, p matches. Patterns have prefixes of up to two segments, so
// names of up to three segments are witnesses enough.
func TestPatternCoversMeansMatchesAll(t *testing.T) {
	segs := []string{"a", "b"}
	var names []string
	for _, x := range segs {
		names = append(names, x)
		for _, y := range segs {
			names = append(names, x+"."+y)
			for _, z := range segs {
				names = append(names, x+"."+y+"."+z)
			}
		}
	}
	patterns := []string{"*"}
	for _, n := range names {
		if len(n) <= 3 { // up to two segments
			patterns = append(patterns, n, n+".*")
		}
	}
	for _, p := range patterns {
		for _, q := range patterns {
			want := true
			for _, n := range names {
				if MatchPattern(q, n) && !MatchPattern(p, n) {
					want = false
					break
				}
			}
			if got := PatternCovers(p, q); got != want {
				t.Errorf("PatternCovers(%q, %q) = %v, but p matches every name q matches: %v", p, q, got, want)
			}
		}
	}
}
