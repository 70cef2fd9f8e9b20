package main

import (
	"bytes"
	"strings"
	"testing"
)

// Every command and subcommand answers -h and --help the same way: its
// usage on stdout, nothing on stderr, exit 0; the flags listed are its
// own, each with a one-word value type.
func TestHelp(t *testing.T) {
	for _, tc := range []struct {
		cmd    string   // the command line before -h
		want   []string // in the usage
		absent []string // flags of other subcommands
	}{
		{cmd: "", want: []string{"aibos serve", "aibos version"}},
		{cmd: "serve", want: []string{"Usage: aibos serve", "-data", "-join"}},
		{cmd: "policy", want: []string{"aibos policy lint", "aibos policy simulate"}},
		{cmd: "policy lint", want: []string{"-strict"}},
		{cmd: "policy test", want: []string{"-json"}},
		{cmd: "policy eval", want: []string{"-request", "-entities"}},
		{cmd: "policy publish", want: []string{"-message", "-author", "-dry-run"}},
		{cmd: "policy versions", want: []string{"-json"}},
		{cmd: "policy rollback", want: []string{"-to", "-message", "-author"}},
		{cmd: "policy diff", want: []string{"-json"}},
		{cmd: "policy simulate", want: []string{"-since"}},
		{cmd: "rollout", want: []string{"aibos rollout start", "aibos rollout promote"}},
		{cmd: "rollout start", want: []string{"-percent", "-bundle", "-author"}, absent: []string{"-reason"}},
		{cmd: "rollout status", absent: []string{"-author", "-percent", "-reason"}},
		{cmd: "rollout abort", want: []string{"-reason", "-id"}, absent: []string{"-percent"}},
		{cmd: "rollout promote", want: []string{"-reason"}, absent: []string{"-percent"}},
		{cmd: "check", want: []string{"-subject", "-request"}},
		{cmd: "tls", want: []string{"aibos tls ca create", "aibos tls cert create"}},
		{cmd: "tls ca create", want: []string{"-dir", "-days"}},
		{cmd: "tls cert create", want: []string{"-node", "-operator", "-ip"}},
		{cmd: "cluster recover", want: []string{"-peers", "-node-id"}},
		{cmd: "search", want: []string{"aibos search subject", "aibos search action"}},
		{cmd: "search subject", want: []string{"-type", "-resource", "-limit"}},
		{cmd: "search resource", want: []string{"-subject", "-type"}},
		{cmd: "search action", want: []string{"-subject", "-resource"}},
		{cmd: "entities", want: []string{"aibos entities put"}},
		{cmd: "entities put", want: []string{"-server"}},
		{cmd: "agent", want: []string{"aibos agent register", "aibos agent rotate"}},
		{cmd: "agent register", want: []string{"-json"}, absent: []string{"-capabilities", "-skill"}},
		{cmd: "agent import-card", want: []string{"-capabilities", "-tenant"}, absent: []string{"-skill"}},
		{cmd: "agent list", want: []string{"-capability", "-skill"}, absent: []string{"-capabilities"}},
		{cmd: "agent get", absent: []string{"-skill"}},
		{cmd: "agent stats"},
		{cmd: "agent retire"},
		{cmd: "agent rotate"},
		{cmd: "orchestra", want: []string{"aibos orchestra put"}},
		{cmd: "orchestra put"},
		{cmd: "orchestra list"},
		{cmd: "orchestra get"},
		{cmd: "orchestra delete"},
		{cmd: "action", want: []string{"aibos action list"}},
		{cmd: "action list", want: []string{"-risk", "-orchestra"}},
		{cmd: "invoke", want: []string{"-input", "-token", "-wait"}},
		{cmd: "approval", want: []string{"aibos approval approve", "aibos approval deny"}},
		{cmd: "approval list", want: []string{"-state"}, absent: []string{"-as", "-wait"}},
		{cmd: "approval get", want: []string{"-wait"}, absent: []string{"-as", "-state"}},
		{cmd: "approval approve", want: []string{"-as", "-reason"}, absent: []string{"-state", "-wait"}},
		{cmd: "approval deny", want: []string{"-as", "-reason"}, absent: []string{"-state", "-wait"}},
		{cmd: "kill", want: []string{"aibos kill set", "aibos kill lift"}},
		{cmd: "kill set", want: []string{"-scope", "-target", "-reason"}, absent: []string{"-all"}},
		{cmd: "kill lift", want: []string{"-by"}, absent: []string{"-all", "-scope"}},
		{cmd: "kill list", want: []string{"-all"}, absent: []string{"-scope", "-reason"}},
		{cmd: "audit", want: []string{"aibos audit verify"}},
		{cmd: "audit verify", want: []string{"-data"}},
		{cmd: "audit query", want: []string{"-agent"}},
		{cmd: "audit export", want: []string{"-agent"}},
		{cmd: "cluster", want: []string{"aibos cluster status"}},
		{cmd: "cluster status", want: []string{"-json"}},
		{cmd: "region", want: []string{"aibos region list", "aibos region promote", "aibos region status"}},
		{cmd: "region list", want: []string{"-json", "-server"}, absent: []string{"-domain", "-endpoint"}},
		{cmd: "region add", want: []string{"-domain", "-endpoint", "-standby"}, absent: []string{"-json"}},
		{cmd: "region promote", want: []string{"point --server at region ID"}, absent: []string{"-json", "-domain"}},
		{cmd: "region failover", absent: []string{"-json", "-domain"}},
		{cmd: "region status", want: []string{"-json"}, absent: []string{"-domain"}},
		{cmd: "tenant", want: []string{"aibos tenant add", "aibos tenant list"}},
		{cmd: "tenant add", want: []string{"-home"}, absent: []string{"-json"}},
		{cmd: "tenant list", want: []string{"-json"}, absent: []string{"-home"}},
		{cmd: "bench", want: []string{"-concurrency"}},
		{cmd: "failover-bench", want: []string{"-rounds"}},
	} {
		for _, h := range []string{"-h", "--help"} {
			args := append(strings.Fields(tc.cmd), h)
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				var out, errb bytes.Buffer
				code := run(args, strings.NewReader(""), &out, &errb)
				usage := out.String()
				if code != exitOK || errb.Len() != 0 || !strings.Contains(usage, "Usage") {
					t.Fatalf("exit %d, want 0 with the usage on stdout and nothing on stderr\nstdout: %s\nstderr: %s", code, usage, errb.String())
				}
				for _, w := range tc.want {
					if !strings.Contains(usage, w) {
						t.Errorf("usage lacks %q:\n%s", w, usage)
					}
				}
				for _, line := range strings.Split(usage, "\n") {
					// "  -name type", or "  -x\tusage" for a one-letter flag.
					f := strings.Fields(strings.SplitN(line, "\t", 2)[0])
					if strings.HasPrefix(line, "  -") && len(f) > 2 {
						t.Errorf("flag line %q: the value type is more than one word (a backquoted phrase in the flag's usage)", line)
					}
					for _, a := range tc.absent {
						if len(f) > 0 && f[0] == a {
							t.Errorf("usage lists %s, a flag of another subcommand:\n%s", a, usage)
						}
					}
				}
				if strings.Contains(usage, "help requested") {
					t.Errorf("usage says the flag package's error:\n%s", usage)
				}
			})
		}
	}
}

// A bad flag or a missing subcommand is an error: what is wrong and the
// usage on stderr, exit 2; nothing on stdout.
func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{}, {"policy"}, {"approval"}, {"agent"}, {"kill"}, {"cluster"}, {"entities"}, {"action"}, {"rollout"},
		{"serve", "--bogus"}, {"policy", "publish", "--bogus"}, {"kill", "set", "--all"}, {"approval", "list", "--as", "x"},
		{"cluster", "frob"}, {"agent", "frob"}, {"region"}, {"tenant"}, {"region", "frob"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(args, strings.NewReader(""), &out, &errb)
			if code != exitInvalid || out.Len() != 0 || !strings.Contains(errb.String(), "Usage") {
				t.Fatalf("exit %d, want 2 with the usage on stderr only\nstdout: %s\nstderr: %s", code, out.String(), errb.String())
			}
		})
	}
}

// aibos --version and aibos version print one line naming the binary.
func TestVersion(t *testing.T) {
	for _, arg := range []string{"--version", "-version", "version"} {
		var out, errb bytes.Buffer
		if code := run([]string{arg}, nil, &out, &errb); code != exitOK || !strings.HasPrefix(out.String(), "aibos ") || strings.Count(out.String(), "\n") != 1 {
			t.Errorf("aibos %s: exit %d, stdout %q, stderr %q", arg, code, out.String(), errb.String())
		}
	}
	// aibos help COMMAND is COMMAND's help.
	var out, errb bytes.Buffer
	if code := run([]string{"help", "approval", "deny"}, nil, &out, &errb); code != exitOK || !strings.Contains(out.String(), "Usage: aibos approval deny") {
		t.Errorf("aibos help approval deny: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
}
