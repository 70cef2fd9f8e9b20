package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"go.yaml.in/yaml/v3"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
)

const agentUsage = "Usage: aibos agent register FILE|- | import-card CARD.json --capabilities P,... [--id ID] [--tenant T] [--owner O] | list [--capability X] [--skill S] [--label k=v] [--tenant T] | get ID | stats ID | retire ID | rotate ID | deploy ID --module FILE.wasm | start ID | stop ID | status ID | upgrade ID --version V   [--server URL]"

// cmdAgent runs `aibos agent register|list|get|retire|rotate`.
func cmdAgent(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, agentUsage)
		return exitInvalid
	}
	sub, rest := args[0], args[1:]
	if isAgentRuntime(sub) {
		return cmdAgentRuntime(sub, rest, stdout, stderr)
	}
	fs := flag.NewFlagSet("agent "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := serverFlag(fs)
	asJSON := fs.Bool("json", false, "print the answer as JSON")
	var f client.AgentFilter
	var imp api.A2AImport
	switch sub {
	case "list":
		fs.StringVar(&f.Capability, "capability", "", "agents with a capability covering this action")
		fs.StringVar(&f.Skill, "skill", "", "agents with a skill of this id or tag")
		fs.StringVar(&f.Label, "label", "", "agents with this label (key=value)")
		fs.StringVar(&f.Tenant, "tenant", "", "agents of this tenant")
		fs.StringVar(&f.State, "state", "", "active or retired")
	case "import-card":
		fs.StringVar(&imp.ID, "id", "", "the agent's id (default: from the card's name)")
		fs.StringVar(&imp.Tenant, "tenant", "", "the agent's tenant")
		fs.StringVar(&imp.Owner, "owner", "", "the agent's owner")
		fs.Func("capabilities", "action patterns the agent may ask for, comma-separated (the card does not say)", func(v string) error {
			imp.Capabilities = strings.Split(v, ",")
			return nil
		})
	case "register", "get", "retire", "rotate", "stats":
	default:
		fmt.Fprintf(stderr, "aibos agent: unknown subcommand %q\n%s\n", sub, agentUsage)
		return exitInvalid
	}
	var arg string
	if sub == "list" {
		if err := fs.Parse(rest); err != nil {
			return exitInvalid
		}
	} else {
		var err error
		if arg, err = parseWithPath(fs, rest); err != nil {
			fmt.Fprintf(stderr, "aibos agent %s: give the %s\n", sub, map[bool]string{true: "manifest FILE", false: "agent ID"}[sub == "register" || sub == "import-card"])
			return exitInvalid
		}
	}
	c, err := newClient(*server)
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
			m, err = decodeManifest(data)
		} else {
			m, err = api.ManifestFromA2ACard(data, imp)
		}
		if err != nil {
			fmt.Fprintf(stderr, "aibos agent %s: %s: %v\n", sub, arg, err)
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
	err := decodeStrictYAML(data, &m)
	return m, err
}

// decodeStrictYAML decodes a YAML or JSON document (JSON is YAML) into v
// through its JSON form, refusing unknown fields.
func decodeStrictYAML(data []byte, v any) error {
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return err
	}
	j, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("not a JSON-compatible document: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}
