package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/policy"
)

// BenchmarkSearch100k measures one resource search over 100,000 stored
// records through the handler (decode, enumerate, one decision per
// candidate with the compiled bundle, encode), without the network: "which
// records may u7 delete?" examines every record and finds the 100 that u7
// owns, in one page. warm: the record ids of this revision are cached (the
// pages of one search, and searches between writes); cold: a write came
// first, so the store is enumerated and the ids sorted again.
func BenchmarkSearch100k(b *testing.B) {
	const records, owners = 100_000, 1000
	n, c := startNode(b)
	ctx := context.Background()
	files, err := policy.ReadPath("../../examples/authzen-search")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.Publish(ctx, files, client.PublishOptions{}); err != nil {
		b.Fatal(err)
	}
	for start := 0; start < records; start += 10_000 {
		ents := make([]api.Entity, 0, 10_000)
		for i := start; i < start+10_000; i++ {
			ents = append(ents, api.Entity{Type: "record", ID: fmt.Sprintf("r%06d", i), Properties: map[string]any{
				"department": fmt.Sprintf("d%d", i%50), "owner": fmt.Sprintf("u%d", i%owners)}})
		}
		if _, err := c.PutEntities(ctx, ents); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := c.PutEntities(ctx, []api.Entity{{Type: "user", ID: "u7", Properties: map[string]any{"role": "employee", "department": "none"}}}); err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"subject":{"type":"user","id":"u7"},"action":{"name":"delete"},"resource":{"type":"record"},"page":{"limit":10000}}`)
	var resp struct {
		Page struct {
			NextToken string `json:"next_token"`
		} `json:"page"`
		Results []json.RawMessage `json:"results"`
	}
	search := func(b *testing.B) {
		rec := httptest.NewRecorder()
		n.Server.ServeHTTP(rec, httptest.NewRequest("POST", "/access/v1/search/resource", bytes.NewReader(body)))
		if rec.Code != 200 {
			b.Fatal(rec.Body)
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || len(resp.Results) != records/owners || resp.Page.NextToken != "" {
			b.Fatalf("%d results, next %q: %v", len(resp.Results), resp.Page.NextToken, err)
		}
	}
	b.Run("warm", func(b *testing.B) {
		search(b)
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			search(b)
		}
		b.ReportMetric(float64(records*b.N)/b.Elapsed().Seconds(), "candidates/s")
	})
	b.Run("cold", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			b.StopTimer()
			if _, err := c.PutEntities(ctx, []api.Entity{{Type: "user", ID: "x", Properties: map[string]any{"n": i}}}); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			search(b)
		}
	})
}
