// Package inproc compares the kernel's engine with OPA's rego package and
// cedar-go deciding the same refund rule in process, alone and among 999
// unrelated rules. It lives in the bench module so that OPA and Cedar never
// enter the kernel's go.mod.
//
//	cd bench && go test -run '^$' -bench . -benchmem ./inproc
package inproc

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/engine"
	cedar "github.com/cedar-policy/cedar-go"
	"github.com/open-policy-agent/opa/v1/rego"
)

// sizes are the rule counts compared: the refund rule alone, and among 999
// rules of other actions.
var sizes = []int{1, 1000}

func checkRequest(tb testing.TB) []byte {
	b, err := os.ReadFile("../vs-peers/check.json")
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func kernelPolicy(n int) string {
	src, err := os.ReadFile("../vs-peers/refund.yaml")
	if err != nil {
		panic(err)
	}
	var sb strings.Builder
	sb.Write(src)
	for i := 1; i < n; i++ {
		fmt.Fprintf(&sb, `  - name: other-%d
    effect: allow
    actions: ["other.a%d"]
    when: subject.properties.tenant == resource.properties.tenant && context.amount < %d
`, i, i, i)
	}
	return sb.String()
}

func BenchmarkKernelEngine(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			bundle, err := engine.Load([]api.File{{Name: "bench.yaml", Data: []byte(kernelPolicy(n))}}, engine.Options{Version: 1})
			if err != nil {
				b.Fatal(err)
			}
			req, err := api.DecodeCheckRequest(checkRequest(b))
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			if d := bundle.Decide(req, nil, now); d.Decision != api.Allow {
				b.Fatalf("kernel: %s", d.Decision)
			}
			b.ReportAllocs()
			for b.Loop() {
				if d := bundle.Decide(req, nil, now); d.Decision != api.Allow {
					b.Fatal(d.Decision)
				}
			}
		})
	}
}

func regoPolicy(n int) string {
	src, err := os.ReadFile("../vs-peers/refund.rego")
	if err != nil {
		panic(err)
	}
	var sb strings.Builder
	sb.Write(src)
	for i := 1; i < n; i++ {
		fmt.Fprintf(&sb, `
allow if {
	input.action.name == "other.a%d"
	input.subject.properties.tenant == input.resource.properties.tenant
	input.context.amount < %d
}
`, i, i)
	}
	return sb.String()
}

func BenchmarkOPARego(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			ctx := context.Background()
			pq, err := rego.New(rego.Query("data.refund.allow"), rego.Module("refund.rego", regoPolicy(n))).PrepareForEval(ctx)
			if err != nil {
				b.Fatal(err)
			}
			var input map[string]any
			if err := json.Unmarshal(checkRequest(b), &input); err != nil {
				b.Fatal(err)
			}
			if rs, err := pq.Eval(ctx, rego.EvalInput(input)); err != nil || !rs.Allowed() {
				b.Fatalf("opa: %v %v", rs, err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if rs, err := pq.Eval(ctx, rego.EvalInput(input)); err != nil || !rs.Allowed() {
					b.Fatal(err)
				}
			}
		})
	}
}

func cedarPolicy(n int) string {
	src, err := os.ReadFile("../vs-peers/refund.cedar")
	if err != nil {
		panic(err)
	}
	var sb strings.Builder
	sb.Write(src)
	for i := 1; i < n; i++ {
		fmt.Fprintf(&sb, `
permit (principal, action == Action::"other.a%d", resource)
when { principal.tenant == resource.tenant && context.amount < %d };
`, i, i)
	}
	return sb.String()
}

func BenchmarkCedarGo(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			ps, err := cedar.NewPolicySetFromBytes("refund.cedar", []byte(cedarPolicy(n)))
			if err != nil {
				b.Fatal(err)
			}
			user, pay := cedar.NewEntityUID("User", "u1"), cedar.NewEntityUID("Payment", "p1")
			ents := cedar.EntityMap{
				user: {UID: user, Attributes: cedar.NewRecord(cedar.RecordMap{"tenant": cedar.String("t1"), "role": cedar.String("ops")})},
				pay:  {UID: pay, Attributes: cedar.NewRecord(cedar.RecordMap{"tenant": cedar.String("t1")})},
			}
			req := cedar.Request{Principal: user, Action: cedar.NewEntityUID("Action", "payments.refund"), Resource: pay,
				Context: cedar.NewRecord(cedar.RecordMap{"env": cedar.String("prod"), "risk": cedar.Long(2), "amount": cedar.Long(120)})}
			if d, diag := cedar.Authorize(ps, ents, req); d != cedar.Allow {
				b.Fatalf("cedar: %v %v", d, diag)
			}
			b.ReportAllocs()
			for b.Loop() {
				if d, _ := cedar.Authorize(ps, ents, req); d != cedar.Allow {
					b.Fatal(d)
				}
			}
		})
	}
}
