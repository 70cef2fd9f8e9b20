//go:build wasip1

// Command cost is an example sandboxed agent: every five minutes it reads
// the tenants' budgets through cost.budgets and asks to stop an agent that
// is over budget with cost.stop_agent, which policy holds for a human's
// approval. It keeps the approval id and redeems it on a later tick, once
// approved (waiting is a timer, never a blocked guest).
package main

import (
	"encoding/json"
	"time"

	"github.com/aibos/kernel/guest"
)

func main() {}

func init() {
	guest.Handle(func(t guest.Tick) error {
		defer guest.SetTimer("check", 5*time.Minute)
		res, err := guest.Invoke("cost.budgets", nil)
		if err != nil || res.Decision != "allow" {
			return err
		}
		var budgets []struct {
			Agent string  `json:"agent"`
			Used  float64 `json:"used"`
			Limit float64 `json:"limit"`
		}
		if err := json.Unmarshal(res.Result, &budgets); err != nil {
			return err
		}
		for _, b := range budgets {
			if b.Used <= b.Limit {
				continue
			}
			req := map[string]any{"input": map[string]any{"agent": b.Agent, "reason": "over budget"}}
			if id, err := guest.Get("approval:" + b.Agent); err == nil {
				req["approval_id"] = string(id)
			}
			body, _ := json.Marshal(req)
			r, err := guest.InvokeRaw("cost.stop_agent", body)
			if err != nil {
				return err
			}
			switch {
			case r.Status == "pending_approval":
				guest.Put("approval:"+b.Agent, []byte(r.ApprovalID))
			case r.Status == "completed":
				guest.Delete("approval:" + b.Agent)
			}
		}
		return nil
	})
}
