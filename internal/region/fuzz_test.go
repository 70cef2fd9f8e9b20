package region

import (
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/store"
)

// FuzzParseStreamRequest: any query of the global stream's route parses
// without a panic, and what parses is what the follower's query of it
// says again.
func FuzzParseStreamRequest(f *testing.F) {
	for _, sr := range []StreamRequest{
		{Region: "eu-west"},
		{Region: "eu-west", From: 7, Epoch: 1},
		{Region: "eu-central", From: 9, Epoch: 1, Promised: 2, PromisedTo: "eu-west"},
		{Region: "a", From: 1<<64 - 1, Epoch: 1<<64 - 1, Promised: 1<<64 - 1, PromisedTo: "z-9"},
	} {
		f.Add(sr.query())
	}
	for _, s := range []string{"", "region=", "region=EU", "region=eu&from=-1", "region=eu&from=+1", "region=eu&from=007",
		"region=eu&region=us", "region=eu&promised_to=", "region=eu&promised_to=Bad", "region=eu&epoch=18446744073709551616", "%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		sr, err := ParseStreamRequest(q)
		if err != nil {
			return
		}
		q2, err := url.ParseQuery(sr.query())
		if err != nil {
			t.Fatalf("query %q of %+v does not parse: %v", sr.query(), sr, err)
		}
		again, err := ParseStreamRequest(q2)
		if err != nil {
			t.Fatalf("query %q of %+v is refused: %v", sr.query(), sr, err)
		}
		if again != sr {
			t.Fatalf("%q parses to %+v, its query %q to %+v", raw, sr, sr.query(), again)
		}
	})
}

// FuzzStreamMessage: any bytes read from the global stream decode into a
// streamMsg, or fail to, without a panic; what decodes encodes again.
func FuzzStreamMessage(f *testing.F) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	begin, _ := json.Marshal(map[string]any{"epoch": 1, "primary": "us-east", "base": 0, "time": t0})
	put, _ := json.Marshal(map[string]any{"region": api.Region{ID: "us-east", Domain: "us", Endpoints: []string{"http://us-east.test:8181"}}})
	tenant, _ := json.Marshal(map[string]any{"tenant": api.Tenant{ID: "acme", Home: "us-east"}})
	log := []api.GlobalEntry{
		{GlobalVersion: 1, Epoch: 1, Type: "epoch.begin", Payload: begin},
		{GlobalVersion: 2, Epoch: 1, Type: "region.put", Payload: put},
		{GlobalVersion: 3, Epoch: 1, Type: "tenant.put", Payload: tenant},
	}
	state := store.GlobalState{
		Epoch: 1, Primary: "us-east", Log: log,
		Regions: map[string]*api.Region{"us-east": {ID: "us-east", Domain: "us", Endpoints: []string{"http://us-east.test:8181"}}},
		Tenants: map[string]*api.Tenant{"acme": {ID: "acme", Home: "us-east", Domain: "us"}},
		Epochs:  []store.EpochRecord{{Epoch: 1, Primary: "us-east", Time: t0}},
	}
	for _, m := range []streamMsg{
		{Type: msgEntries, Epoch: 1, Primary: "us-east", GlobalVersion: 3, Entries: log[1:]},
		{Type: msgReset, Epoch: 1, Primary: "us-east", GlobalVersion: 3, State: &state},
		{Type: msgHeartbeat, Epoch: 1, Primary: "us-east", GlobalVersion: 3},
		{Type: msgError, Code: api.CodeStaleEpoch, Message: "region us-east stopped being the primary"},
		{Type: msgAck, Region: "eu-west", GlobalVersion: 3, Epoch: 1},
	} {
		b, err := json.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{`{}`, `null`, `[]`, `{"type":"reset","state":null}`, `{"type":"entries","entries":[null]}`,
		`{"type":"reset","state":{"regions":{"x":null},"versions":[null]}}`, `{"entries":[{"payload":1e400}]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m streamMsg
		if json.Unmarshal(data, &m) != nil {
			return
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("a decoded message does not encode: %v", err)
		}
		var again streamMsg
		if err := json.Unmarshal(b, &again); err != nil {
			t.Fatalf("a re-encoded message does not decode: %v\n%s", err, b)
		}
	})
}

// FuzzStandbyMessage: any bytes on the tenant-data stream decode, or fail
// to, without a panic; what decodes encodes again.
func FuzzStandbyMessage(f *testing.F) {
	f.Add([]byte(`{"type":"changes","prev":3,"revision":9,"changes":[{"revision":9,"tenant":"acme","put":{"type":"doc","id":"d1","properties":{"tenant":"acme"}}}]}`))
	f.Add([]byte(`{"type":"reset","revision":9,"changes":[{"revision":0,"tenant":"acme","agent":{"agent":{"id":"a1"},"digests":{}}}]}`))
	f.Add([]byte(`{"type":"heartbeat","revision":12}`))
	f.Add([]byte(`{"type":"error","message":"x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var m standbyMsg
		if json.Unmarshal(data, &m) != nil {
			return
		}
		if _, err := json.Marshal(m); err != nil {
			t.Fatalf("a decoded message does not encode: %v", err)
		}
	})
}
