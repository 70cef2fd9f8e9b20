// Command agent is the test guest of internal/sandbox. Its behaviour is
// chosen by the manifest's sandbox.config.mode, so one build serves every
// test: echo (invoke config.action and keep the answer), loop (spin
// forever on a message), bomb (allocate until memory runs out), panic
// (panic at start), later (invoke, and on its first start set a timer
// due in 15 s).
package main

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/aibos/kernel/guest"
)

func main() {}

var keep [][]byte

func init() {
	guest.Handle(func(t guest.Tick) error {
		mode, _ := t.Config["mode"].(string)
		switch t.Kind {
		case guest.TickStart:
			switch mode {
			case "panic":
				panic("boom")
			case "bomb":
				for {
					keep = append(keep, make([]byte, 1<<20))
				}
			}
			if err := guest.Put("started", []byte(guest.Now().UTC().Format(time.RFC3339))); err != nil {
				return err
			}
			if mode == "later" {
				if _, err := guest.Get("armed"); err != nil {
					// The timer first, so that "armed" means it is set.
					if err := guest.SetTimer("late", 15*time.Second); err != nil {
						return err
					}
					if err := guest.Put("armed", []byte("1")); err != nil {
						return err
					}
				}
				return invoke(t)
			}
			if mode == "echo" {
				if err := invoke(t); err != nil {
					return err
				}
				return guest.SetTimer("t", 10*time.Millisecond)
			}
		case guest.TickMessage:
			if mode == "loop" {
				guest.Put("looping", []byte("1"))
				for {
				}
			}
			if mode == "bench" {
				n, _ := t.Config["n"].(float64)
				for range int(n) {
					if _, err := guest.InvokeRaw("kernel.audit.query", []byte(`{"input":{"limit":1}}`)); err != nil {
						return err
					}
				}
				return nil
			}
			if mode == "swap" {
				if bad, _ := t.Config["bad_version"].(string); bad == t.Version {
					panic("version " + t.Version + " is bad")
				}
				var m struct {
					ID int `json:"id"`
				}
				if err := json.Unmarshal(t.Message, &m); err != nil {
					return err
				}
				old, _ := guest.Get("seen")
				return guest.Put("seen", append(old, []byte(strconv.Itoa(m.ID)+",")...))
			}
			if mode == "abi" {
				for range 1000 {
					guest.Get("started")
				}
				return nil
			}
			if mode == "idle" {
				return nil
			}
			return invoke(t)
		case guest.TickTimer:
			return guest.Put("timer", []byte(t.Timer))
		}
		return nil
	})
}

func invoke(t guest.Tick) error {
	action, _ := t.Config["action"].(string)
	req := map[string]any{"input": map[string]any{"limit": 1}}
	body, _ := json.Marshal(req)
	res, err := guest.InvokeRaw(action, body)
	if err != nil {
		guest.Put("error", []byte(err.Error()))
		return err
	}
	b, _ := json.Marshal(res)
	return guest.Put("last", b)
}
