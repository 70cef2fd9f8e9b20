package region_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/node/nodetest"
)

func TestFederationSmoke(t *testing.T) {
	f := startFederation(t, threeRegions, nil)
	us := f.regions["us-east"]
	ctx, cancel := context.WithTimeout(context.Background(), nodetest.WaitLong)
	defer cancel()
	if _, err := f.client("us-east", "").Publish(ctx, bundle(1), client.PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitConverged()
	for _, id := range f.order {
		vs := versions(t, f.live(id), f.regions[id].root)
		if len(vs) != 1 {
			t.Fatalf("%s has %d versions", id, len(vs))
		}
	}
	// A global write at a secondary is refused.
	var body []byte
	st := doJSON(t, f.live("eu-west").URL(), f.regions["eu-west"].root, http.MethodPut, "/v1/tenants/acme", api.Tenant{Home: "eu-west"}, &body)
	if st != http.StatusConflict {
		t.Fatalf("tenant put at a secondary: %d %s", st, body)
	}
	st = doJSON(t, us.nodes[0].URL(), us.root, http.MethodPut, "/v1/tenants/acme", api.Tenant{Home: "eu-west"}, &body)
	if st != http.StatusOK {
		t.Fatalf("tenant put at the primary: %d %s", st, body)
	}
	_ = time.Second
}
