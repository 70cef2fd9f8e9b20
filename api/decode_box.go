package api

import (
	"hash/maphash"
	"math"
	"strings"
	"sync/atomic"
)

// Boxed values shared by all the check requests of the process.
//
// A string or a float64 stored in an interface, as each value of a
// map[string]any is, costs an allocation. The values that repeat from one
// request to the next (small whole numbers such as counts and scores; short
// strings such as tenants, roles and environments) are boxed once here and
// shared by every request that holds them. What the tables hold is immutable,
// so sharing it is safe whatever happens to a request after its answer (the
// audit and decision logs keep requests); the tables are bounded, so distinct
// values do not make them grow.

// emptyArray is []any{} boxed: an empty slice cannot be changed in place
// (append to it allocates), so all requests can share it.
var emptyArray any = []any{}

// smallNums[n] holds float64(n) boxed, filled on first use.
var smallNums [1024]atomic.Value

// smallNumber returns f boxed from smallNums if f is a whole number in its
// range; -0 is not (it stays -0, as encoding/json gives it).
func smallNumber(f float64) (any, bool) {
	if !(0 <= f && f < float64(len(smallNums))) || math.Signbit(f) {
		return nil, false
	}
	n := int(f)
	if float64(n) != f {
		return nil, false
	}
	slot := &smallNums[n]
	if v := slot.Load(); v != nil {
		return v, true
	}
	var v any = f
	slot.Store(v)
	return v, true
}

// The short strings: a direct-mapped table indexed by hash. A string enters
// its slot the second time in a row it misses there, so that distinct strings
// (identifiers, timestamps) only cost a hash and never a copy; once in, it
// stays until another string takes the slot that way.
const (
	strBoxSlots  = 4096 // a power of two
	strBoxMaxLen = 32
)

var (
	strBoxSeed = maphash.MakeSeed()
	strBoxes   [strBoxSlots]atomic.Value  // a string, boxed
	strMissed  [strBoxSlots]atomic.Uint64 // the hash of the last string that missed the slot
)

// boxString returns s boxed, shared with other requests if s is short and
// common. A shared box holds a copy of s: s itself, a substring of a
// request, would keep the whole request alive.
func boxString(s string) any {
	if len(s) > strBoxMaxLen {
		return s
	}
	h := maphash.String(strBoxSeed, s)
	i := h & (strBoxSlots - 1)
	if v := strBoxes[i].Load(); v != nil && v.(string) == s {
		return v
	}
	if strMissed[i].Load() != h {
		strMissed[i].Store(h)
		return s
	}
	var v any = strings.Clone(s)
	strBoxes[i].Store(v)
	return v
}
