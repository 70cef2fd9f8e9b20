package gateway

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/audit"
	"github.com/aibos/kernel/internal/engine"
	"github.com/aibos/kernel/internal/gateway/limits"
	"github.com/aibos/kernel/internal/jcs"
	"github.com/aibos/kernel/internal/policy"
	"github.com/aibos/kernel/internal/store"
)

// Error codes of invocations, stable for scripts and agents.
const (
	CodeUnauthenticated  = api.CodeUnauthenticated
	CodeBadRequest       = api.CodeBadRequest
	CodeUnknownAction    = api.CodeUnknownAction
	CodeCapability       = api.CodeCapability
	CodeInvalidInput     = api.CodeInvalidInput
	CodeKilled           = api.CodeKilled
	CodeDenied           = api.CodeDenied
	CodeRateLimited      = api.CodeRateLimited
	CodeBudget           = api.CodeBudget
	CodeCounterDown      = api.CodeCounterDown
	CodeApproval         = api.CodeApproval
	CodeApprovalExpired  = api.CodeApprovalExpired
	CodeApprovalVoided   = api.CodeApprovalVoided
	CodeTooManyApprovals = api.CodeTooManyApprovals
	CodeIdemInProgress   = api.CodeIdemInProgress
	CodeIdemMismatch     = api.CodeIdemMismatch
	CodeBackend          = api.CodeBackend
	CodeTimeout          = api.CodeTimeout
	CodeCancelled        = api.CodeCancelled
	CodeAudit            = api.CodeAudit
	CodeUnavailable      = api.CodeUnavailable
)

// Call is one invocation as the server received it.
type Call struct {
	Token          string // the bearer token
	Action         string // from the path
	IdempotencyKey string // the Idempotency-Key header, if any
	Body           []byte // an api.InvokeRequest; empty means {}
	// Kind is the audit record's kind ("invocation" if empty); Note is
	// added to the record as its reason (the MCP endpoint names the
	// session and method there).
	Kind, Note string
	// Agent, when set, is an agent the kernel itself vouches for (the
	// sandbox runs it, internal/sandbox; the MCP endpoint verified an
	// access token naming it): Token is then not used, and the agent must
	// still be registered and active. Never set from a request.
	Agent string
	// User, when set, is the user the agent acts for, from a credential
	// the kernel verified (an OIDC access token's sub, of UserIssuer). The
	// decision sees it as context.user {id, issuer}, a key the kernel owns:
	// a caller's own context.user is dropped. Never set from a request.
	User, UserIssuer string
	// Origin marks where the call came from in its audit record
	// ("sandbox"); empty for the HTTP API.
	Origin string
}

// Reply is the gateway's answer. Exactly one of Resp and Err is set, unless
// Forward is: then the server sends the call to the leader unchanged (the
// invocation needs a replicated write and this node is not the leader).
type Reply struct {
	Status  int
	Resp    *api.InvokeResponse
	Err     *api.ErrorDetail
	Forward bool
}

func fail(status int, code, msg string) Reply {
	return Reply{Status: status, Err: &api.ErrorDetail{Code: code, Message: msg}}
}

// invocation carries one call through the pipeline.
type invocation struct {
	g       *Gateway
	start   time.Time
	agent   api.Agent
	entry   *entry
	req     api.InvokeRequest
	input   map[string]any
	check   *api.CheckRequest
	dec     api.Decision
	obl     api.Obligations
	red     *redaction // nil until the obligations are known
	resp    api.InvokeResponse
	idemKey string
	claimed bool
	kind    string // audit record kind; "" is "invocation"
	note    string
	origin  string
	user    map[string]any // context.user; nil: none
}

// MaxInvokeBody bounds an invocation's body.
const MaxInvokeBody = 1 << 20

// Invoke runs one invocation through the pipeline; see the package comment.
func (g *Gateway) Invoke(ctx context.Context, c Call) Reply {
	start := time.Now()
	var agent api.Agent
	var ok bool
	if c.Agent != "" {
		agent, ok = g.cfg.Store.Agent(c.Agent)
	} else {
		agent, ok = g.cfg.Store.AgentByToken(c.Token)
		ok = ok && c.Token != ""
	}
	if !ok {
		g.metrics.rejected.WithLabelValues(CodeUnauthenticated).Inc()
		return fail(http.StatusUnauthorized, CodeUnauthenticated, "no valid agent credential: send the token issued at registration as 'Authorization: Bearer aibos_...'")
	}
	if agent.State != api.AgentActive {
		return fail(http.StatusUnauthorized, CodeUnauthenticated, fmt.Sprintf("agent %q is %s", agent.ID, agent.State))
	}
	e := g.catalog().actions[c.Action]
	if e == nil {
		g.metrics.rejected.WithLabelValues(CodeUnknownAction).Inc()
		return fail(http.StatusNotFound, CodeUnknownAction, fmt.Sprintf("no action %q in the catalog: list them with GET /v1/actions", c.Action))
	}
	if !slices.ContainsFunc(agent.Capabilities, func(p string) bool { return policy.MatchPattern(p, c.Action) }) {
		g.metrics.rejected.WithLabelValues(CodeCapability).Inc()
		return fail(http.StatusForbidden, CodeCapability, fmt.Sprintf("agent %q did not declare a capability for %q (its capabilities: %s); register a new version of the agent with it", agent.ID, c.Action, strings.Join(agent.Capabilities, ", ")))
	}
	in := &invocation{g: g, start: start, agent: agent, entry: e, kind: c.Kind, note: c.Note, origin: c.Origin}
	if c.User != "" {
		in.user = map[string]any{"id": c.User, "issuer": c.UserIssuer}
	}
	in.resp = api.InvokeResponse{InvocationID: NewID("inv_"), Action: c.Action, Agent: agent.ID}
	if k := g.killFor(&agent, c.Action); k != nil {
		in.resp.Status, in.resp.Decision = api.InvocationDenied, api.Deny
		return in.finish(ctx, http.StatusForbidden, CodeKilled, fmt.Sprintf("stopped by kill switch %s (%s %s): %s", k.ID, k.Scope, k.Target, k.Reason))
	}
	if r, ok := in.decode(c.Body); !ok {
		return r
	}
	// Decide. The subject is the registered agent: the engine reads its
	// properties from the registry, so nothing the caller sends can change
	// who it is.
	in.dec = g.cfg.Decide(in.check)
	in.resp.Decision, in.resp.Version, in.resp.Reasons = in.dec.Decision, in.dec.Version, in.dec.Reasons
	in.obl = engine.MergeObligations(in.dec.Obligations, e.def.Obligations)
	in.red = newRedaction(in.obl.Redact, in.req.Input)

	needsLeader := e.leader || in.req.ApprovalID != "" || in.dec.Decision == api.RequireApproval
	if needsLeader && !g.cfg.Store.IsLeader() && in.dec.Decision != api.Deny {
		return Reply{Forward: true}
	}
	if c.IdempotencyKey != "" {
		if r, done := in.claim(ctx, c.IdempotencyKey); done {
			return r
		}
	}
	switch in.dec.Decision {
	case api.Deny:
		in.resp.Status = api.InvocationDenied
		return in.finish(ctx, http.StatusForbidden, CodeDenied, denyMessage(in.dec))
	case api.RequireApproval:
		if in.req.ApprovalID == "" {
			return in.hold(ctx)
		}
		if in.redeemable() {
			// Consumed once the limits let the call run (run).
			in.resp.ApprovalID = in.req.ApprovalID
			return in.run(ctx, true)
		}
		// The store's answer is the refusal, and voids an approval
		// presented with other arguments. Should it succeed after all
		// (this replica was behind), the call is metered after the
		// consume, as every redeem used to be.
		if r, ok := in.redeem(ctx); !ok {
			return r
		}
	}
	return in.run(ctx, false)
}

// decode reads the body, validates the input and builds the check request.
func (in *invocation) decode(body []byte) (Reply, bool) {
	if len(bytes.TrimSpace(body)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in.req); err != nil {
			return fail(http.StatusBadRequest, CodeBadRequest, "invalid invocation body: "+err.Error()+" (want {\"input\": {...}, \"resource\"?, \"context\"?, \"approval_id\"?})"), false
		}
		if dec.More() {
			return fail(http.StatusBadRequest, CodeBadRequest, "invalid invocation body: unexpected data after the JSON object"), false
		}
	}
	raw := bytes.TrimSpace(in.req.Input)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		raw = []byte("{}")
	}
	if raw[0] != '{' {
		return fail(http.StatusUnprocessableEntity, CodeInvalidInput, "input must be a JSON object"), false
	}
	in.req.Input = raw
	if s := in.entry.schema; s != nil {
		if errs := s.ValidateJSON(raw); len(errs) > 0 {
			msgs := make([]string, len(errs))
			for i, e := range errs {
				msgs[i] = e.Error()
			}
			r := fail(http.StatusUnprocessableEntity, CodeInvalidInput, fmt.Sprintf("input of %s does not match its schema: %s", in.entry.def.Name, strings.Join(msgs, "; ")))
			in.g.metrics.rejected.WithLabelValues(CodeInvalidInput).Inc()
			return r, false
		}
	}
	digest, err := jcs.Digest(raw)
	if err != nil {
		return fail(http.StatusUnprocessableEntity, CodeInvalidInput, "input: "+err.Error()), false
	}
	in.resp.ArgsDigest = digest
	if err := json.Unmarshal(raw, &in.input); err != nil {
		return fail(http.StatusUnprocessableEntity, CodeInvalidInput, "input: "+err.Error()), false
	}
	cost, err := costOf(in.entry.def.Cost, in.input)
	if err != nil {
		return fail(http.StatusUnprocessableEntity, CodeInvalidInput, err.Error()), false
	}
	in.resp.Cost = cost

	// The check request is built as JSON and decoded by the same decoder as
	// POST /v1/check, so its bounds (collection sizes, nesting) and number
	// representation are the ones the engine's cost bound assumes.
	ctxMap := make(map[string]any, len(in.req.Context)+2)
	for k, v := range in.req.Context {
		ctxMap[k] = v
	}
	ctxMap["input"] = json.RawMessage(raw)
	ctxMap["action"] = map[string]any{"risk": in.entry.def.Risk, "cost": cost, "orchestra": in.entry.orchestra}
	delete(ctxMap, "user")
	if in.user != nil {
		ctxMap["user"] = in.user
	}
	res := api.Entity{Type: "action", ID: in.entry.def.Name}
	if in.req.Resource != nil {
		res = *in.req.Resource
	}
	b, err := json.Marshal(map[string]any{
		"subject":  api.Entity{Type: api.EntityTypeAgent, ID: in.agent.ID},
		"action":   api.Action{Name: in.entry.def.Name},
		"resource": res,
		"context":  ctxMap,
	})
	if err == nil {
		in.check, err = api.DecodeCheckRequest(b)
	}
	if err != nil {
		return fail(http.StatusBadRequest, CodeBadRequest, "invocation: "+err.Error()), false
	}
	return Reply{}, true
}

// costOf is the cost model applied to the input.
func costOf(m *api.CostModel, input map[string]any) (float64, error) {
	if m == nil {
		return 0, nil
	}
	cost := m.Fixed
	if m.Field != "" {
		v, ok := lookupPath(input, m.Field)
		n, isNum := v.(float64)
		if !ok || !isNum || n < 0 || math.IsInf(n, 0) {
			return 0, fmt.Errorf("input.%s must be a non-negative number: the action's cost is read from it", m.Field)
		}
		cost += n
	}
	return cost, nil
}

func lookupPath(m map[string]any, path string) (any, bool) {
	var cur any = m
	for _, seg := range strings.Split(path, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = mm[seg]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func denyMessage(d api.Decision) string {
	var parts []string
	for _, r := range d.Reasons {
		s := r.Message
		if r.Policy != "" {
			s = strings.TrimSpace(r.Policy + "/" + r.Rule + ": " + r.Message)
		}
		if s != "" {
			parts = append(parts, s)
		}
	}
	if len(parts) == 0 {
		return "denied by policy"
	}
	return "denied by policy: " + strings.Join(parts, "; ")
}

// claim takes the idempotency key. done: the reply is final (a replay, a
// call in progress, a key reused with other arguments, or no counter store).
func (in *invocation) claim(ctx context.Context, key string) (Reply, bool) {
	g := in.g
	// The approval redeemed is part of the key: the call that redeems an
	// approval may reuse the key of the call that asked for it.
	in.idemKey = "idem|" + in.agent.ID + "|" + in.entry.def.Name + "|" + key + "|" + in.req.ApprovalID
	cl, err := g.cfg.Counter.Claim(ctx, in.idemKey, g.cfg.IdempotencyTTL)
	switch {
	case err != nil:
		return fail(http.StatusServiceUnavailable, CodeCounterDown, "idempotency store: "+err.Error()), true
	case cl.InProgress:
		return fail(http.StatusConflict, CodeIdemInProgress, "a call with idempotency key "+key+" is still running: retry later to get its answer"), true
	case !cl.Claimed:
		var st storedReply
		if err := json.Unmarshal(cl.Response, &st); err != nil || st.Resp == nil {
			return fail(http.StatusInternalServerError, CodeUnavailable, "the stored answer of idempotency key "+key+" is unreadable"), true
		}
		if st.Resp.ArgsDigest != in.resp.ArgsDigest {
			return fail(http.StatusUnprocessableEntity, CodeIdemMismatch, "idempotency key "+key+" was used for other arguments ("+st.Resp.ArgsDigest+"): use a new key for a new call"), true
		}
		st.Resp.Replayed = true
		g.metrics.replays.Inc()
		return Reply{Status: st.Status, Resp: st.Resp}, true
	}
	in.claimed = true
	return Reply{}, false
}

// storedReply is what an idempotency key remembers.
type storedReply struct {
	Status int                 `json:"status"`
	Resp   *api.InvokeResponse `json:"resp"`
}

// hold creates an approval and answers 202.
func (in *invocation) hold(ctx context.Context) Reply {
	g := in.g
	now := g.now()
	pending := 0
	for _, a := range g.cfg.Store.Approvals() {
		if a.Agent == in.agent.ID && a.State == api.ApprovalPending && now.Before(a.ExpiresAt) {
			pending++
		}
	}
	if pending >= g.cfg.MaxPendingApprovals {
		in.release(ctx)
		in.resp.Status = api.InvocationDenied
		return in.finish(ctx, http.StatusTooManyRequests, CodeTooManyApprovals,
			fmt.Sprintf("agent %q already has %d approvals waiting for a decision (at most %d): wait for them to be decided or to expire", in.agent.ID, pending, g.cfg.MaxPendingApprovals))
	}
	if r, refused := in.refuseUnfit(ctx); refused {
		return r
	}
	a := api.Approval{
		ID: NewID("apv_"), Agent: in.agent.ID, AgentVersion: in.agent.Version, Tenant: in.agent.Tenant,
		Action: in.entry.def.Name, ArgsDigest: in.approvalDigest(), Input: in.red.input(in.req.Input),
		Reasons: in.dec.Reasons, Approvers: in.obl.Approvers, State: api.ApprovalPending,
		CreatedAt: now, ExpiresAt: now.Add(g.cfg.ApprovalTTL), InvocationID: in.resp.InvocationID,
	}
	if _, err := g.cfg.Store.CreateApproval(ctx, a); err != nil {
		if errors.Is(err, store.ErrKilled) {
			// A kill switch applied since the check at the start.
			in.resp.Status, in.resp.Decision = api.InvocationDenied, api.Deny
			return in.finish(ctx, http.StatusForbidden, CodeKilled, err.Error())
		}
		in.release(ctx)
		return fail(http.StatusServiceUnavailable, CodeUnavailable, "could not create the approval: "+err.Error())
	}
	in.resp.Status, in.resp.ApprovalID = api.InvocationPendingApproval, a.ID
	g.metrics.approvals.WithLabelValues("requested").Inc()
	return in.finish(ctx, http.StatusAccepted, "", "")
}

// refuseUnfit refuses to hold a call that cannot fit its budget now: an
// approver's yes could not make it run. The budget is read, not reserved
// (a held call may be denied or never redeemed); the redeem reserves it,
// so spending between the two can still refuse the redeem, which then
// leaves the approval approved. As for the cap on pending approvals, the
// idempotency key is released: after the window resets the call may ask
// again.
func (in *invocation) refuseUnfit(ctx context.Context) (Reply, bool) {
	bu := in.obl.Budget
	if bu == nil || in.resp.Cost <= 0 {
		return Reply{}, false
	}
	g := in.g
	per, now := time.Duration(bu.Per), g.now()
	var msg string
	if in.resp.Cost > bu.Limit {
		msg = fmt.Sprintf("this call costs %g, more than the whole budget of %g per %s (key %s): it could never run, so it was not held for approval",
			in.resp.Cost, bu.Limit, per, keyLabel(bu.Key))
	} else {
		used, err := g.cfg.Counter.Usage(ctx, budgetKey(bu, in), per, now)
		if err != nil {
			in.release(ctx)
			return fail(http.StatusServiceUnavailable, CodeCounterDown, "budget: "+err.Error()), true
		}
		if used+in.resp.Cost <= bu.Limit {
			return Reply{}, false
		}
		msg = fmt.Sprintf("budget of %g per %s exhausted (key %s): %g used, this call costs %g; it could not run if approved, so it was not held for approval: ask again after the window resets at %s",
			bu.Limit, per, keyLabel(bu.Key), used, in.resp.Cost, limits.ResetAt(now, per).UTC().Format(time.RFC3339))
	}
	in.release(ctx)
	in.resp.Status = api.InvocationDenied
	return in.finish(ctx, http.StatusTooManyRequests, CodeBudget, msg), true
}

// redeemable tells whether the approval named in the request is, as this
// node's replica sees it, approved for exactly this agent, version, action
// and arguments, and not expired: whether redeem should succeed. The
// leader's replica has every decision it acknowledged.
func (in *invocation) redeemable() bool {
	a, ok := in.g.cfg.Store.Approval(in.req.ApprovalID)
	return ok && store.EffectiveApprovalState(a, in.g.now()) == api.ApprovalApproved &&
		a.Agent == in.agent.ID && a.AgentVersion == in.agent.Version &&
		a.Action == in.entry.def.Name && a.ArgsDigest == in.approvalDigest()
}

// approvalDigest is the digest an approval of this call is bound to: the
// arguments', and for a call on behalf of a user, the user's too.
func (in *invocation) approvalDigest() string {
	if in.user == nil {
		return in.resp.ArgsDigest
	}
	iss, _ := in.user["issuer"].(string)
	sub, _ := in.user["id"].(string)
	return ApprovalDigest(in.resp.ArgsDigest, iss, sub)
}

// ApprovalDigest binds an approval of a call an agent makes on behalf of
// a user (Call.User) to that user as well as to the arguments: SHA-256 of
// the arguments' digest, the issuer and the user, NUL-separated, as hex.
// An approval of the call for one user is never redeemed for another.
func ApprovalDigest(argsDigest, issuer, user string) string {
	if user == "" {
		return argsDigest
	}
	sum := sha256.Sum256([]byte(argsDigest + "\x00" + issuer + "\x00" + user))
	return hex.EncodeToString(sum[:])
}

// redeem consumes the approval named in the request. ok: it was approved
// for exactly this agent, version, action and arguments, and is now spent.
func (in *invocation) redeem(ctx context.Context) (Reply, bool) {
	g := in.g
	_, err := g.cfg.Store.ConsumeApproval(ctx, in.req.ApprovalID, in.agent.ID, in.agent.Version, in.entry.def.Name, in.approvalDigest(), in.resp.InvocationID, g.now())
	in.resp.ApprovalID = in.req.ApprovalID
	if err == nil {
		g.metrics.approvals.WithLabelValues("redeemed").Inc()
		return Reply{}, true
	}
	in.resp.Status = api.InvocationDenied
	status, code := http.StatusConflict, CodeApproval
	switch {
	case errors.Is(err, store.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, store.ErrApprovalExpired):
		status, code = http.StatusGone, CodeApprovalExpired
	case errors.Is(err, store.ErrApprovalVoided):
		code = CodeApprovalVoided
		g.metrics.approvals.WithLabelValues("voided").Inc()
	case errors.Is(err, store.ErrApprovalState):
	default:
		in.release(ctx)
		return fail(http.StatusServiceUnavailable, CodeUnavailable, "could not redeem the approval: "+err.Error()), false
	}
	return in.finish(ctx, status, code, err.Error()), false
}

// run meters, performs, records and answers an allowed invocation. With
// redeem, the approval in the request is consumed after the rate limit
// and budget let the call through and before it runs: a call the limits
// refuse leaves its approval approved for a retry, and Raft still lets
// only one of concurrent redeems run (the others give their reservation
// back; their rate-limit count stands, as for any call that was made).
func (in *invocation) run(ctx context.Context, redeem bool) Reply {
	g := in.g
	if rl := in.obl.RateLimit; rl != nil {
		key := "rl|" + limitKey(rl.Key, rl.Per, float64(rl.Limit), in)
		res, err := g.cfg.Counter.Allow(ctx, key, int64(rl.Limit), time.Duration(rl.Per), g.now())
		if err != nil {
			in.release(ctx)
			return fail(http.StatusServiceUnavailable, CodeCounterDown, "rate limit: "+err.Error())
		}
		if !res.Allowed {
			// Not run: a retry with the same idempotency key may run later.
			in.release(ctx)
			in.resp.Status = api.InvocationDenied
			return in.finish(ctx, http.StatusTooManyRequests, CodeRateLimited,
				fmt.Sprintf("rate limit of %d per %s reached (key %s); the window resets at %s", rl.Limit, time.Duration(rl.Per), keyLabel(rl.Key), res.ResetAt.UTC().Format(time.RFC3339)))
		}
	}
	var resv *limits.Reservation
	var warning string
	if bu := in.obl.Budget; bu != nil && in.resp.Cost > 0 {
		r, res, err := g.cfg.Counter.Reserve(ctx, budgetKey(bu, in), in.resp.Cost, bu.Limit, time.Duration(bu.Per), g.now())
		if err != nil {
			in.release(ctx)
			return fail(http.StatusServiceUnavailable, CodeCounterDown, "budget: "+err.Error())
		}
		if !res.Allowed {
			in.release(ctx)
			in.resp.Status = api.InvocationDenied
			return in.finish(ctx, http.StatusTooManyRequests, CodeBudget,
				fmt.Sprintf("budget of %g per %s exhausted (key %s): %g used, this call costs %g; the window resets at %s", bu.Limit, time.Duration(bu.Per), keyLabel(bu.Key), res.Used, in.resp.Cost, res.ResetAt.UTC().Format(time.RFC3339)))
		}
		resv = &r
		if limits.Crossed(res.Used-in.resp.Cost, res.Used, bu.Limit, g.cfg.SoftThreshold) {
			warning = fmt.Sprintf("budget %s: %g of %g per %s used (over %.0f%%)", keyLabel(bu.Key), res.Used, bu.Limit, time.Duration(bu.Per), g.cfg.SoftThreshold*100)
		}
	}
	if redeem {
		if r, ok := in.redeem(ctx); !ok {
			if resv != nil {
				in.settle(ctx, *resv, 0)
			}
			return r
		}
	}
	if warning != "" {
		in.resp.Warnings = append(in.resp.Warnings, warning)
		g.metrics.budgetWarnings.Inc()
		g.log.Warn("budget threshold crossed", "agent", in.agent.ID, "action", in.entry.def.Name, "warning", warning)
		g.cfg.Audit.Append(&audit.Record{Time: g.now(), Node: g.cfg.Node, Kind: audit.KindBudgetWarning, Agent: in.agent.ID,
			Tenant: in.agent.Tenant, Action: in.entry.def.Name, InvocationID: in.resp.InvocationID, Reason: warning})
	}

	result, actual, status, code, msg := in.perform(ctx)
	if resv != nil {
		in.settle(ctx, *resv, actual)
		if status == http.StatusOK {
			in.resp.Cost = actual
			g.stats.budget(in.agent.ID, in.entry.def.Name, actual)
			g.metrics.budgetUsed.WithLabelValues(g.metrics.pair(in.agent.ID, in.entry.def.Name)...).Add(actual)
		}
	}
	if status == http.StatusOK {
		in.resp.Status = api.InvocationCompleted
		in.resp.Result = in.red.result(result)
		return in.finish(ctx, status, "", "")
	}
	if code == CodeCancelled {
		in.resp.Status = api.InvocationCancelled
	} else {
		in.resp.Status = api.InvocationFailed
	}
	return in.finish(ctx, status, code, msg)
}

// settle settles a budget reservation to the actual cost (0: the call did
// not run).
func (in *invocation) settle(ctx context.Context, r limits.Reservation, actual float64) {
	if err := in.g.cfg.Counter.Settle(context.WithoutCancel(ctx), r, actual); err != nil {
		in.g.log.Error("budget settle failed; the reservation stands", "key", r.Key, "err", err)
	}
}

// budgetKey names the counter of a budget.
func budgetKey(bu *api.Budget, in *invocation) string {
	return "bu|" + limitKey(bu.Key, bu.Per, bu.Limit, in)
}

// limitKey names the counter of a limit: its key path's value for this
// invocation, and the limit's shape, so rules with different limits on the
// same key count apart.
func limitKey(path string, per api.Duration, limit float64, in *invocation) string {
	return fmt.Sprintf("%s=%s|%d|%g", keyLabel(path), keyValue(path, in), int64(per), limit)
}

func keyLabel(path string) string {
	if path == "" {
		return "*"
	}
	return path
}

// keyValue resolves a limit's key path (policy.ValidateKey's syntax) for
// an invocation. Subject properties come from the registry.
func keyValue(path string, in *invocation) string {
	if path == "" {
		return "*"
	}
	root, rest, _ := strings.Cut(path, ".")
	var v any
	switch root {
	case "subject":
		if rest == "id" {
			return in.agent.ID
		}
		if p, ok := strings.CutPrefix(rest, "properties."); ok {
			v, _ = lookupPath(in.agent.Properties(), p)
		}
	case "action":
		return in.entry.def.Name
	case "resource":
		if rest == "id" {
			return in.check.Resource.ID
		}
		if rest == "type" {
			return in.check.Resource.Type
		}
		if p, ok := strings.CutPrefix(rest, "properties."); ok {
			v, _ = lookupPath(in.check.Resource.Properties, p)
		}
	case "context":
		v, _ = lookupPath(in.check.Context, rest)
	}
	if v == nil {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// release forgets the idempotency claim of a call that did not run, so a
// retry can.
func (in *invocation) release(ctx context.Context) {
	if !in.claimed {
		return
	}
	in.claimed = false
	if err := in.g.cfg.Counter.Release(context.WithoutCancel(ctx), in.idemKey); err != nil {
		in.g.log.Error("idempotency release failed", "key", in.idemKey, "err", err)
	}
}

// finish records the invocation durably, stores the answer under the
// idempotency key and builds the reply. code and msg describe a refusal or
// failure ("" for success or a hold).
func (in *invocation) finish(ctx context.Context, status int, code, msg string) Reply {
	g := in.g
	if code != "" {
		// A backend's error may quote the call's input.
		in.resp.Error = &api.ErrorDetail{Code: code, Message: in.red.text(msg)}
	}
	in.resp.DurationMS = time.Since(in.start).Milliseconds()
	rec := in.record()
	if _, err := g.cfg.Audit.AppendSync(context.WithoutCancel(ctx), rec); err != nil {
		// The invocation may have run; without its record it is not
		// acknowledged. Keep the idempotency claim so a retry does not run
		// it again blind.
		g.log.Error("audit append failed", "invocation", in.resp.InvocationID, "err", err)
		return fail(http.StatusInternalServerError, CodeAudit, "the invocation could not be recorded in the audit log ("+err.Error()+"); it is not acknowledged: check the audit log before retrying")
	}
	if in.claimed {
		b, _ := json.Marshal(storedReply{Status: status, Resp: &in.resp})
		if err := g.cfg.Counter.Complete(context.WithoutCancel(ctx), in.idemKey, b, g.cfg.IdempotencyTTL); err != nil {
			g.log.Error("idempotency complete failed", "key", in.idemKey, "err", err)
		}
	}
	g.observe(in, code)
	resp := in.resp
	return Reply{Status: status, Resp: &resp}
}

// record is the audit record of the invocation.
func (in *invocation) record() *audit.Record {
	r := &audit.Record{
		Time: in.g.now(), Node: in.g.cfg.Node, Kind: cmp.Or(in.kind, "invocation"), Reason: in.note,
		Agent: in.agent.ID, AgentVersion: in.agent.Version, Tenant: in.agent.Tenant,
		Subject: api.EntityTypeAgent + ":" + in.agent.ID, Action: in.entry.def.Name,
		Decision: string(in.resp.Decision), Version: in.resp.Version,
		InvocationID: in.resp.InvocationID, ApprovalID: in.resp.ApprovalID, Status: in.resp.Status,
		Cost: in.resp.Cost, DurationNS: int64(time.Since(in.start)), ArgsDigest: in.resp.ArgsDigest,
		Origin: in.origin,
	}
	if in.user != nil {
		r.User, _ = in.user["id"].(string)
	}
	if in.check != nil {
		r.Resource = in.check.Resource.Type + ":" + in.check.Resource.ID
	}
	for _, rs := range in.resp.Reasons {
		if rs.Policy != "" {
			r.Rules = append(r.Rules, rs.Policy+"/"+rs.Rule)
		}
	}
	if in.resp.Error != nil {
		r.Error = in.resp.Error.Code + ": " + in.resp.Error.Message
	}
	if in.obl.Audit == "full" {
		// After the result: values hidden in it are hidden in the input too.
		r.Args = in.red.input(in.req.Input)
		r.Result = in.resp.Result // already redacted
		r.Redacted = slices.Clone(in.obl.Redact)
	}
	return r
}
