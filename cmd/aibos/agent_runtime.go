package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
)

const agentRuntimeUsage = "Usage: aibos agent deploy ID --module FILE.wasm | start ID | stop ID | status ID | upgrade ID --version V   [--server URL] [--json]"

// The sandbox subcommands of aibos agent, deploy, start, stop, status and
// upgrade: agents that run in the kernel's WebAssembly sandbox.

func agentDeploy(args []string, stdout, stderr io.Writer) int {
	a := newAgentCmd("deploy", agentRuntimeUsage, stdout, stderr)
	module := a.String("module", "", "the agent's module (GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o FILE.wasm)")
	id, code, ok := a.parseArg(args, "agent ID")
	if !ok {
		return code
	}
	if *module == "" {
		fmt.Fprintf(stderr, "aibos agent deploy: give the module with --module FILE.wasm\n")
		return exitInvalid
	}
	c, code, ok := a.client()
	if !ok {
		return code
	}
	wasm, err := os.ReadFile(*module)
	if err != nil {
		fmt.Fprintf(stderr, "aibos agent deploy: %v\n", err)
		return exitInvalid
	}
	m, err := c.DeployModule(context.Background(), id, wasm)
	if err != nil {
		return apiFail(stderr, "agent deploy", err)
	}
	if *a.asJSON {
		return a.printJSON(m)
	}
	fmt.Fprintf(stdout, "deployed module sha256:%s (%d bytes) for agent %s version %s at revision %d\n", m.SHA256, m.Size, m.Agent, m.Version, m.Revision)
	return exitOK
}

// agentRun runs `aibos agent start|stop|status ID`: op asks for the
// change (or none) and answers with the agent's run.
func agentRun(sub string, args []string, stdout, stderr io.Writer, op func(*client.Client, context.Context, string) (api.AgentRuntime, error)) int {
	a := newAgentCmd(sub, agentRuntimeUsage, stdout, stderr)
	id, code, ok := a.parseArg(args, "agent ID")
	if !ok {
		return code
	}
	c, code, ok := a.client()
	if !ok {
		return code
	}
	r, err := op(c, context.Background(), id)
	return a.printRuntime(r, err)
}

func agentUpgrade(args []string, stdout, stderr io.Writer) int {
	a := newAgentCmd("upgrade", agentRuntimeUsage, stdout, stderr)
	version := a.String("version", "", "the registered version to run (it needs a module); rolled back automatically if it fails in its probation")
	id, code, ok := a.parseArg(args, "agent ID")
	if !ok {
		return code
	}
	if *version == "" {
		fmt.Fprintf(stderr, "aibos agent upgrade: give the version with --version V\n")
		return exitInvalid
	}
	c, code, ok := a.client()
	if !ok {
		return code
	}
	r, err := c.UpgradeAgent(context.Background(), id, *version)
	return a.printRuntime(r, err)
}

// printRuntime prints the agent's run, or err.
func (a *agentCmd) printRuntime(r api.AgentRuntime, err error) int {
	if err != nil {
		return apiFail(a.stderr, "agent "+a.sub, err)
	}
	if *a.asJSON {
		return a.printJSON(r)
	}
	w := a.stdout
	fmt.Fprintf(w, "agent %s: desired %s, state %s", r.Agent, r.Desired, r.State)
	if r.Node != "" {
		fmt.Fprintf(w, " on %s", r.Node)
	}
	if p := r.Placement; p != nil {
		if p.Node != r.Node {
			fmt.Fprintf(w, " (placed on %s)", p.Node)
		}
		fmt.Fprintf(w, ", epoch %d", p.Epoch)
	}
	fmt.Fprintf(w, ", version %s, restarts %d", r.Version, r.Restarts)
	if r.Timers > 0 {
		fmt.Fprintf(w, ", %d timers", r.Timers)
	}
	if r.RunVersion != "" && r.RunVersion != r.Version {
		fmt.Fprintf(w, ", moving to version %s", r.RunVersion)
	}
	if r.Healthy != nil {
		fmt.Fprintf(w, ", healthy %v", *r.Healthy)
	}
	if r.MemoryBytes > 0 {
		fmt.Fprintf(w, ", memory %d KiB", r.MemoryBytes>>10)
	}
	if r.LastError != "" {
		fmt.Fprintf(w, "\nlast error: %s", r.LastError)
	}
	fmt.Fprintln(w)
	return exitOK
}
