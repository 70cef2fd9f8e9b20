package store

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strconv"

	"github.com/hashicorp/go-hclog"
)

// hcLogger adapts raft's hclog.Logger to the slog.Logger the kernel is
// given, so raft's messages go where the rest of the node's go and obey its
// level. raft's Trace and Debug map to slog Debug.
type hcLogger struct {
	base    *slog.Logger // with implied args, without the name
	l       *slog.Logger // base plus the name
	name    string
	implied []any
}

func newHCLogger(l *slog.Logger) hclog.Logger { return mkHCLogger(l, "", nil) }

func mkHCLogger(base *slog.Logger, name string, implied []any) *hcLogger {
	l := base
	if name != "" {
		l = base.With("logger", name)
	}
	return &hcLogger{base: base, l: l, name: name, implied: implied}
}

func slogLevel(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace, hclog.Debug:
		return slog.LevelDebug
	case hclog.Info, hclog.NoLevel, hclog.DefaultLevel:
		return slog.LevelInfo
	case hclog.Warn:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (h *hcLogger) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off {
		return
	}
	h.l.Log(context.Background(), slogLevel(level), msg, hcArgs(args)...)
}

// hcArgs renders raft's key-value pairs as hclog would, for slog: an
// hclog.Fmt value formatted (slog would print its format and arguments
// as a list), hclog's number and quote wrappers formatted, a Stringer or
// an error as its text (slog would print a struct such as *raft.Raft as
// {}). raft's own "node" (a description of the raft instance) becomes
// "raft_node": the node's logger already says "node" (its id), and a
// second key of that name makes the JSON line ambiguous.
func hcArgs(args []any) []any {
	out := make([]any, len(args))
	copy(out, args)
	for i := 0; i+1 < len(out); i += 2 {
		if out[i] == "node" {
			out[i] = "raft_node"
		}
		switch v := out[i+1].(type) {
		case hclog.Format:
			if len(v) > 0 {
				if f, ok := v[0].(string); ok {
					out[i+1] = fmt.Sprintf(f, v[1:]...)
					continue
				}
			}
			out[i+1] = fmt.Sprint(v...)
		case hclog.Hex:
			out[i+1] = fmt.Sprintf("0x%x", int(v))
		case hclog.Octal:
			out[i+1] = fmt.Sprintf("0%o", int(v))
		case hclog.Binary:
			out[i+1] = fmt.Sprintf("0b%b", int(v))
		case hclog.Quote:
			out[i+1] = strconv.Quote(string(v))
		case error:
			if v != nil {
				out[i+1] = v.Error()
			}
		case fmt.Stringer:
			if v != nil {
				out[i+1] = v.String()
			}
		}
	}
	return out
}

func (h *hcLogger) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hcLogger) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hcLogger) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hcLogger) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hcLogger) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *hcLogger) enabled(l slog.Level) bool { return h.l.Enabled(context.Background(), l) }

func (h *hcLogger) IsTrace() bool { return h.enabled(slog.LevelDebug) }
func (h *hcLogger) IsDebug() bool { return h.enabled(slog.LevelDebug) }
func (h *hcLogger) IsInfo() bool  { return h.enabled(slog.LevelInfo) }
func (h *hcLogger) IsWarn() bool  { return h.enabled(slog.LevelWarn) }
func (h *hcLogger) IsError() bool { return h.enabled(slog.LevelError) }

func (h *hcLogger) ImpliedArgs() []any { return h.implied }

func (h *hcLogger) With(args ...any) hclog.Logger {
	return mkHCLogger(h.base.With(hcArgs(args)...), h.name, append(h.implied[:len(h.implied):len(h.implied)], args...))
}

func (h *hcLogger) Name() string { return h.name }

func (h *hcLogger) Named(name string) hclog.Logger {
	if h.name != "" {
		name = h.name + "." + name
	}
	return h.ResetNamed(name)
}

func (h *hcLogger) ResetNamed(name string) hclog.Logger {
	return mkHCLogger(h.base, name, h.implied)
}

// SetLevel is ignored: the slog handler owns the level.
func (h *hcLogger) SetLevel(hclog.Level) {}

func (h *hcLogger) GetLevel() hclog.Level {
	switch {
	case h.IsDebug():
		return hclog.Debug
	case h.IsInfo():
		return hclog.Info
	case h.IsWarn():
		return hclog.Warn
	default:
		return hclog.Error
	}
}

func (h *hcLogger) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return slog.NewLogLogger(h.l.Handler(), slog.LevelInfo)
}

func (h *hcLogger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	return h.StandardLogger(opts).Writer()
}
