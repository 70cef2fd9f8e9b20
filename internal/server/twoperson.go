package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/audit"
	"github.com/aibos/kernel/internal/auth"
	"github.com/aibos/kernel/internal/gateway"
	"github.com/aibos/kernel/internal/policy"
	"github.com/aibos/kernel/internal/store"
)

// The two-person rule: a system rule that requires approval holds the
// operator's act as an approval (the gateway's machinery, bound to the
// principal, the action and the digest of the request) until a second,
// different principal approves it; then the same request sent again with
// the approval's id runs, once.

// headerApproval names the approval that lets a held act run.
const headerApproval = "X-Aibos-Approval"

const codeApprovalRequired = api.CodeApprovalRequired

// holdAct runs on the leader (it writes).
func (s *Server) holdAct(w http.ResponseWriter, r *http.Request, rt *route, p *auth.Principal, d api.Decision, inner http.HandlerFunc) {
	limit := s.cfg.MaxBodyBytes
	if rt.media == mediaBundle {
		limit = policy.MaxBundleSize
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		badRequest(w, describeJSONError(err))
		return
	}
	sum := sha256.Sum256([]byte(r.Method + " " + r.URL.RequestURI() + "\n" + string(body)))
	digest := "sha256:" + hex.EncodeToString(sum[:])
	now := s.now()
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.WriteTimeout)
	defer cancel()
	id := r.Header.Get(headerApproval)
	if id == "" {
		ttl := s.approvalTTL()
		input, _ := json.Marshal(map[string]string{"method": r.Method, "path": r.URL.RequestURI(), "body_digest": digest})
		var approvers []string
		if d.Obligations != nil {
			approvers = d.Obligations.Approvers
		}
		a, err := s.store.CreateApproval(ctx, api.Approval{
			ID: gateway.NewID("apv_"), Agent: p.Name, AgentVersion: store.KernelApproval, Action: rt.action,
			ArgsDigest: digest, Input: input, Reasons: d.Reasons, Approvers: approvers,
			State: api.ApprovalPending, CreatedAt: now, ExpiresAt: now.Add(ttl),
		})
		if err != nil {
			s.writeGatewayStoreError(w, err)
			return
		}
		rec := &audit.Record{Kind: KindAccess, Action: rt.action, Resource: r.Method + " " + r.URL.Path, Decision: string(api.RequireApproval),
			Status: "202", ApprovalID: a.ID, Subject: p.Kind + ":" + p.Name, By: p.Accessor, Reason: "source " + sourceAddr(r)}
		s.auditEvent(rec)
		writeJSON(w, http.StatusAccepted, map[string]any{
			"approval_id": a.ID, "expires_at": a.ExpiresAt,
			"error": api.ErrorDetail{Code: codeApprovalRequired, Message: fmt.Sprintf(
				"%s needs a second person (two-person rule): another principal approves it with `aibos approval approve %s`; then send the same request again with the header %s: %s",
				rt.action, a.ID, headerApproval, a.ID)},
		})
		return
	}
	a, err := s.store.ConsumeApproval(ctx, id, p.Name, store.KernelApproval, rt.action, digest, gateway.NewID("act_"), now)
	if err != nil {
		s.writeGatewayStoreError(w, err)
		return
	}
	if a.State != api.ApprovalConsumed {
		writeError(w, http.StatusConflict, codeConflict, fmt.Sprintf("approval %s does not hold this request (another principal, action or body): it is void now; ask again", id))
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	inner(w, r)
}
