//go:build wasip1

// Command security is an example sandboxed agent: on every tick it reads
// the denied invocations in the audit log and quarantines (an agent kill
// switch, kernel.agent.quarantine) any agent with at least
// config.threshold of them. Policy lets only this agent quarantine.
package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/aibos/kernel/guest"
)

func main() {}

func init() {
	guest.Handle(func(t guest.Tick) error {
		defer guest.SetTimer("scan", 30*time.Second)
		threshold := 3.0
		if v, ok := t.Config["threshold"].(float64); ok {
			threshold = v
		}
		res, err := guest.Invoke("kernel.audit.query", map[string]any{"decision": "deny", "kind": "invocation", "limit": 200})
		if err != nil || res.Decision != "allow" {
			return err
		}
		var out struct {
			Records []struct {
				Agent string `json:"agent"`
			} `json:"records"`
		}
		if err := json.Unmarshal(res.Result, &out); err != nil {
			return err
		}
		denials := map[string]int{}
		for _, r := range out.Records {
			denials[r.Agent]++
		}
		for agent, n := range denials {
			if agent == "security" || float64(n) < threshold {
				continue
			}
			if _, err := guest.Get("quarantined:" + agent); err == nil {
				continue
			}
			r, err := guest.Invoke("kernel.agent.quarantine", map[string]any{
				"agent": agent, "reason": fmt.Sprintf("%d denied invocations", n),
			})
			if err != nil {
				return err
			}
			if r.Status == "completed" {
				guest.Put("quarantined:"+agent, []byte(guest.Now().UTC().Format(time.RFC3339)))
			}
		}
		return nil
	})
}
