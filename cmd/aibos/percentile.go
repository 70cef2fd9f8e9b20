package main

import (
	"math"
	"time"
)

// percentile is the nearest-rank percentile of sorted samples: the
// smallest sample that at least the fraction p of the samples do not
// exceed, i.e. sorted[ceil(p·n)−1]. So p99 of 30 rounds is the worst one
// (29.7 rounds up to 30), never a sample below it, and p=1 is the maximum.
// It is 0 for no samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}
