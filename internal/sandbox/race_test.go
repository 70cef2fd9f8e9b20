//go:build race

package sandbox_test

// raceEnabled: the tests run under the race detector, which slows the
// kernel several times over; timing bounds that hold without it are
// relaxed.
const raceEnabled = true
