package sandbox

import (
	"encoding/json"
	"fmt"
	"time"
)

// Profile is an agent's sandbox limits: the manifest's `sandbox` object,
// with defaults for what it leaves out and maxima it cannot pass.
type Profile struct {
	// TimeoutMS bounds one tick (default 1000, at most 60000).
	TimeoutMS int `json:"timeout_ms"`
	// MaxPages caps the instance's memory in 64 KiB pages (default 512 =
	// 32 MiB, at most 4096 = 256 MiB).
	MaxPages uint32 `json:"max_pages"`
	// MaxHostCalls caps host calls per tick (default 100, at most 10000).
	MaxHostCalls int `json:"max_host_calls"`
	// Config is handed to every tick: the guest's only environment.
	Config map[string]any `json:"config,omitempty"`
}

// Defaults and maxima of a profile.
const (
	DefaultTimeoutMS    = 1000
	MaxTimeoutMS        = 60000
	DefaultMaxPages     = 512
	MaxMaxPages         = 4096
	DefaultMaxHostCalls = 100
	MaxMaxHostCalls     = 10000
)

// ParseProfile reads a manifest's sandbox object (nil: all defaults).
func ParseProfile(m map[string]any) (Profile, error) {
	var p Profile
	if len(m) > 0 {
		b, err := json.Marshal(m)
		if err != nil {
			return p, fmt.Errorf("sandbox profile: %w", err)
		}
		if err := json.Unmarshal(b, &p); err != nil {
			return p, fmt.Errorf("sandbox profile: %w (fields: timeout_ms, max_pages, max_host_calls, config)", err)
		}
	}
	check := func(name string, v *int, def, max int) error {
		switch {
		case *v == 0:
			*v = def
		case *v < 0 || *v > max:
			return fmt.Errorf("sandbox.%s is %d; it must be between 1 and %d", name, *v, max)
		}
		return nil
	}
	if err := check("timeout_ms", &p.TimeoutMS, DefaultTimeoutMS, MaxTimeoutMS); err != nil {
		return p, err
	}
	if err := check("max_host_calls", &p.MaxHostCalls, DefaultMaxHostCalls, MaxMaxHostCalls); err != nil {
		return p, err
	}
	pages := int(p.MaxPages)
	if err := check("max_pages", &pages, DefaultMaxPages, MaxMaxPages); err != nil {
		return p, err
	}
	p.MaxPages = uint32(pages)
	return p, nil
}

// Timeout is the tick deadline.
func (p Profile) Timeout() time.Duration { return time.Duration(p.TimeoutMS) * time.Millisecond }
