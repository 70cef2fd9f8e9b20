package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/policy"
)

const agentUsage = `Usage: aibos agent register|import-card|list|get|stats|retire|rotate|deploy|start|stop|status|upgrade [flags]

  aibos agent register FILE|-                    register an agent from its manifest (YAML or JSON); prints its token once
  aibos agent import-card CARD.json --capabilities P,... [--id ID] [--tenant T] [--owner O]
                                                 register an agent from its A2A Agent Card
  aibos agent list [--capability X] [--skill S] [--label k=v] [--tenant T] [--state S]
  aibos agent get ID                             one agent as JSON (never its credential)
  aibos agent stats ID                           the answering node's invocation counters for the agent
  aibos agent retire ID                          retire the agent; its credential is revoked
  aibos agent rotate ID                          a new token; the old one stops working
  aibos agent deploy ID --module FILE.wasm       deploy a WebAssembly module for the agent to run in the kernel's sandbox
  aibos agent start ID | stop ID | status ID     run, stop, or show the agent's sandboxed run
  aibos agent upgrade ID --version V             hot-swap the running agent to version V, rolled back on failure

Every subcommand takes --server URL and --json.`

// cmdAgent runs `aibos agent SUBCOMMAND`: the registry's subcommands here,
// the sandbox's in agent_runtime.go.
func cmdAgent(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if code, ok := groupHelp(args, agentUsage, stdout, stderr); !ok {
		return code
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "register":
		return agentRegister(rest, stdin, stdout, stderr)
	case "import-card":
		return agentImportCard(rest, stdin, stdout, stderr)
	case "list":
		return agentList(rest, stdout, stderr)
	case "get":
		return agentOp(sub, rest, stdout, stderr, (*client.Client).Agent, nil)
	case "stats":
		return agentOp(sub, rest, stdout, stderr, (*client.Client).AgentStats, nil)
	case "retire":
		return agentOp(sub, rest, stdout, stderr, (*client.Client).RetireAgent, func(w io.Writer, ag api.Agent) {
			fmt.Fprintf(w, "retired agent %s at revision %d; its credential is revoked\n", ag.ID, ag.Revision)
		})
	case "rotate":
		return agentOp(sub, rest, stdout, stderr, (*client.Client).RotateAgentCredential, func(w io.Writer, cr api.AgentCredential) {
			fmt.Fprintf(w, "new token for agent %s (shown once; the old one no longer works): %s\n", cr.ID, cr.Token)
		})
	case "deploy":
		return agentDeploy(rest, stdout, stderr)
	case "start":
		return agentRun("start", rest, stdout, stderr, (*client.Client).StartAgent)
	case "stop":
		return agentRun("stop", rest, stdout, stderr, (*client.Client).StopAgent)
	case "status":
		return agentRun("status", rest, stdout, stderr, (*client.Client).AgentRuntime)
	case "upgrade":
		return agentUpgrade(rest, stdout, stderr)
	default:
		return unknownSub("agent", sub, agentUsage, stderr)
	}
}

// agentCmd is what every `aibos agent` subcommand shares: its flags, with
// --server and --json.
type agentCmd struct {
	*flags
	sub    string
	server *string
	asJSON *bool
}

// newAgentCmd makes the flags of `aibos agent SUB`.
func newAgentCmd(sub, synopsis string, stdout, stderr io.Writer) *agentCmd {
	fs := newFlags("agent "+sub, synopsis, stdout, stderr)
	return &agentCmd{flags: fs, sub: sub, server: serverFlag(fs), asJSON: fs.Bool("json", false, "print the answer as JSON")}
}

// parseArg parses the flags and the one positional argument, which a
// missing-argument error calls what.
func (a *agentCmd) parseArg(args []string, what string) (arg string, code int, ok bool) {
	arg, err := parseWithPath(a.flags, args)
	if err != nil {
		if errors.Is(err, errMissingArg) {
			err = fmt.Errorf("give the %s", what)
		}
		return "", a.fail(err), false
	}
	return arg, exitOK, true
}

// client is the client of --server.
func (a *agentCmd) client() (c *client.Client, code int, ok bool) {
	c, err := newClient(a.flags, *a.server)
	if err != nil {
		return nil, apiFail(a.stderr, "agent "+a.sub, err), false
	}
	return c, exitOK, true
}

// printJSON prints v as indented JSON and returns exit 0.
func (a *agentCmd) printJSON(v any) int {
	printJSON(a.stdout, v)
	return exitOK
}

// agentOp runs `aibos agent SUB ID [--json]`: op's answer, printed by
// text unless --json (as JSON always when text is nil).
func agentOp[T any](sub string, args []string, stdout, stderr io.Writer,
	op func(*client.Client, context.Context, string) (T, error), text func(io.Writer, T)) int {
	a := newAgentCmd(sub, "Usage: aibos agent "+sub+" ID [--json] [--server URL]", stdout, stderr)
	id, code, ok := a.parseArg(args, "agent ID")
	if !ok {
		return code
	}
	c, code, ok := a.client()
	if !ok {
		return code
	}
	v, err := op(c, context.Background(), id)
	if err != nil {
		return apiFail(stderr, "agent "+sub, err)
	}
	if text == nil || *a.asJSON {
		return a.printJSON(v)
	}
	text(stdout, v)
	return exitOK
}

func agentRegister(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := newAgentCmd("register", "Usage: aibos agent register FILE|- [--json] [--server URL]\n\nRegister an agent from its manifest (YAML or JSON); prints its token once.", stdout, stderr)
	return a.registerFrom(args, stdin, decodeManifest)
}

func agentImportCard(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := newAgentCmd("import-card", "Usage: aibos agent import-card CARD.json --capabilities P,... [--id ID] [--tenant T] [--owner O] [--server URL]\n\nRegister an agent from its A2A Agent Card; prints its token once.", stdout, stderr)
	var imp api.A2AImport
	a.StringVar(&imp.ID, "id", "", "the agent's id (default: from the card's name)")
	a.StringVar(&imp.Tenant, "tenant", "", "the agent's tenant")
	a.StringVar(&imp.Owner, "owner", "", "the agent's owner")
	a.Func("capabilities", "action patterns the agent may ask for, comma-separated (the card does not say)", func(v string) error {
		imp.Capabilities = strings.Split(v, ",")
		return nil
	})
	return a.registerFrom(args, stdin, func(name string, data []byte) (api.AgentManifest, error) {
		m, err := api.ManifestFromA2ACard(data, imp)
		if err != nil {
			return m, fmt.Errorf("%s: %w", name, err)
		}
		return m, nil
	})
}

// registerFrom parses the flags and the FILE argument, reads it (- is
// stdin), decodes it into a manifest and registers it.
func (a *agentCmd) registerFrom(args []string, stdin io.Reader, decode func(name string, data []byte) (api.AgentManifest, error)) int {
	arg, code, ok := a.parseArg(args, "manifest FILE")
	if !ok {
		return code
	}
	c, code, ok := a.client()
	if !ok {
		return code
	}
	data, err := readInput(arg, stdin)
	var m api.AgentManifest
	if err == nil {
		m, err = decode(inputName(arg), data)
	}
	if err != nil {
		fmt.Fprintf(a.stderr, "aibos agent %s: %v\n", a.sub, err)
		return exitInvalid
	}
	return a.register(c, m)
}

// register registers m and prints the agent and its token, which is
// shown only this once.
func (a *agentCmd) register(c *client.Client, m api.AgentManifest) int {
	reg, err := c.RegisterAgent(context.Background(), m)
	if err != nil {
		return apiFail(a.stderr, "agent register", err)
	}
	if *a.asJSON {
		return a.printJSON(reg)
	}
	if reg.Token == "" {
		fmt.Fprintf(a.stdout, "agent %s version %s was already registered with this manifest; nothing changed (rotate for a new token)\n", reg.Agent.ID, reg.Agent.Version)
		return exitOK
	}
	fmt.Fprintf(a.stdout, "registered agent %s version %s at revision %d\ntoken (shown once, store it now): %s\n", reg.Agent.ID, reg.Agent.Version, reg.Agent.Revision, reg.Token)
	return exitOK
}

func agentList(args []string, stdout, stderr io.Writer) int {
	a := newAgentCmd("list", "Usage: aibos agent list [flags]\n\nDiscover registered agents.", stdout, stderr)
	var f client.AgentFilter
	a.StringVar(&f.Capability, "capability", "", "agents with a capability covering this action")
	a.StringVar(&f.Skill, "skill", "", "agents with a skill of this id or tag")
	a.StringVar(&f.Label, "label", "", "agents with this label (key=value)")
	a.StringVar(&f.Tenant, "tenant", "", "agents of this tenant")
	a.StringVar(&f.State, "state", "", "active or retired")
	if code, ok := a.parse(args); !ok {
		return code
	}
	c, code, ok := a.client()
	if !ok {
		return code
	}
	as, err := c.ListAgents(context.Background(), f)
	if err != nil {
		return apiFail(stderr, "agent list", err)
	}
	if *a.asJSON {
		return a.printJSON(as)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tVERSION\tTENANT\tSTATE\tCAPABILITIES")
	for _, ag := range as {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", ag.ID, ag.Version, ag.Tenant, ag.State, strings.Join(ag.Capabilities, ","))
	}
	_ = tw.Flush()
	return exitOK
}

// decodeManifest reads a manifest in YAML or JSON (JSON is YAML), refusing
// unknown fields so a typo is not silently dropped; name is where it came
// from, for the errors.
func decodeManifest(name string, data []byte) (api.AgentManifest, error) {
	var m api.AgentManifest
	err := policy.DecodeStrict(name, data, &m)
	return m, err
}
