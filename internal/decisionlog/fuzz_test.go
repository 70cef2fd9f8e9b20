package decisionlog

import (
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/engine/enginetest"
)

func FuzzReadSegment(f *testing.F) {
	var seg []byte
	for i, a := range []string{"a.b", "ns01.v002"} {
		seg, _ = appendFrame(seg, time.Unix(int64(i), 0), enginetest.Request(a), api.Deny, "p/r", 1, 2)
	}
	// A request recorded as the bytes it was decoded from.
	raw := []byte(` {"action":{"name":"c.d"}, "min_revision":3}`)
	seg, _ = appendFrameParts(seg, time.Unix(3, 0), nil, raw, api.Allow, "p", "/", "r", 1, 2)
	f.Add(seg)
	f.Add(seg[:len(seg)-3])
	f.Add([]byte{})
	f.Add([]byte{5, 0, 0, 0, 1, 2, 3, 4, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		n := 0
		valid, err := readSegment(data, time.Time{}, func(r Record) error {
			n++
			if !r.Decision.Valid() || r.Request.Action.Name == "" {
				t.Fatalf("decoded an invalid record %+v", r)
			}
			return nil
		})
		if err != nil || valid < 0 || valid > len(data) {
			t.Fatalf("valid %d of %d, err %v", valid, len(data), err)
		}
		// The intact prefix reads the same again and is wholly valid.
		again, _ := readSegment(data[:valid], time.Time{}, nil)
		if again != valid {
			t.Fatalf("prefix of %d reads as %d", valid, again)
		}
	})
}
