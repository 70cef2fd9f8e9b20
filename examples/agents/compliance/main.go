//go:build wasip1

// Command compliance is an example sandboxed agent: every minute it reads
// the audit log through kernel.audit.query, counts the denied invocations
// since its last run, and keeps a report in its state (a timer, never a
// sleep: a guest does not block).
package main

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/aibos/kernel/guest"
)

func main() {}

type record struct {
	Seq    uint64 `json:"seq"`
	Agent  string `json:"agent"`
	Action string `json:"action"`
}

func init() {
	guest.Handle(func(t guest.Tick) error {
		if err := scan(); err != nil {
			return err
		}
		return guest.SetTimer("scan", time.Minute)
	})
}

func scan() error {
	res, err := guest.Invoke("kernel.audit.query", map[string]any{"decision": "deny", "kind": "invocation", "limit": 100})
	if err != nil {
		return err
	}
	if res.Decision != "allow" {
		guest.Log(guest.LevelWarn, "audit query refused: "+res.Decision)
		return nil
	}
	var out struct{ Records []record }
	if err := json.Unmarshal(res.Result, &out); err != nil {
		return err
	}
	var since uint64
	if b, err := guest.Get("since"); err == nil {
		since, _ = strconv.ParseUint(string(b), 10, 64)
	}
	perAgent := map[string]int{}
	last := since
	for _, r := range out.Records {
		if r.Seq > since {
			perAgent[r.Agent]++
			last = max(last, r.Seq)
		}
	}
	report, _ := json.Marshal(map[string]any{"at": guest.Now().UTC(), "violations": perAgent})
	if err := guest.Put("report", report); err != nil {
		return err
	}
	return guest.Put("since", []byte(strconv.FormatUint(last, 10)))
}
