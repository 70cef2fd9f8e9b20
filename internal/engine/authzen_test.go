package engine

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/policy"
)

// authzenDir holds the public AuthZEN interop vectors, copied into the
// repository (testdata/authzen/README.md says from where).
var authzenDir = filepath.Join("..", "..", "testdata", "authzen")

// sharedAuthzenDir is the team's reference copy of the same vectors, a
// sibling of the repository when it is there.
var sharedAuthzenDir = filepath.Join("..", "..", "..", "shared", "conformance", "authzen")

// authzenRequest is an AuthZEN 1.0 evaluation request; in a batch the
// top-level subject, action, resource and context are the defaults of
// each item of evaluations.
type authzenRequest struct {
	Subject     *api.Entity      `json:"subject"`
	Action      *api.Action      `json:"action"`
	Resource    *api.Entity      `json:"resource"`
	Context     map[string]any   `json:"context"`
	Evaluations []authzenRequest `json:"evaluations"`
	Options     map[string]any   `json:"options"`
}

type authzenVectors struct {
	Evaluation []struct {
		Request  authzenRequest `json:"request"`
		Expected bool           `json:"expected"`
	} `json:"evaluation"`
	Evaluations []struct {
		Request  authzenRequest `json:"request"`
		Expected []struct {
			Decision bool `json:"decision"`
		} `json:"expected"`
	} `json:"evaluations"`
}

// TestAuthZENTodo runs all 43 checks of the AuthZEN Todo interop scenario
// (40 single evaluations and 3 batches, compared item by item as the
// official harness does) against examples/authzen-todo, with the users of
// todo-users.json as stored entities.
func TestAuthZENTodo(t *testing.T) {
	if _, err := os.Stat(authzenDir); err != nil {
		t.Fatalf("AuthZEN vectors missing (want them in %s): %v", authzenDir, err)
	}
	files, err := policy.ReadPath(filepath.Join("..", "..", "examples", "authzen-todo"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Prepare(files, Options{Version: 1}, time.Now())
	if err != nil {
		t.Fatalf("the example bundle does not prepare:\n%v", err)
	}

	var users map[string]map[string]any
	readJSON(t, filepath.Join(authzenDir, "todo-users.json"), &users)
	var ents []api.Entity
	for id, props := range users {
		ents = append(ents, api.Entity{Type: "user", ID: id, Properties: props})
	}
	store := NewMapEntities(ents)
	if len(store) != 5 {
		t.Fatalf("%d users, want 5", len(store))
	}

	var vectors authzenVectors
	readJSON(t, filepath.Join(authzenDir, "todo-decisions.json"), &vectors)

	decide := func(r authzenRequest) (bool, api.Decision) {
		t.Helper()
		if r.Subject == nil || r.Action == nil || r.Resource == nil {
			t.Fatalf("incomplete evaluation request: %+v", r)
		}
		req := &api.CheckRequest{Subject: *r.Subject, Action: *r.Action, Resource: *r.Resource, Context: r.Context}
		d := b.Decide(req, store, time.Now())
		return d.Decision == api.Allow, d
	}

	checks, items := 0, 0
	for i, v := range vectors.Evaluation {
		checks++
		items++
		got, d := decide(v.Request)
		if got != v.Expected {
			t.Errorf("evaluation %d: %s by %s on %s %s: got %t, want %t (%s; errors %q)",
				i, v.Request.Action.Name, v.Request.Subject.ID, v.Request.Resource.Type, v.Request.Resource.ID,
				got, v.Expected, DescribeReasons(d.Reasons), d.Errors)
		}
	}
	for i, batch := range vectors.Evaluations {
		checks++
		if len(batch.Expected) != len(batch.Request.Evaluations) {
			t.Fatalf("batch %d: %d items, %d expected decisions", i, len(batch.Request.Evaluations), len(batch.Expected))
		}
		for j, item := range batch.Request.Evaluations {
			items++
			got, d := decide(withDefaults(item, batch.Request))
			if want := batch.Expected[j].Decision; got != want {
				t.Errorf("batch %d item %d: got %t, want %t (%s; errors %q)", i, j, got, want, DescribeReasons(d.Reasons), d.Errors)
			}
		}
	}
	if checks != 43 {
		t.Errorf("ran %d checks, want 43 (40 evaluations and 3 batches)", checks)
	}
	t.Logf("%d checks (%d decisions)", checks, items)
}

// withDefaults fills what a batch item leaves out from the batch's
// top-level request (AuthZEN 1.0, section "Evaluations API").
func withDefaults(item, batch authzenRequest) authzenRequest {
	if item.Subject == nil {
		item.Subject = batch.Subject
	}
	if item.Action == nil {
		item.Action = batch.Action
	}
	if item.Resource == nil {
		item.Resource = batch.Resource
	}
	if item.Context == nil {
		item.Context = batch.Context
	}
	return item
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestAuthZENVectorsMatchShared compares the repository's copy of the
// AuthZEN vectors with the shared reference copy, byte for byte, when the
// shared copy is beside the repository (a fresh clone has none: skipped).
// Every file of the shared copy the repository holds must be identical.
func TestAuthZENVectorsMatchShared(t *testing.T) {
	if _, err := os.Stat(sharedAuthzenDir); err != nil {
		t.Skipf("no shared copy at %s to compare with: %v", sharedAuthzenDir, err)
	}
	compared := 0
	err := filepath.WalkDir(authzenDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".json" {
			return err
		}
		rel, err := filepath.Rel(authzenDir, path)
		if err != nil {
			return err
		}
		mine, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		ref, err := os.ReadFile(filepath.Join(sharedAuthzenDir, rel))
		if err != nil {
			t.Errorf("%s: not in the shared copy: %v", rel, err)
			return nil
		}
		if !bytes.Equal(mine, ref) {
			t.Errorf("%s differs from the shared copy %s: copy the shared file over it", path, filepath.Join(sharedAuthzenDir, rel))
		}
		compared++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if compared < 7 {
		t.Fatalf("compared %d files, want the 7 of testdata/authzen", compared)
	}
}
