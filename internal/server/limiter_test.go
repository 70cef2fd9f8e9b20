package server

import (
	"testing"
	"time"
)

// TestFailureLimiterDisarms: the limiter is armed only while a window that
// reached the limit lasts; once blocked has seen it end, the decision path
// skips it, and new failures arm it again.
func TestFailureLimiterDisarms(t *testing.T) {
	l := newFailureLimiter(2, time.Minute)
	t0 := time.Unix(1_000_000, 0)
	if l.armed() {
		t.Fatal("armed before any failure")
	}
	l.add("10.0.0.1", t0)
	if l.armed() {
		t.Fatal("armed below the limit")
	}
	l.add("10.0.0.1", t0.Add(time.Second))
	if !l.armed() {
		t.Fatal("not armed at the limit")
	}
	if w := l.blocked("10.0.0.1", t0.Add(2*time.Second)); w != 58*time.Second {
		t.Fatalf("blocked for %s, want 58s", w)
	}
	if w := l.blocked("10.0.0.2", t0.Add(2*time.Second)); w != 0 || !l.armed() {
		t.Fatalf("another source: blocked %s, armed %v", w, l.armed())
	}
	if w := l.blocked("10.0.0.1", t0.Add(time.Minute)); w != 0 || l.armed() {
		t.Fatalf("after the window: blocked %s, armed %v", w, l.armed())
	}
	t1 := t0.Add(2 * time.Minute)
	l.add("10.0.0.1", t1)
	l.add("10.0.0.1", t1)
	if w := l.blocked("10.0.0.1", t1.Add(time.Second)); w != 59*time.Second {
		t.Fatalf("re-armed: blocked for %s, want 59s", w)
	}
}
