package audit

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
)

func TestHandler(t *testing.T) {
	var clock fakeClock
	t0 := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	clock.set(t0)
	l := open(t, Config{Dir: t.TempDir(), Now: clock.now})
	for i := range 30 {
		clock.add(time.Second)
		r := decision(i)
		r.Time = clock.now()
		l.Append(r)
	}
	srv := httptest.NewServer(l.Handler())
	defer srv.Close()

	get := func(t *testing.T, path string) (*http.Response, []byte) {
		t.Helper()
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res, body
	}

	t.Run("query", func(t *testing.T) {
		for _, tc := range []struct {
			query string
			seqs  []uint64
		}{
			{"", nil}, // all 30
			{"?limit=2&order=desc", []uint64{30, 29}},
			{"?agent=agent-1&decision=deny&limit=2", []uint64{2, 16}},
			{"?action=crm.read.4&kind=decision&limit=1", []uint64{5}},
			{"?since=" + t0.Add(10*time.Second).Format(time.RFC3339) + "&until=" + t0.Add(12*time.Second).Format(time.RFC3339), []uint64{10, 11}},
			{"?invocation=none", []uint64{}},
		} {
			res, body := get(t, "/v1/audit"+tc.query)
			if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("%s: %d %s", tc.query, res.StatusCode, body)
			}
			var qr QueryResponse
			if err := json.Unmarshal(body, &qr); err != nil || qr.Records == nil {
				t.Fatalf("%s: %v %s", tc.query, err, body)
			}
			if tc.seqs == nil {
				if len(qr.Records) != 30 {
					t.Errorf("all: %d records", len(qr.Records))
				}
				continue
			}
			var got []uint64
			for _, r := range qr.Records {
				got = append(got, r.Seq)
			}
			if len(got) != len(tc.seqs) || (len(got) > 0 && (got[0] != tc.seqs[0] || got[len(got)-1] != tc.seqs[len(tc.seqs)-1])) {
				t.Errorf("%s: seqs %v, want %v", tc.query, got, tc.seqs)
			}
		}
	})

	t.Run("bad params", func(t *testing.T) {
		for _, tc := range []struct{ query, want string }{
			{"/v1/audit?limit=0", "limit"},
			{"/v1/audit?limit=10001", "1 to 10000"},
			{"/v1/audit?limit=x", "limit"},
			{"/v1/audit?order=up", "asc or desc"},
			{"/v1/audit?since=yesterday", "RFC 3339"},
			{"/v1/audit?until=2026-13-01", "until"},
			{"/v1/audit?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "before"},
			{"/v1/audit?agnet=a", `unknown query parameter "agnet"`},
			{"/v1/audit?agent=a&agent=b", "once"},
			{"/v1/audit/export?limit=-1", "limit"},
			{"/v1/audit/verify?x=1", "no query parameters"},
		} {
			res, body := get(t, tc.query)
			var eb api.ErrorBody
			if res.StatusCode != 400 || json.Unmarshal(body, &eb) != nil || eb.Error.Code != "bad_request" ||
				!strings.Contains(eb.Error.Message, tc.want) {
				t.Errorf("%s: %d %s; want 400 bad_request mentioning %q", tc.query, res.StatusCode, body, tc.want)
			}
		}
	})

	t.Run("export", func(t *testing.T) {
		res, body := get(t, "/v1/audit/export?agent=agent-0")
		if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("%d %v", res.StatusCode, res.Header)
		}
		lines := strings.Split(strings.TrimSpace(string(body)), "\n")
		if len(lines) != 5 { // i = 0, 7, 14, 21, 28
			t.Fatalf("%d lines: %s", len(lines), body)
		}
		var r Record
		if err := json.Unmarshal([]byte(lines[1]), &r); err != nil || r.Seq != 8 || r.Agent != "agent-0" {
			t.Errorf("line %s: %v", lines[1], err)
		}
	})

	t.Run("verify", func(t *testing.T) {
		res, body := get(t, "/v1/audit/verify")
		var vr VerifyResponse
		if res.StatusCode != 200 || json.Unmarshal(body, &vr) != nil || !vr.OK || vr.Records != 30 || vr.LastSeq != 30 {
			t.Fatalf("%d %s", res.StatusCode, body)
		}
	})

	t.Run("method", func(t *testing.T) {
		res, err := http.Post(srv.URL+"/v1/audit", "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST: %d", res.StatusCode)
		}
	})
}

func TestFilterQueryRoundTrip(t *testing.T) {
	f := Filter{Agent: "a", Action: "x.y", Decision: "deny", Kind: "decision", InvocationID: "i",
		Since: time.Date(2026, 1, 1, 0, 0, 0, 5, time.UTC), Until: time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC), Limit: 7, Desc: true}
	got, err := ParseFilter(FilterQuery(f), false)
	if err != nil {
		t.Fatal(err)
	}
	if got != f {
		t.Errorf("got %+v, want %+v", got, f)
	}
}
