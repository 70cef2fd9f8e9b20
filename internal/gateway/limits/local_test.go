package limits

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func openLocal(t *testing.T, path string) *Local {
	t.Helper()
	l, err := NewLocal(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestLocal(t *testing.T) {
	runSuite(t, backend{name: "local", open: func(t *testing.T) (Counter, func() Counter) {
		l := openLocal(t, filepath.Join(t.TempDir(), "counters.json"))
		return l, func() Counter { return l }
	}})
}

func TestLocalInMemory(t *testing.T) {
	l := openLocal(t, "")
	if r, err := l.Allow(context.Background(), "k", 1, time.Minute, base()); err != nil || !r.Allowed {
		t.Fatalf("%+v %v", r, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestLocalSurvivesRestart(t *testing.T) {
	ctx, path := context.Background(), filepath.Join(t.TempDir(), "counters.json")
	now := time.Now()
	l, err := NewLocal(path)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := l.Allow(ctx, "rl|a", 3, time.Hour, now); err != nil {
			t.Fatal(err)
		}
	}
	res, _, err := l.Reserve(ctx, "budget|a", 7.5, 10, 24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Allow(ctx, "rl|old", 3, time.Minute, now.Add(-time.Hour)); err != nil { // an ended window
		t.Fatal(err)
	}
	if cl, _ := l.Claim(ctx, "idem|done", time.Hour); !cl.Claimed {
		t.Fatal(cl)
	}
	if err := l.Complete(ctx, "idem|done", []byte("resp"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if cl, _ := l.Claim(ctx, "idem|running", time.Hour); !cl.Claimed {
		t.Fatal(cl)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Allow(ctx, "rl|a", 3, time.Hour, now); !errors.Is(err, ErrClosed) {
		t.Fatalf("Allow after Close: %v, want ErrClosed", err)
	}

	l2 := openLocal(t, path)
	if r, _ := l2.Allow(ctx, "rl|a", 3, time.Hour, now); r.Allowed || r.Used != 3 {
		t.Fatalf("rate window after restart: %+v, want full", r)
	}
	if err := l2.Settle(ctx, res, 5); err != nil { // a reservation made before the restart
		t.Fatal(err)
	}
	if u := usage(t, l2, "budget|a", 24*time.Hour, now); u != 5 {
		t.Fatalf("budget after restart and settle: %v, want 5", u)
	}
	if cl, _ := l2.Claim(ctx, "idem|done", time.Hour); string(cl.Response) != "resp" {
		t.Fatalf("completed claim after restart: %+v", cl)
	}
	if cl, _ := l2.Claim(ctx, "idem|running", time.Hour); !cl.InProgress {
		t.Fatalf("running claim after restart: %+v", cl)
	}
	l2.mu.Lock()
	_, kept := l2.counters[windowKey{"rl|old", time.Minute, windowOf(now.Add(-time.Hour), time.Minute)}]
	l2.mu.Unlock()
	if kept {
		t.Fatal("an ended window was reloaded")
	}
}

// Without Close (a crash), the background saver has written the counts within
// about a second.
func TestLocalSavesInTheBackground(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "counters.json")
	l := openLocal(t, path)
	now := time.Now()
	if _, err := l.Allow(context.Background(), "rl|bg", 5, time.Hour, now); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil && strings.Contains(string(b), "rl|bg") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("counters not saved within 5s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Open a copy, as a restarted node would after a crash.
	b, _ := os.ReadFile(path)
	crashed := filepath.Join(dir, "crashed.json")
	if err := os.WriteFile(crashed, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if u := usage(t, openLocal(t, crashed), "rl|bg", time.Hour, now); u != 1 {
		t.Fatalf("usage after a crash: %v, want 1", u)
	}
	if matches, _ := filepath.Glob(filepath.Join(dir, "*.tmp*")); len(matches) > 0 {
		t.Fatalf("temporary files left: %v", matches)
	}
}

func TestLocalRefusesACorruptFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "counters.json")
	if err := os.WriteFile(path, []byte(`{"version":1,"counters":[`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewLocal(path); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("NewLocal of a corrupt file: %v", err)
	}
}

// Windows far behind the latest time a caller passed are dropped.
func TestLocalExpiresOldWindows(t *testing.T) {
	l := openLocal(t, "")
	ctx := context.Background()
	if _, err := l.Allow(ctx, "rl|x", 5, time.Minute, base()); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Allow(ctx, "rl|x", 5, time.Minute, base().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	l.expire(time.Now())
	l.mu.Lock()
	n := len(l.counters)
	l.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d windows kept, want 1", n)
	}
}

func BenchmarkLocalAllow(b *testing.B) {
	l, err := NewLocal("")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ctx, now := context.Background(), time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Allow(ctx, "rl|agent:a1|action:crm.read", 1<<62, time.Minute, now); err != nil {
			b.Fatal(err)
		}
	}
}
