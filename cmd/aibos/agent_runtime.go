package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/aibos/kernel/api"
)

const agentRuntimeUsage = "Usage: aibos agent deploy ID --module FILE.wasm | start ID | stop ID | status ID | upgrade ID --version V   [--server URL] [--json]"

// isAgentRuntime reports whether sub is a sandbox subcommand of aibos agent.
func isAgentRuntime(sub string) bool {
	switch sub {
	case "deploy", "start", "stop", "status", "upgrade":
		return true
	}
	return false
}

// cmdAgentRuntime runs `aibos agent deploy|start|stop|status`: agents that
// run in the kernel's WebAssembly sandbox.
func cmdAgentRuntime(sub string, rest []string, stdout, stderr io.Writer) int {
	fs := newFlags("agent "+sub, agentRuntimeUsage, stdout, stderr)
	server := serverFlag(fs)
	asJSON := fs.Bool("json", false, "print the answer as JSON")
	module, version := "", ""
	if sub == "upgrade" {
		fs.StringVar(&version, "version", "", "the registered version to run (it needs a module); rolled back automatically if it fails in its probation")
	}
	if sub == "deploy" {
		fs.StringVar(&module, "module", "", "the agent's module (GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o FILE.wasm)")
	}
	id, err := parseWithPath(fs, rest)
	if err != nil {
		if errors.Is(err, errMissingArg) {
			err = errors.New("give the agent ID")
		}
		return fs.fail(err)
	}
	if sub == "upgrade" && version == "" {
		fmt.Fprintf(stderr, "aibos agent upgrade: give the version with --version V\n")
		return exitInvalid
	}
	if sub == "deploy" && module == "" {
		fmt.Fprintf(stderr, "aibos agent deploy: give the module with --module FILE.wasm\n")
		return exitInvalid
	}
	c, err := newClient(fs, *server)
	if err != nil {
		return apiFail(stderr, "agent "+sub, err)
	}
	ctx := context.Background()
	var out any
	switch sub {
	case "deploy":
		wasm, err := os.ReadFile(module)
		if err != nil {
			fmt.Fprintf(stderr, "aibos agent deploy: %v\n", err)
			return exitInvalid
		}
		m, err := c.DeployModule(ctx, id, wasm)
		if err != nil {
			return apiFail(stderr, "agent deploy", err)
		}
		if !*asJSON {
			fmt.Fprintf(stdout, "deployed module sha256:%s (%d bytes) for agent %s version %s at revision %d\n", m.SHA256, m.Size, m.Agent, m.Version, m.Revision)
			return exitOK
		}
		out = m
	default:
		var r api.AgentRuntime
		switch sub {
		case "start":
			r, err = c.StartAgent(ctx, id)
		case "stop":
			r, err = c.StopAgent(ctx, id)
		case "upgrade":
			r, err = c.UpgradeAgent(ctx, id, version)
		default:
			r, err = c.AgentRuntime(ctx, id)
		}
		if err != nil {
			return apiFail(stderr, "agent "+sub, err)
		}
		if !*asJSON {
			fmt.Fprintf(stdout, "agent %s: desired %s, state %s", r.Agent, r.Desired, r.State)
			if r.Node != "" {
				fmt.Fprintf(stdout, " on %s", r.Node)
			}
			fmt.Fprintf(stdout, ", version %s, restarts %d", r.Version, r.Restarts)
			if r.RunVersion != "" && r.RunVersion != r.Version {
				fmt.Fprintf(stdout, ", moving to version %s", r.RunVersion)
			}
			if r.Healthy != nil {
				fmt.Fprintf(stdout, ", healthy %v", *r.Healthy)
			}
			if r.MemoryBytes > 0 {
				fmt.Fprintf(stdout, ", memory %d KiB", r.MemoryBytes>>10)
			}
			if r.LastError != "" {
				fmt.Fprintf(stdout, "\nlast error: %s", r.LastError)
			}
			fmt.Fprintln(stdout)
			return exitOK
		}
		out = r
	}
	printJSON(stdout, out)
	return exitOK
}
