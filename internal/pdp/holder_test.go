package pdp

import (
	"fmt"
	"testing"

	"github.com/aibos/kernel/api"
)

// TestBundlesNeverGoBack: the holder swaps in newer versions only; an
// older one (a bug upstream: versions only grow along the log) must not
// replace the bundle decisions are made with.
func TestBundlesNeverGoBack(t *testing.T) {
	version := func(v uint64) *api.BundleVersion {
		return &api.BundleVersion{VersionInfo: api.VersionInfo{Version: v}, Files: []api.File{{Name: "p.yaml", Data: fmt.Appendf(nil, `kind: Policy
name: p%d
layer: platform
rules:
  - name: r
    effect: allow
    actions: ["x.y"]
`, v)}}}
	}
	b := NewHolder(Options{})
	for _, tc := range []struct {
		apply, want uint64
	}{{2, 2}, {3, 3}, {2, 3}, {1, 3}, {3, 3}, {4, 4}} {
		b.Apply(version(tc.apply))
		if got := b.Version(); got != tc.want {
			t.Fatalf("after applying version %d the holder decides with %d, want %d", tc.apply, got, tc.want)
		}
		if b.cur.Load().bundle == nil {
			t.Fatalf("version %d holds no compiled bundle: %v", b.Version(), b.cur.Load().err)
		}
	}
}
