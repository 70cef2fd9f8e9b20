package engine

import (
	"reflect"
	"sync"
	"testing"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/engine/enginetest"
)

// TestDecideConcurrently hammers two bundles from many goroutines at once,
// with pooled evaluators moving between them, and checks every decision
// against the one made alone. Run it with -race.
func TestDecideConcurrently(t *testing.T) {
	big := compileFiles(t, enginetest.GenerateBundle(200, 10))
	small := fuzzCompiled(t)
	type job struct {
		b    *Bundle
		req  *api.CheckRequest
		ents EntityLookup
		want api.Decision
	}
	var jobs []job
	stored := NewMapEntities(enginetest.Entities())
	for ns := range 10 {
		for k := range 5 {
			partial := enginetest.Request(enginetest.Action(ns, k))
			partial.Subject.Properties["roles"] = []any{"reader", "role-" + string(rune('0'+k))}
			for _, req := range []*api.CheckRequest{enginetest.Request(enginetest.Action(ns, k)), enginetest.StoredRequest(enginetest.Action(ns, k)), partial} {
				jobs = append(jobs, job{b: big, req: req, ents: stored})
			}
		}
	}
	for _, req := range fuzzRequests() {
		jobs = append(jobs, job{b: small, req: req, ents: fuzzEntities})
	}
	// The expected decisions come from a fresh compile, so that the
	// outcomes the hammered bundles remember are filled concurrently.
	fresh := map[*Bundle]*Bundle{big: compileFiles(t, enginetest.GenerateBundle(200, 10)), small: fuzzCompiled(t)}
	for i := range jobs {
		jobs[i].want = fresh[jobs[i].b].Decide(jobs[i].req, jobs[i].ents, benchNow)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 300 {
				j := jobs[(i*7+g)%len(jobs)]
				if got := j.b.Decide(j.req, j.ents, benchNow); !reflect.DeepEqual(got, j.want) {
					t.Errorf("%s: concurrent decision differs:\n\tgot  %+v\n\twant %+v", j.req.Action.Name, got, j.want)
					return
				}
			}
		})
	}
	wg.Wait()
}
