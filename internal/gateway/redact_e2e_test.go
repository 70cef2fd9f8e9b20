package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/audit"
)

// With redact: [input.card_number] and audit: full, the card number shows
// nowhere: not in the answer, not in the audit record, not in a backend's
// error, not in the approval shown to approvers, not in a replayed answer,
// and not in any file the node wrote — even though the backend echoes its
// input into the result, inside a sentence and in its error body.
func TestRedactionCoversEchoedInput(t *testing.T) {
	const card = "4111111111111111"
	e, _ := startPay(t, nil)
	ctx := context.Background()
	input := `{"card_number":"` + card + `","amount":12,"memo":"pay with ` + card + ` please"}`
	noCard := func(what string, b []byte) {
		t.Helper()
		if bytes.Contains(b, []byte(card)) {
			t.Errorf("%s has the card number: %s", what, b)
		}
	}

	key := client.InvokeOptions{IdempotencyKey: "charge-1"}
	st, resp, code := e.invoke(0, "cashier", "pay.charge", input, key, "")
	if st != http.StatusOK || resp.Status != api.InvocationCompleted {
		t.Fatalf("charge: %d %s %+v", st, code, resp)
	}
	noCard("the answer's result", resp.Result)
	var res struct {
		OK   bool
		Note string
		Echo map[string]any
	}
	if err := json.Unmarshal(resp.Result, &res); err != nil {
		t.Fatalf("result %s: %v", resp.Result, err)
	}
	// Only the secret goes: the rest of what the backend said stays.
	if !res.OK || res.Note != "charged card [redacted]" || res.Echo["card_number"] != "[redacted]" ||
		res.Echo["amount"] != 12.0 || res.Echo["memo"] != "pay with [redacted] please" {
		t.Errorf("result %s: want the card number replaced and the rest kept", resp.Result)
	}
	recs, err := e.nodes[0].Audit.Query(audit.Filter{InvocationID: resp.InvocationID})
	if err != nil || len(recs) != 1 {
		t.Fatalf("audit records of %s: %+v %v", resp.InvocationID, recs, err)
	}
	noCard("the record's arguments", recs[0].Args)
	noCard("the record's result", recs[0].Result)
	if !bytes.Contains(recs[0].Args, []byte(`"amount":12`)) || !bytes.Contains(recs[0].Result, []byte(`"ok":true`)) {
		t.Errorf("audit: full record lost what was not redacted: args %s result %s", recs[0].Args, recs[0].Result)
	}
	// The stored answer of the idempotency key is the redacted one.
	st, replay, _ := e.invoke(0, "cashier", "pay.charge", input, key, "")
	if st != http.StatusOK || !replay.Replayed {
		t.Fatalf("replay: %d %+v", st, replay)
	}
	noCard("the replayed result", replay.Result)

	// A backend error that quotes the card number.
	st, resp, code = e.invoke(0, "cashier", "pay.decline", input, client.InvokeOptions{}, "")
	if st != http.StatusBadGateway || code != "backend_error" || resp.Error == nil {
		t.Fatalf("decline: %d %s %+v", st, code, resp)
	}
	noCard("the answer's error", []byte(resp.Error.Message))
	if !strings.Contains(resp.Error.Message, "card [redacted] declined") {
		t.Errorf("error %q: want the backend's message with the card number replaced", resp.Error.Message)
	}
	recs, err = e.nodes[0].Audit.Query(audit.Filter{InvocationID: resp.InvocationID})
	if err != nil || len(recs) != 1 {
		t.Fatalf("audit records of %s: %+v %v", resp.InvocationID, recs, err)
	}
	noCard("the record's error", []byte(recs[0].Error))

	// The approval shown to approvers: the memo quotes the number too.
	st, held, code := e.invoke(0, "cashier", "pay.refund", input, client.InvokeOptions{}, "")
	if st != http.StatusAccepted {
		t.Fatalf("refund: %d %s", st, code)
	}
	a, err := e.c.Approval(ctx, held.ApprovalID, 0)
	if err != nil {
		t.Fatal(err)
	}
	noCard("the approval's input", a.Input)
	var shown map[string]any
	if err := json.Unmarshal(a.Input, &shown); err != nil || shown["card_number"] != "[redacted]" || shown["amount"] != 12.0 {
		t.Errorf("approval input %s: %v", a.Input, err)
	}

	// Nothing the node wrote (audit log, Raft log and snapshots, counters
	// with stored answers) has it.
	dir := e.nodes[0].Config().DataDir
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if bytes.Contains(b, []byte(card)) {
			t.Errorf("%s (in the node's data directory) has the card number", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
