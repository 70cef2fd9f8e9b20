package engine

import (
	"reflect"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
)

func TestMergeObligations(t *testing.T) {
	h := api.Duration(time.Hour)
	rl := func(n int, per api.Duration) *api.RateLimit { return &api.RateLimit{Limit: n, Per: per} }
	bu := func(n float64, per api.Duration) *api.Budget { return &api.Budget{Limit: n, Per: per} }
	tests := []struct {
		name string
		a, b *api.Obligations
		want api.Obligations
	}{
		{"both nil", nil, nil, api.Obligations{}},
		{"nil a", nil, &api.Obligations{Audit: "digest"}, api.Obligations{Audit: "digest"}},
		{"nil b", &api.Obligations{Audit: "digest"}, nil, api.Obligations{Audit: "digest"}},
		{"higher audit", &api.Obligations{Audit: "digest"}, &api.Obligations{Audit: "full"}, api.Obligations{Audit: "full"}},
		{"lower audit kept out", &api.Obligations{Audit: "full"}, &api.Obligations{Audit: "none"}, api.Obligations{Audit: "full"}},
		{"lower rate", &api.Obligations{RateLimit: rl(10, h)}, &api.Obligations{RateLimit: rl(5, h)}, api.Obligations{RateLimit: rl(5, h)}},
		{"higher rate kept out", &api.Obligations{RateLimit: rl(5, h)}, &api.Obligations{RateLimit: rl(10, h)}, api.Obligations{RateLimit: rl(5, h)}},
		{"equal rate, smaller limit in b", &api.Obligations{RateLimit: rl(20, 2*h)}, &api.Obligations{RateLimit: rl(10, h)}, api.Obligations{RateLimit: rl(10, h)}},
		{"equal rate, smaller limit in a", &api.Obligations{RateLimit: rl(10, h)}, &api.Obligations{RateLimit: rl(20, 2*h)}, api.Obligations{RateLimit: rl(10, h)}},
		{"equal budget rate, smaller limit in b", &api.Obligations{Budget: bu(100, 24*h)}, &api.Obligations{Budget: bu(50, 12*h)}, api.Obligations{Budget: bu(50, 12*h)}},
		{"equal budget rate, smaller limit in a", &api.Obligations{Budget: bu(50, 12*h)}, &api.Obligations{Budget: bu(100, 24*h)}, api.Obligations{Budget: bu(50, 12*h)}},
		{"limits from either", &api.Obligations{Budget: bu(1, h)}, &api.Obligations{RateLimit: rl(1, h)}, api.Obligations{RateLimit: rl(1, h), Budget: bu(1, h)}},
		{"unions, a's first", &api.Obligations{Redact: []string{"x", "y"}, Approvers: []string{"bob"}},
			&api.Obligations{Redact: []string{"y", "z"}, Approvers: []string{"alice", "bob"}},
			api.Obligations{Redact: []string{"x", "y", "z"}, Approvers: []string{"bob", "alice"}}},
	}
	for _, tt := range tests {
		if got := MergeObligations(tt.a, tt.b); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: MergeObligations = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

// MergeObligations must not write into the spare capacity of a's lists,
// which belong to a decision that others may hold.
func TestMergeObligationsLeavesItsArgumentsAlone(t *testing.T) {
	redact := make([]string, 1, 4)
	redact[0] = "x"
	a := &api.Obligations{Redact: redact}
	b := &api.Obligations{Redact: []string{"y"}}
	first := MergeObligations(a, b)
	second := MergeObligations(a, &api.Obligations{Redact: []string{"z"}})
	if !reflect.DeepEqual(first.Redact, []string{"x", "y"}) || !reflect.DeepEqual(second.Redact, []string{"x", "z"}) {
		t.Fatalf("merges share a's list: %q, %q", first.Redact, second.Redact)
	}
	if len(a.Redact) != 1 || redact[:2][1] != "" {
		t.Fatalf("a's list was written: %q", redact[:2])
	}
}
