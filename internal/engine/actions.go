package engine

import (
	"slices"
	"strings"
)

// ActionNames lists, sorted and without duplicates, the exact action names
// the bundle's rules name. Patterns ("*", "ns.*") match names that cannot be
// enumerated and are left out: an action reachable only through a pattern is
// not listed, though the pattern's rules still take part in deciding every
// listed name.
func (b *Bundle) ActionNames() []string {
	var names []string
	for _, p := range b.src.Policies {
		for _, r := range p.Rules {
			for _, a := range r.Actions {
				if a != "*" && !strings.HasSuffix(a, ".*") {
					names = append(names, a)
				}
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}
