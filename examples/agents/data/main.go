//go:build wasip1

// Command data is an example sandboxed agent: on every message it queries
// a table through the kernel's data.query action, under the residency
// policy (policy.yaml), and keeps the last answer in its state.
//
// A message is {"table": "t1", "region": "eu-west"}.
package main

import (
	"encoding/json"

	"github.com/aibos/kernel/guest"
)

func main() {}

func init() {
	guest.Handle(func(t guest.Tick) error {
		if t.Kind != guest.TickMessage {
			return nil
		}
		var m struct{ Table, Region string }
		if err := json.Unmarshal(t.Message, &m); err != nil {
			return err
		}
		home, _ := t.Config["region"].(string)
		body, _ := json.Marshal(map[string]any{
			"input":    map[string]any{"table": m.Table},
			"resource": map[string]any{"type": "table", "id": m.Table, "properties": map[string]any{"region": m.Region}},
			"context":  map[string]any{"region": home},
		})
		res, err := guest.InvokeRaw("data.query", body)
		if err != nil {
			return err
		}
		if res.Decision != "allow" {
			guest.Log(guest.LevelWarn, "data.query "+m.Table+" refused: "+res.Decision)
		}
		out, _ := json.Marshal(res)
		return guest.Put("last:"+m.Table, out)
	})
}
