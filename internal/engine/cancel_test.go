package engine

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/engine/enginetest"
	"github.com/aibos/kernel/internal/policy"
)

// countdownCtx is a context that is done from its n-th Err call on: it
// cancels a computation part way through without depending on time.
type countdownCtx struct {
	context.Context
	n atomic.Int64
}

func (c *countdownCtx) Err() error {
	if c.n.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

// startedCtx is a context that closes started at its n-th Err call: the
// sign that a computation is under way, for a test to cancel it then.
type startedCtx struct {
	context.Context
	n       atomic.Int64
	started chan struct{}
}

func (c *startedCtx) Err() error {
	if c.n.Add(-1) == 0 {
		close(c.started)
	}
	return c.Context.Err()
}

// TestCancelStopsCompileAndLint makes sure Prepare and Lint give up with
// the context's error when it is done before they start, part way through
// and while a publish runs. 1,000 rules hold every distinct condition of
// enginetest.GenerateRules and take over a thousand context checks, so
// each cancel comes long before the end.
func TestCancelStopsCompileAndLint(t *testing.T) {
	files := enginetest.GenerateRules(1000, 10)
	b, err := Load(files, Options{})
	if err != nil {
		t.Fatal(err)
	}
	done, cancel := context.WithCancel(context.Background())
	cancel()
	steps := []struct {
		name string
		run  func(context.Context) error
	}{
		{"prepare", func(ctx context.Context) error { _, err := PrepareContext(ctx, files, Options{}, benchNow); return err }},
		{"compile", func(ctx context.Context) error { _, err := CompileContext(ctx, b.Source(), Options{}); return err }},
		{"lint", func(ctx context.Context) error { _, err := LintContext(ctx, b); return err }},
	}
	for _, s := range steps {
		t.Run(s.name+"/cancelled before", func(t *testing.T) {
			if err := s.run(done); !errors.Is(err, context.Canceled) {
				t.Errorf("got %v, want context.Canceled", err)
			}
		})
		// The tenth check is far from the last on 1,000 rules.
		t.Run(s.name+"/cancelled part way", func(t *testing.T) {
			ctx := &countdownCtx{Context: context.Background()}
			ctx.n.Store(10)
			if err := s.run(ctx); !errors.Is(err, context.Canceled) {
				t.Errorf("got %v, want context.Canceled", err)
			}
		})
	}
	// What a publish runs, cancelled from another goroutine as its client
	// leaves, once it is compiling: the parser checks the context once a
	// document (100 here), so the 150th check is in the compiler.
	t.Run("publish cancelled", func(t *testing.T) {
		parent, cancel := context.WithCancel(context.Background())
		ctx := &startedCtx{Context: parent, started: make(chan struct{})}
		ctx.n.Store(150)
		errc := make(chan error, 1)
		go func() {
			b, err := PrepareContext(ctx, files, Options{}, benchNow)
			if err == nil {
				_, err = LintContext(ctx, b)
			}
			errc <- err
		}()
		select {
		case <-ctx.started:
		case err := <-errc:
			t.Fatalf("done before its 150th context check (%v): the test needs a bigger bundle", err)
		}
		cancel()
		select {
		case err := <-errc:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("got %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("still compiling or linting 5 s after the cancel")
		}
	})
}

// TestLoadOverLimitCompilesNothing makes sure a bundle over the rule limit
// of Options.Limits is refused by the parser's error alone, without
// compiling what was read (the bad condition would be a second error).
func TestLoadOverLimitCompilesNothing(t *testing.T) {
	bad := api.File{Name: "bad.yaml", Data: []byte("kind: Policy\nname: bad\nlayer: tenant\nrules:\n  - {name: r, effect: allow, actions: [a.b], when: \"nope(\"}\n")}
	files := append([]api.File{bad}, enginetest.GenerateRules(200, 10)...)
	_, err := Load(files, Options{Limits: policy.Limits{Rules: 200}})
	var list policy.ErrorList
	if !errors.As(err, &list) || len(list) != 1 || !strings.Contains(list[0].Msg, "the bundle has 201 rules; at most 200 are allowed") {
		t.Fatalf("got %v, want the one error of the rule limit", err)
	}
	// Under the limit the bad condition is compiled, and reported.
	_, err = Load(files, Options{Limits: policy.Limits{Rules: 201}})
	if !errors.As(err, &list) || len(list) != 1 || list[0].Pos.File != "bad.yaml" {
		t.Fatalf("got %v, want the one error of the bad condition", err)
	}
}
