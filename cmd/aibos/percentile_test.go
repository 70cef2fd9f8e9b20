package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestPercentileIsNearestRank(t *testing.T) {
	ms := func(n int) []time.Duration {
		var s []time.Duration
		for i := 1; i <= n; i++ {
			s = append(s, time.Duration(i)*time.Millisecond)
		}
		return s
	}
	tests := []struct {
		n    int
		p    float64
		want time.Duration
	}{
		{30, 0.99, 30 * time.Millisecond}, // the worst of 30 is the p99
		{30, 0.5, 15 * time.Millisecond},
		{30, 1, 30 * time.Millisecond},
		{100, 0.99, 99 * time.Millisecond},
		{1000, 0.999, 999 * time.Millisecond},
		{1, 0.5, time.Millisecond},
		{20, 0, time.Millisecond},
		{0, 0.99, 0},
	}
	for _, tt := range tests {
		if got := percentile(ms(tt.n), tt.p); got != tt.want {
			t.Errorf("p%v of 1..%d ms = %s, want %s", tt.p*100, tt.n, got, tt.want)
		}
	}
	r := benchResult{latencies: ms(30)}
	if got := r.pct(0.99); got != 30*time.Millisecond {
		t.Errorf("bench p99 of 30 = %s, want 30ms", got)
	}
}

func TestFailoverBenchRefusesNoRounds(t *testing.T) {
	for _, rounds := range []string{"0", "-3"} {
		var out, errb bytes.Buffer
		if code := cmdFailoverBench([]string{"--rounds", rounds}, &out, &errb); code != exitInvalid {
			t.Errorf("--rounds %s: exit %d, want %d; %s", rounds, code, exitInvalid, errb.String())
		}
		if !strings.Contains(errb.String(), "--rounds") {
			t.Errorf("--rounds %s: the error does not name the flag: %q", rounds, errb.String())
		}
	}
}
