package main

import (
	"context"
	"encoding/json"
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

// cmdAgent runs `aibos agent register|import-card|list|get|stats|retire|rotate`.
func cmdAgent(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if code, ok := groupHelp(args, agentUsage, stdout, stderr); !ok {
		return code
	}
	sub, rest := args[0], args[1:]
	if isAgentRuntime(sub) {
		return cmdAgentRuntime(sub, rest, stdout, stderr)
	}
	fs := newFlags("agent "+sub, agentUsage, stdout, stderr)
	server := serverFlag(fs)
	asJSON := fs.Bool("json", false, "print the answer as JSON")
	var f client.AgentFilter
	var imp api.A2AImport
	switch sub {
	case "list":
		fs.synopsis = "Usage: aibos agent list [flags]\n\nDiscover registered agents."
		fs.StringVar(&f.Capability, "capability", "", "agents with a capability covering this action")
		fs.StringVar(&f.Skill, "skill", "", "agents with a skill of this id or tag")
		fs.StringVar(&f.Label, "label", "", "agents with this label (key=value)")
		fs.StringVar(&f.Tenant, "tenant", "", "agents of this tenant")
		fs.StringVar(&f.State, "state", "", "active or retired")
	case "import-card":
		fs.synopsis = "Usage: aibos agent import-card CARD.json --capabilities P,... [--id ID] [--tenant T] [--owner O] [--server URL]\n\nRegister an agent from its A2A Agent Card; prints its token once."
		fs.StringVar(&imp.ID, "id", "", "the agent's id (default: from the card's name)")
		fs.StringVar(&imp.Tenant, "tenant", "", "the agent's tenant")
		fs.StringVar(&imp.Owner, "owner", "", "the agent's owner")
		fs.Func("capabilities", "action patterns the agent may ask for, comma-separated (the card does not say)", func(v string) error {
			imp.Capabilities = strings.Split(v, ",")
			return nil
		})
	case "register":
		fs.synopsis = "Usage: aibos agent register FILE|- [--json] [--server URL]\n\nRegister an agent from its manifest (YAML or JSON); prints its token once."
	case "get", "retire", "rotate", "stats":
		fs.synopsis = "Usage: aibos agent " + sub + " ID [--json] [--server URL]"
	default:
		return unknownSub("agent", sub, agentUsage, stderr)
	}
	var arg string
	if sub == "list" {
		if code, ok := fs.parse(rest); !ok {
			return code
		}
	} else {
		var err error
		if arg, err = parseWithPath(fs, rest); err != nil {
			if errors.Is(err, errMissingArg) {
				err = fmt.Errorf("give the %s", map[bool]string{true: "manifest FILE", false: "agent ID"}[sub == "register" || sub == "import-card"])
			}
			return fs.fail(err)
		}
	}
	c, err := newClient(fs, *server)
	if err != nil {
		return apiFail(stderr, "agent "+sub, err)
	}
	ctx := context.Background()
	var out any
	switch sub {
	case "register", "import-card":
		data, err := readInput(arg, stdin)
		if err != nil {
			fmt.Fprintf(stderr, "aibos agent %s: %v\n", sub, err)
			return exitInvalid
		}
		var m api.AgentManifest
		if sub == "register" {
			if err = policy.DecodeStrict(inputName(arg), data, &m); err != nil {
				fmt.Fprintf(stderr, "aibos agent register: %v\n", err)
				return exitInvalid
			}
		} else if m, err = api.ManifestFromA2ACard(data, imp); err != nil {
			fmt.Fprintf(stderr, "aibos agent %s: %s: %v\n", sub, inputName(arg), err)
			return exitInvalid
		}
		reg, err := c.RegisterAgent(ctx, m)
		if err != nil {
			return apiFail(stderr, "agent register", err)
		}
		if *asJSON {
			out = reg
			break
		}
		if reg.Token == "" {
			fmt.Fprintf(stdout, "agent %s version %s was already registered with this manifest; nothing changed (rotate for a new token)\n", reg.Agent.ID, reg.Agent.Version)
			return exitOK
		}
		fmt.Fprintf(stdout, "registered agent %s version %s at revision %d\ntoken (shown once, store it now): %s\n", reg.Agent.ID, reg.Agent.Version, reg.Agent.Revision, reg.Token)
		return exitOK
	case "list":
		as, err := c.ListAgents(ctx, f)
		if err != nil {
			return apiFail(stderr, "agent list", err)
		}
		if *asJSON {
			out = as
			break
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tVERSION\tTENANT\tSTATE\tCAPABILITIES")
		for _, a := range as {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.ID, a.Version, a.Tenant, a.State, strings.Join(a.Capabilities, ","))
		}
		_ = tw.Flush()
		return exitOK
	case "get":
		if out, err = c.Agent(ctx, arg); err != nil {
			return apiFail(stderr, "agent get", err)
		}
	case "stats":
		if out, err = c.AgentStats(ctx, arg); err != nil {
			return apiFail(stderr, "agent stats", err)
		}
	case "retire":
		a, err := c.RetireAgent(ctx, arg)
		if err != nil {
			return apiFail(stderr, "agent retire", err)
		}
		if !*asJSON {
			fmt.Fprintf(stdout, "retired agent %s at revision %d; its credential is revoked\n", a.ID, a.Revision)
			return exitOK
		}
		out = a
	case "rotate":
		cr, err := c.RotateAgentCredential(ctx, arg)
		if err != nil {
			return apiFail(stderr, "agent rotate", err)
		}
		if !*asJSON {
			fmt.Fprintf(stdout, "new token for agent %s (shown once; the old one no longer works): %s\n", cr.ID, cr.Token)
			return exitOK
		}
		out = cr
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
	return exitOK
}

// decodeManifest reads a manifest in YAML or JSON (JSON is YAML), refusing
// unknown fields so a typo is not silently dropped.
func decodeManifest(data []byte) (api.AgentManifest, error) {
	var m api.AgentManifest
	err := policy.DecodeStrict("manifest", data, &m)
	return m, err
}
