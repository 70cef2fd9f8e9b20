package limits

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
)

func newRestoring() *Local {
	return &Local{path: "counters.json", counters: map[windowKey]float64{}, claims: map[string]claim{}}
}

// FuzzLoadCounters feeds arbitrary bytes to the loader of the counters
// file (DATA/limits.json, read when the node starts). It must never panic;
// an error names the file; and what it keeps is live at the load's time,
// has windows whose arithmetic does not overflow, and is what a save and a
// second load give back.
func FuzzLoadCounters(f *testing.F) {
	wall := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	hour := int64(time.Hour)
	f.Add([]byte(`{"version":1,"counters":[],"claims":[]}`))
	f.Add([]byte(`{"version":1,"counters":[{"key":"rl|a","per":3600000000000,"window":` +
		strconv.FormatInt(wall.UnixNano()/hour, 10) + `,"used":3},{"key":"budget|a","per":86400000000000,"window":` +
		strconv.FormatInt(wall.UnixNano()/(24*hour), 10) + `,"used":7.5},{"key":"rl|old","per":60000000000,"window":1,"used":1}],` +
		`"claims":[{"key":"idem|done","done":true,"response":"eyJvayI6dHJ1ZX0=","expires":"2030-01-02T04:04:05Z"},` +
		`{"key":"idem|running","expires":"2030-01-02T03:05:05+01:00"},{"key":"idem|old","expires":"2000-01-01T00:00:00Z"}]}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"version":1,"counters":[`))
	f.Add([]byte(`{"version":1,"counters":[{"key":"k","per":-1,"window":9223372036854775807,"used":1e308}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		l := newRestoring()
		if err := l.restore(data, wall); err != nil {
			if !strings.HasPrefix(err.Error(), "limits: ") || !strings.Contains(err.Error(), "counters.json") {
				t.Fatalf("unclear error %q", err)
			}
			return
		}
		for k := range l.counters {
			if k.per <= 0 || k.per > maxPer {
				t.Fatalf("kept a window of %v", k.per)
			}
			end := windowEnd(k.window, k.per)
			if !end.After(wall) {
				t.Fatalf("kept window %d of %v, which ended at %v", k.window, k.per, end)
			}
			if end.UnixNano()/int64(k.per) != k.window+1 || end.UnixNano()%int64(k.per) != 0 {
				t.Fatalf("window %d of %v overflows: it ends at %v", k.window, k.per, end)
			}
		}
		for k, c := range l.claims {
			if !c.expires.After(wall) {
				t.Fatalf("kept claim %q, which expired at %v", k, c.expires)
			}
		}
		// A save of what was kept loads back the same.
		b, err := json.Marshal(l.fileLocked())
		if err != nil {
			t.Fatalf("encode what was loaded: %v", err)
		}
		again := newRestoring()
		if err := again.restore(b, wall); err != nil {
			t.Fatalf("load what was saved: %v", err)
		}
		if len(again.counters) != len(l.counters) || len(again.claims) != len(l.claims) {
			t.Fatalf("saved %d counters and %d claims, loaded %d and %d", len(l.counters), len(l.claims), len(again.counters), len(again.claims))
		}
		for k, v := range l.counters {
			if w, ok := again.counters[k]; !ok || w != v {
				t.Fatalf("counter %+v: saved %v, loaded %v", k, v, w)
			}
		}
		for k, c := range l.claims {
			d, ok := again.claims[k]
			if !ok || d.done != c.done || !bytes.Equal(d.response, c.response) || !d.expires.Equal(c.expires) {
				t.Fatalf("claim %q: saved %+v, loaded %+v", k, c, d)
			}
		}
	})
}
