package engine

import (
	"context"
	"errors"
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

// TestCancelStopsCompileAndLint makes sure Prepare and Lint give up with
// the context's error when it is done before they start, part way through
// and while a publish of a 50,000-rule bundle runs.
func TestCancelStopsCompileAndLint(t *testing.T) {
	files := enginetest.GenerateRules(policy.MaxRules, 10)
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
		// The tenth check is far from the last on 50,000 rules.
		t.Run(s.name+"/cancelled part way", func(t *testing.T) {
			ctx := &countdownCtx{Context: context.Background()}
			ctx.n.Store(10)
			if err := s.run(ctx); !errors.Is(err, context.Canceled) {
				t.Errorf("got %v, want context.Canceled", err)
			}
		})
	}
	// What a publish runs, cancelled as its client leaves: before
	// LintContext existed, lint alone took minutes on this bundle.
	t.Run("publish cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			b, err := PrepareContext(ctx, files, Options{}, benchNow)
			if err == nil {
				_, err = LintContext(ctx, b)
			}
			errc <- err
		}()
		time.Sleep(100 * time.Millisecond)
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
// is refused by the parser's error alone, without compiling what was read.
func TestLoadOverLimitCompilesNothing(t *testing.T) {
	bad := api.File{Name: "bad.yaml", Data: []byte("kind: Policy\nname: bad\nlayer: tenant\nrules:\n  - {name: r, effect: allow, actions: [a.b], when: \"nope(\"}\n")}
	files := append([]api.File{bad}, enginetest.GenerateRules(policy.MaxRules, 10)...)
	_, err := Load(files, Options{})
	var list policy.ErrorList
	if !errors.As(err, &list) || len(list) != 1 {
		t.Fatalf("got %v, want the one error of the rule limit", err)
	}
}
