package api

import (
	"math"
	"sync/atomic"
)

// Boxed values shared by all the check requests of the process.
//
// A string or a float64 stored in an interface, as each value of a
// map[string]any is, costs an allocation. The values that repeat from one
// request to the next (small whole numbers such as counts and scores) are
// boxed once here and shared by every request that holds them. What the tables hold is immutable,
// so sharing it is safe whatever happens to a request after its answer (the
// audit and decision logs keep requests); the tables are bounded, so distinct
// values do not make them grow.

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
