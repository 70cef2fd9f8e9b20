package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
)

// Help is the same for every command and subcommand: -h, -help, --help
// (and `aibos help COMMAND`) print the usage on stdout and exit 0; a bad
// flag prints what is wrong and the usage on stderr and exits 2.

// isHelp reports whether arg asks for help in place of a subcommand.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "help":
		return true
	}
	return false
}

// flags is a command's flag set with its usage. The flag package's own
// messages are discarded: parse and fail print them, so help goes to
// stdout and errors to stderr.
type flags struct {
	*flag.FlagSet
	synopsis       string // "Usage: aibos ..." and what the command does; the flags follow
	stdout, stderr io.Writer
}

// newFlags makes the flag set of `aibos NAME`.
func newFlags(name, synopsis string, stdout, stderr io.Writer) *flags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &flags{FlagSet: fs, synopsis: synopsis, stdout: stdout, stderr: stderr}
}

// usage prints the synopsis and the flags to w.
func (f *flags) usage(w io.Writer) {
	fmt.Fprintln(w, strings.TrimRight(f.synopsis, "\n"))
	n := 0
	f.VisitAll(func(*flag.Flag) { n++ })
	if n == 0 {
		return
	}
	fmt.Fprintln(w, "\nFlags:")
	f.SetOutput(w)
	f.PrintDefaults()
	f.SetOutput(io.Discard)
}

// parse parses flags only (no positional arguments); ok is false when the
// command must stop with code: 0 after help, 2 after a bad flag or an
// unexpected argument.
func (f *flags) parse(args []string) (code int, ok bool) {
	if err := f.Parse(args); err != nil {
		return f.fail(err), false
	}
	if f.NArg() > 0 {
		return f.fail(fmt.Errorf("unexpected argument %q", f.Arg(0))), false
	}
	return exitOK, true
}

// fail ends a command whose arguments could not be parsed: help on stdout
// with exit 0 for -h/--help, otherwise the error and the usage on stderr
// with exit 2.
func (f *flags) fail(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		f.usage(f.stdout)
		return exitOK
	}
	fmt.Fprintf(f.stderr, "aibos %s: %v\n\n", f.Name(), err)
	f.usage(f.stderr)
	return exitInvalid
}

// groupHelp answers `aibos GROUP` with no subcommand (usage on stderr,
// exit 2) and `aibos GROUP -h` (usage on stdout, exit 0); ok is true when
// args name a subcommand to run.
func groupHelp(args []string, usage string, stdout, stderr io.Writer) (code int, ok bool) {
	switch {
	case len(args) == 0:
		fmt.Fprintln(stderr, strings.TrimRight(usage, "\n"))
		return exitInvalid, false
	case isHelp(args[0]):
		fmt.Fprintln(stdout, strings.TrimRight(usage, "\n"))
		return exitOK, false
	}
	return exitOK, true
}

// unknownSub reports an unknown subcommand of group with its usage.
func unknownSub(group, sub, usage string, stderr io.Writer) int {
	fmt.Fprintf(stderr, "aibos %s: unknown subcommand %q\n\n%s\n", group, sub, strings.TrimRight(usage, "\n"))
	return exitInvalid
}

// version describes this binary from its build information: the module
// version (a tag when installed with go install module@version, "(devel)"
// when built from a checkout), the VCS revision and the Go version.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "aibos (no build information)"
	}
	s := "aibos " + bi.Main.Version
	var rev, at, dirty string
	for _, kv := range bi.Settings {
		switch kv.Key {
		case "vcs.revision":
			rev = kv.Value
		case "vcs.time":
			at = kv.Value
		case "vcs.modified":
			if kv.Value == "true" {
				dirty = ", modified"
			}
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		s += fmt.Sprintf(" (commit %s %s%s)", rev, at, dirty)
	}
	return s + " " + bi.GoVersion
}
