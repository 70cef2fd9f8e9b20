package gateway_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
)

// A call that cannot fit the budget is refused when it asks for approval,
// not held for an approver whose yes could never make it run.
func TestHoldRefusedWhenBudgetCannotFit(t *testing.T) {
	e, pb := startPay(t, nil)
	none := client.InvokeOptions{}
	if st, _, code := e.invoke(0, "cashier", "pay.spend", `{"amount":49}`, none, ""); st != http.StatusOK {
		t.Fatalf("spend 49: %d %s", st, code)
	}
	for _, tc := range []struct {
		name, input, want string
	}{
		{"more than is left", `{"amount":60}`, "49 used"},
		{"more than the whole budget", `{"amount":150}`, "more than the whole budget"},
	} {
		st, resp, code := e.invoke(0, "cashier", "pay.payout", tc.input, none, "")
		if st != http.StatusTooManyRequests || code != "budget_exhausted" || resp.ApprovalID != "" || resp.Status != api.InvocationDenied {
			t.Errorf("%s: hold got %d %s %+v, want 429 budget_exhausted and no approval", tc.name, st, code, resp)
			continue
		}
		if msg := resp.Error.Message; !strings.Contains(msg, tc.want) || !strings.Contains(msg, "not held") {
			t.Errorf("%s: message %q does not say %q and that the call was not held", tc.name, msg, tc.want)
		}
	}
	if as := mustApprovals(t, e); len(as) != 0 {
		t.Errorf("approvals created for calls that cannot fit: %+v", as)
	}
	// What fits is held as before.
	if st, resp, code := e.invoke(0, "cashier", "pay.payout", `{"amount":51}`, none, ""); st != http.StatusAccepted || resp.ApprovalID == "" {
		t.Errorf("hold of what fits: %d %s %+v", st, code, resp)
	}
	if n := pb.count("pay.payout"); n != 0 {
		t.Errorf("backend ran %d payouts", n)
	}
}

// A budget refusal at redeem time does not use the approval up: it stays
// approved, and once the budget has room the same approval runs, once.
func TestBudgetRefusalKeepsApproval(t *testing.T) {
	e, pb := startPay(t, nil)
	ctx := context.Background()
	none := client.InvokeOptions{}
	if st, _, code := e.invoke(0, "cashier", "pay.spend", `{"amount":49}`, none, ""); st != http.StatusOK {
		t.Fatalf("spend 49: %d %s", st, code)
	}
	st, held, code := e.invoke(0, "cashier", "pay.payout", `{"amount":40}`, none, "")
	if st != http.StatusAccepted {
		t.Fatalf("hold of 40 (49 used of 100): %d %s", st, code)
	}
	if _, err := e.as("alice").Approve(ctx, held.ApprovalID, "alice", "ok"); err != nil {
		t.Fatal(err)
	}
	// A slow spend of 20 holds its reservation while it runs: 69 of 100.
	slow := make(chan int, 1)
	go func() {
		st, _, _ := e.invoke(0, "cashier", "pay.slow", `{"amount":20}`, none, "")
		slow <- st
	}()
	<-pb.entered

	// The agent redeems with an idempotency key, as aibos invoke --wait
	// does: a refusal that did not run is not replayed to its retry.
	key := client.InvokeOptions{IdempotencyKey: "payout-1"}
	st, resp, code := e.invoke(0, "cashier", "pay.payout", `{"amount":40}`, key, held.ApprovalID)
	if st != http.StatusTooManyRequests || code != "budget_exhausted" {
		t.Fatalf("redeem past the budget: %d %s %+v", st, code, resp)
	}
	if a, err := e.c.Approval(ctx, held.ApprovalID, 0); err != nil || a.State != api.ApprovalApproved {
		t.Fatalf("approval after a budget refusal: %+v %v, want it still approved", a, err)
	}

	// The slow spend fails, its reservation is released: 49 of 100.
	pb.unblock()
	if st := <-slow; st != http.StatusBadGateway {
		t.Fatalf("slow spend: %d, want 502", st)
	}
	st, resp, code = e.invoke(0, "cashier", "pay.payout", `{"amount":40}`, key, held.ApprovalID)
	if st != http.StatusOK || resp.Status != api.InvocationCompleted || resp.Replayed {
		t.Fatalf("redeem once the budget has room: %d %s %+v", st, code, resp)
	}
	if st, again, _ := e.invoke(0, "cashier", "pay.payout", `{"amount":40}`, key, held.ApprovalID); st != http.StatusOK || !again.Replayed || again.InvocationID != resp.InvocationID {
		t.Fatalf("repeat with the key: %d %+v, want the stored answer", st, again)
	}
	if a, err := e.c.Approval(ctx, held.ApprovalID, 0); err != nil || a.State != api.ApprovalConsumed || a.ConsumedBy != resp.InvocationID {
		t.Fatalf("approval after the run: %+v %v", a, err)
	}
	if st, _, code := e.invoke(0, "cashier", "pay.payout", `{"amount":40}`, none, held.ApprovalID); st != http.StatusConflict || code != "approval_invalid" {
		t.Fatalf("redeem after the run: %d %s", st, code)
	}
	if n := pb.count("pay.payout"); n != 1 {
		t.Fatalf("backend ran %d payouts, want 1", n)
	}
	// 89 used: the refused redeem left no reservation behind.
	if st, _, code := e.invoke(0, "cashier", "pay.spend", `{"amount":12}`, none, ""); st != http.StatusTooManyRequests {
		t.Fatalf("spend of 12 with 89 used: %d %s", st, code)
	}
	if st, _, code := e.invoke(0, "cashier", "pay.spend", `{"amount":11}`, none, ""); st != http.StatusOK {
		t.Fatalf("spend of 11 with 89 used: %d %s", st, code)
	}
}

// Concurrent redeems of one approval: the action runs once, and the
// losers' budget reservations are released.
func TestConcurrentRedeemsRunOnce(t *testing.T) {
	e, pb := startPay(t, nil)
	ctx := context.Background()
	none := client.InvokeOptions{}
	st, held, code := e.invoke(0, "cashier", "pay.payout", `{"amount":30}`, none, "")
	if st != http.StatusAccepted {
		t.Fatalf("hold: %d %s", st, code)
	}
	if _, err := e.as("alice").Approve(ctx, held.ApprovalID, "alice", "ok"); err != nil {
		t.Fatal(err)
	}
	const n = 8
	var wg sync.WaitGroup
	sts, codes := make([]int, n), make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sts[i], _, codes[i] = e.invoke(0, "cashier", "pay.payout", `{"amount":30}`, none, held.ApprovalID)
		}()
	}
	wg.Wait()
	ran := 0
	for i := range n {
		switch {
		case sts[i] == http.StatusOK:
			ran++
		case sts[i] == http.StatusConflict && codes[i] == "approval_invalid":
		case sts[i] == http.StatusTooManyRequests && codes[i] == "budget_exhausted":
			// Saw the others' reservations in flight.
		default:
			t.Errorf("redeem %d: %d %s", i, sts[i], codes[i])
		}
	}
	if ran != 1 || pb.count("pay.payout") != 1 {
		t.Fatalf("%d redeems ran, the backend saw %d payouts; want 1 and 1 (%v %v)", ran, pb.count("pay.payout"), sts, codes)
	}
	// 30 used: exactly 70 is left.
	if st, _, code := e.invoke(0, "cashier", "pay.spend", `{"amount":70}`, none, ""); st != http.StatusOK {
		t.Fatalf("spend of the 70 left: %d %s", st, code)
	}
	if st, _, code := e.invoke(0, "cashier", "pay.spend", `{"amount":1}`, none, ""); st != http.StatusTooManyRequests {
		t.Fatalf("spend past the budget: %d %s", st, code)
	}
}

// A call the rate limit refuses did not run: its idempotency key is
// released, so a retry with the same key is decided again instead of
// being answered the stored 429 for a day.
func TestRefusedByLimitsNotReplayed(t *testing.T) {
	e := startOne(t, nil)
	for i := range 5 {
		if st, _, code := e.invoke(0, "clerk", "crm.ping", `{}`, client.InvokeOptions{}, ""); st != http.StatusOK {
			t.Fatalf("ping %d: %d %s", i, st, code)
		}
	}
	key := client.InvokeOptions{IdempotencyKey: "ping-6"}
	st, first, code := e.invoke(0, "clerk", "crm.ping", `{}`, key, "")
	if st != http.StatusTooManyRequests || code != "rate_limited" {
		t.Fatalf("6th ping: %d %s", st, code)
	}
	st, again, code := e.invoke(0, "clerk", "crm.ping", `{}`, key, "")
	if st != http.StatusTooManyRequests || code != "rate_limited" || again.Replayed || again.InvocationID == first.InvocationID {
		t.Fatalf("retry with the key: %d %s %+v, want a new refusal, not the stored one", st, code, again)
	}
}
