// Package simulate owns policy simulation: replaying the decisions a node
// logged (internal/decisionlog) against a candidate bundle and reporting
// what would change. It reads one node's log; a cluster-wide simulation
// would ask every node and add the reports up, which is not done.
package simulate

import (
	"context"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/decisionlog"
	"github.com/aibos/kernel/internal/engine"
)

// Source is what a simulation reads: a decision log.
type Source interface {
	Scan(since time.Time, fn func(decisionlog.Record) error) error
}

var _ Source = (*decisionlog.Log)(nil)

// Options tune a replay.
type Options struct {
	// Since is the time of the oldest decision replayed.
	Since time.Time
	// Entities are the stored entities the candidate decides with (the
	// node's current ones). Nil: none.
	Entities engine.EntityLookup
	// Samples is how many changed decisions the report shows, the oldest
	// first. Zero: 20.
	Samples int
	// Workers decide in parallel. Zero: GOMAXPROCS.
	Workers int
}

// Report and Change are the wire types of a simulation (package api), so
// the server answers with them and the SDK decodes them.
type (
	Report = api.SimulationReport
	Change = api.SimulatedChange
)

// Flip names a change of decision.
func Flip(from, to api.Effect) string { return string(from) + "→" + string(to) }

func newReport() Report {
	return Report{Flips: map[string]int{}, ByAction: map[string]map[string]int{},
		ByRule: map[string]map[string]int{}, BySubject: map[string]map[string]int{}}
}

func inc(m map[string]map[string]int, key, flip string) {
	g := m[key]
	if g == nil {
		g = map[string]int{}
		m[key] = g
	}
	g[flip]++
}

func addReport(r, o *Report, samples int) {
	r.Replayed += o.Replayed
	r.Changed += o.Changed
	r.Errors += o.Errors
	for k, v := range o.Flips {
		r.Flips[k] += v
	}
	for _, m := range [...][2]map[string]map[string]int{{r.ByAction, o.ByAction}, {r.ByRule, o.ByRule}, {r.BySubject, o.BySubject}} {
		for k, g := range m[1] {
			dst := m[0][k]
			if dst == nil {
				dst = make(map[string]int, len(g))
				m[0][k] = dst
			}
			for f, v := range g {
				dst[f] += v
			}
		}
	}
	r.Samples = append(r.Samples, o.Samples...)
	slices.SortStableFunc(r.Samples, func(a, b Change) int { return a.Time.Compare(b.Time) })
	if len(r.Samples) > samples {
		r.Samples = r.Samples[:samples]
	}
}

// chunk is the unit of work of a worker: records in log order.
const chunk = 512

// Replay decides every logged decision since opts.Since with candidate, at
// the time it was made, and reports the changes. Records are read in one
// goroutine and decided in opts.Workers.
func Replay(ctx context.Context, src Source, candidate *engine.Bundle, opts Options) (Report, error) {
	start := time.Now()
	if opts.Entities == nil {
		opts.Entities = engine.NoEntities{}
	}
	if opts.Samples <= 0 {
		opts.Samples = 20
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	work := make(chan []decisionlog.Record, opts.Workers*2)
	parts := make([]Report, opts.Workers)
	var wg sync.WaitGroup
	for w := range opts.Workers {
		parts[w] = newReport()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for recs := range work {
				replayChunk(&parts[w], recs, candidate, opts)
			}
		}()
	}
	batch := make([]decisionlog.Record, 0, chunk)
	err := src.Scan(opts.Since, func(r decisionlog.Record) error {
		batch = append(batch, r)
		if len(batch) == chunk {
			if err := ctx.Err(); err != nil {
				return err
			}
			work <- batch
			batch = make([]decisionlog.Record, 0, chunk)
		}
		return nil
	})
	if len(batch) > 0 {
		work <- batch
	}
	close(work)
	wg.Wait()
	rep := newReport()
	rep.Since = opts.Since
	for i := range parts {
		addReport(&rep, &parts[i], opts.Samples)
	}
	if rep.Samples == nil {
		rep.Samples = []Change{}
	}
	rep.Took = api.Duration(time.Since(start))
	return rep, err
}

func replayChunk(rep *Report, recs []decisionlog.Record, candidate *engine.Bundle, opts Options) {
	for i := range recs {
		r := &recs[i]
		d := candidate.Decide(&r.Request, opts.Entities, r.Time)
		rep.Replayed++
		if len(d.Errors) > 0 {
			rep.Errors++
		}
		if d.Decision == r.Decision {
			continue
		}
		rep.Changed++
		flip := Flip(r.Decision, d.Decision)
		rule := engine.DeterminingRule(d.Reasons)
		rep.Flips[flip]++
		inc(rep.ByAction, r.Request.Action.Name, flip)
		inc(rep.ByRule, rule, flip)
		inc(rep.BySubject, r.Request.Subject.Type+":"+r.Request.Subject.ID, flip)
		if len(rep.Samples) < opts.Samples {
			rep.Samples = append(rep.Samples, Change{Time: r.Time, Request: r.Request, Version: r.Version,
				Recorded: r.Decision, RecordedRule: r.Rule, Candidate: d.Decision, CandidateRule: rule})
		}
	}
}
