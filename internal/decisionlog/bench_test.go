package decisionlog

import (
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/engine/enginetest"
)

// BenchmarkAppendFrame is the writer's work per logged decision.
func BenchmarkAppendFrame(b *testing.B) {
	req := enginetest.Request("ns01.v002")
	buf := make([]byte, 0, 1<<20)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = appendFrame(buf[:0], time.Unix(1, 0), req, api.Allow, "p/r", 1, 2); err != nil {
			b.Fatal(err)
		}
	}
}
