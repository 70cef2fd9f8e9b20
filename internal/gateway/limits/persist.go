package limits

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"time"
)

// file is the JSON form of a Local's state on disk.
type file struct {
	Version  int           `json:"version"`
	Counters []fileCounter `json:"counters"`
	Claims   []fileClaim   `json:"claims"`
}

type fileCounter struct {
	Key    string        `json:"key"`
	Per    time.Duration `json:"per"`
	Window int64         `json:"window"`
	Used   float64       `json:"used"`
}

type fileClaim struct {
	Key      string    `json:"key"`
	Done     bool      `json:"done,omitempty"`
	Response []byte    `json:"response,omitempty"`
	Expires  time.Time `json:"expires"`
}

const fileVersion = 1

// load reads the state file, dropping what expired before wall. A missing
// file is an empty state; an unreadable one is an error, not a silent reset
// of every budget.
func (l *Local) load(wall time.Time) error {
	b, err := os.ReadFile(l.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("limits: read counters: %w", err)
	}
	return l.restore(b, wall)
}

// restore loads the state file's contents b, dropping what expired before
// wall.
func (l *Local) restore(b []byte, wall time.Time) error {
	var f file
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("limits: counters file %s is corrupt (%w); move it aside to start with empty counters", l.path, err)
	}
	if f.Version != fileVersion {
		return fmt.Errorf("limits: counters file %s has version %d, want %d", l.path, f.Version, fileVersion)
	}
	for _, c := range f.Counters {
		if c.Per > 0 && c.Per <= maxPer && windowFits(c.Window, c.Per) && windowEnd(c.Window, c.Per).After(wall) {
			l.counters[windowKey{c.Key, c.Per, c.Window}] = c.Used
		}
	}
	for _, c := range f.Claims {
		if c.Expires.After(wall) {
			l.claims[c.Key] = claim{done: c.Done, response: c.Response, expires: c.Expires}
		}
	}
	return nil
}

// windowFits reports whether window w of length per ends at a time in
// nanoseconds that an int64 holds; a corrupt file's window may not, and its
// end would wrap around to any time.
func windowFits(w int64, per time.Duration) bool {
	p := int64(per)
	return w < math.MaxInt64/p && w+1 >= math.MinInt64/p
}

// save writes the state if it changed: to a temporary file, synced, renamed
// over the old one, and the directory synced, so a crash leaves the old
// state or the new one, never a torn file.
func (l *Local) save() error {
	if l.path == "" {
		return nil
	}
	l.saveMu.Lock()
	defer l.saveMu.Unlock()
	l.mu.Lock()
	if !l.dirty {
		l.mu.Unlock()
		return nil
	}
	f := l.fileLocked()
	l.dirty = false
	l.mu.Unlock()

	if err := writeFile(l.path, f); err != nil {
		l.mu.Lock()
		l.dirty = true
		l.mu.Unlock()
		return err
	}
	return nil
}

// fileLocked is the state as the counters file holds it.
func (l *Local) fileLocked() file {
	f := file{Version: fileVersion, Counters: make([]fileCounter, 0, len(l.counters)), Claims: make([]fileClaim, 0, len(l.claims))}
	for k, v := range l.counters {
		f.Counters = append(f.Counters, fileCounter{Key: k.key, Per: k.per, Window: k.window, Used: v})
	}
	for k, c := range l.claims {
		f.Claims = append(f.Claims, fileClaim{Key: k, Done: c.done, Response: c.response, Expires: c.expires})
	}
	return f
}

func writeFile(path string, f file) error {
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("limits: encode counters: %w", err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("limits: save counters: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("limits: save counters: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("limits: save counters: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("limits: save counters: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("limits: save counters: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("limits: save counters: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("limits: save counters: %w", err)
	}
	return nil
}
