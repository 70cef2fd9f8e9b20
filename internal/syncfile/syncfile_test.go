package syncfile

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// syncers are the modes this machine offers: blocking always, the ring
// where the kernel allows one.
func syncers(t testing.TB) map[Mode]*Syncer {
	ss := map[Mode]*Syncer{ModeBlocking: Blocking()}
	if s := New(); s.Mode() == ModeRing {
		ss[ModeRing] = s
		t.Cleanup(func() { s.Close() })
	} else {
		t.Logf("no io_uring here: %v", s.Why())
		if runtime.GOOS == "linux" && os.Getenv("AIBOS_REQUIRE_IO_URING") == "1" {
			t.Fatalf("AIBOS_REQUIRE_IO_URING=1 but: %v", s.Why())
		}
	}
	return ss
}

func TestSync(t *testing.T) {
	for mode, s := range syncers(t) {
		t.Run(string(mode), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "f")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for i := range 20 {
				if _, err := f.Write([]byte("record\n")); err != nil {
					t.Fatal(err)
				}
				if err := s.Sync(f); err != nil {
					t.Fatalf("sync %d: %v", i, err)
				}
			}
			if b, _ := os.ReadFile(path); len(b) != 20*len("record\n") {
				t.Fatalf("file holds %d bytes", len(b))
			}
			// A pipe cannot be synced: the error names it and is EINVAL.
			_, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer pw.Close()
			err = s.Sync(pw)
			var pe *os.PathError
			if !errors.Is(err, syscall.EINVAL) || !errors.As(err, &pe) || pe.Path != pw.Name() {
				t.Fatalf("sync of a pipe: %v, want EINVAL naming it", err)
			}
			// A closed file is an error, not a hang or a crash.
			f2, _ := os.Create(path + "2")
			f2.Close()
			if err := s.Sync(f2); err == nil {
				t.Fatal("sync of a closed file succeeded")
			}
		})
	}
}

// Syncs from many goroutines, and a Close racing them, are safe: after
// Close a Syncer syncs blocking.
func TestSyncConcurrentAndClose(t *testing.T) {
	s := New()
	dir := t.TempDir()
	var wg sync.WaitGroup
	var failed atomic.Int32
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := os.Create(filepath.Join(dir, string(rune('a'+g))))
			if err != nil {
				failed.Add(1)
				return
			}
			defer f.Close()
			for range 25 {
				f.Write([]byte("x"))
				if err := s.Sync(f); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	time.Sleep(time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatal("create failed")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// BenchmarkSync is the time a sync of a small append takes, per mode
// (~40 decisions written, then synced). What the ring saves is not this
// latency but the scheduler's P during it, which only a loaded server shows
// (the README's bench/vs-peers figures).
func BenchmarkSync(b *testing.B) {
	for mode, s := range syncers(b) {
		b.Run(string(mode), func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "f"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			rec := make([]byte, 12<<10)
			for b.Loop() {
				f.Write(rec)
				if err := s.Sync(f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
