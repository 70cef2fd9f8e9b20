package pdp

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/audit"
	"github.com/aibos/kernel/internal/engine"
)

// State is what a Point needs of the replicated state: the stored
// entities decisions merge in, and the revision the node has applied.
type State interface {
	engine.EntityLookup
	AppliedRevision() uint64
}

// DecisionLog records decisions for simulation (internal/decisionlog): a
// cheap, non-blocking RecordJSON that encodes the decision at once and
// keeps no reference, so the caller may change or reuse req, raw and d
// afterwards. raw, if not nil, is the JSON the api package decoded req
// from, unchanged since: the log keeps a copy instead of encoding req.
type DecisionLog interface {
	RecordJSON(req *api.CheckRequest, raw []byte, d *api.Decision)
}

// Recorder is the audit log as the decision point writes it: a batch's
// decisions as a group (one frame), a single check's encoded at once and
// gathered with the checks queued next to it into one frame; both in
// binary.
type Recorder interface {
	AppendGroup(t time.Time, cs []audit.Check)
	AppendCheck(t time.Time, c *audit.Check)
}

// Config configures a Point.
type Config struct {
	Holder *Holder
	State  State
	// DecisionLog, if set, records every decision (for simulation).
	DecisionLog DecisionLog
	// Audit, if set, records the decisions of Decide and AuditBatch.
	// NoDecisionAudit leaves them out (the gateway's invocations, which
	// it records itself, are always recorded).
	Audit           Recorder
	NoDecisionAudit bool
	// Now is the clock of decisions (time.Now).
	Now func() time.Time
	// Registerer receives the decision metrics (decisions by result,
	// latency, bundle version); nil: none are registered.
	Registerer prometheus.Registerer
}

// Point is a node's decision point. Every entry point decides through it:
// Decide for a decision it answers alone (POST /v1/check, AuthZEN),
// DecideNoAudit for one whose audit record it writes itself (the gateway's
// invocation, a batch's records through AuditBatch, an access request).
type Point struct {
	cfg     Config
	metrics *metrics
	// realClock: cfg.Now is time.Now, which decide then reads once.
	realClock bool
}

// NewPoint checks cfg and returns its decision point.
func NewPoint(cfg Config) (*Point, error) {
	if cfg.Holder == nil || cfg.State == nil {
		return nil, errors.New("pdp: Holder and State are required")
	}
	realClock := cfg.Now == nil
	if realClock {
		cfg.Now = time.Now
	}
	m, err := newMetrics(cfg.Registerer, cfg.Holder)
	if err != nil {
		return nil, err
	}
	return &Point{cfg: cfg, metrics: m, realClock: realClock}, nil
}

// Holder is the bundle holder the point decides with.
func (p *Point) Holder() *Holder { return p.cfg.Holder }

// Decide makes one decision and records it in the metrics, the decision
// log and the audit log.
func (p *Point) Decide(req *api.CheckRequest) api.Decision { return p.DecideJSON(req, nil) }

// DecideJSON is Decide of a request the api package decoded from raw
// (the body of a check), unchanged since: the decision log records raw
// rather than encoding req again. raw nil is Decide.
func (p *Point) DecideJSON(req *api.CheckRequest, raw []byte) api.Decision {
	d, at := p.decide(req, raw)
	if p.cfg.Audit != nil && !p.cfg.NoDecisionAudit {
		c := checkOf(req, &d)
		p.cfg.Audit.AppendCheck(at, &c)
	}
	return d
}

// DecideNoAudit makes one decision and records it in the metrics and the
// decision log, but not in the audit log: the caller records it there
// with what it does (an invocation), or with its batch (AuditBatch).
func (p *Point) DecideNoAudit(req *api.CheckRequest) api.Decision {
	return p.DecideJSONNoAudit(req, nil)
}

// DecideJSONNoAudit is DecideNoAudit of a request decoded from raw, as
// DecideJSON is of Decide (a check of a batch, raw its piece of the body).
func (p *Point) DecideJSONNoAudit(req *api.CheckRequest, raw []byte) api.Decision {
	d, _ := p.decide(req, raw)
	return d
}

// decide is DecideNoAudit, with the time the decision was made at (its
// audit record's): with the default clock, the latency's start, so that a
// decision reads the clock twice.
func (p *Point) decide(req *api.CheckRequest, raw []byte) (api.Decision, time.Time) {
	start := time.Now()
	at := start
	if !p.realClock {
		at = p.cfg.Now()
	}
	// The revision is read before the bundle: the bundle is then at least as
	// new as the revision the decision reports.
	rev := p.cfg.State.AppliedRevision()
	d := p.cfg.Holder.Decide(req, p.cfg.State, at)
	d.Revision = rev
	if d.Reasons == nil {
		d.Reasons = []api.Reason{}
	}
	p.metrics.observe(d.Decision, time.Since(start))
	if p.cfg.DecisionLog != nil {
		p.cfg.DecisionLog.RecordJSON(req, raw, &d)
	}
	return d, at
}

// AuditBatch records the decisions of a batch in the audit log: one
// group (one frame, one hash), their checks in one allocation. A check with
// an error in itemErrs was not decided and is not recorded.
func (p *Point) AuditBatch(reqs []api.CheckRequest, results []api.Decision, itemErrs []error) {
	if p.cfg.Audit == nil || p.cfg.NoDecisionAudit {
		return
	}
	cs := make([]audit.Check, 0, len(reqs))
	for i := range reqs {
		if itemErrs != nil && itemErrs[i] != nil {
			continue
		}
		cs = append(cs, checkOf(&reqs[i], &results[i]))
	}
	p.cfg.Audit.AppendGroup(p.cfg.Now(), cs)
}

// checkOf is the audit log's reference to a decided check.
func checkOf(req *api.CheckRequest, d *api.Decision) audit.Check {
	return audit.Check{Req: req, Reasons: d.Reasons, Full: d.Obligations != nil && d.Obligations.Audit == "full",
		Decision: string(d.Decision), Version: d.Version}
}
