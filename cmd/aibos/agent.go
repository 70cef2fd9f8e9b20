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

const agentUsage = "Usage: aibos agent register FILE|- | list [--capability X] [--skill S] [--label k=v] [--tenant T] | get ID | retire ID | rotate ID   [--server URL]"

// cmdAgent runs `aibos agent register|list|get|retire|rotate`.
func cmdAgent(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, agentUsage)
		return exitInvalid
	}
	sub, rest := args[0], args[1:]
	fs := flag.NewFlagSet("agent "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := serverFlag(fs)
	asJSON := fs.Bool("json", false, "print the answer as JSON")
	var f client.AgentFilter
	switch sub {
	case "list":
		fs.StringVar(&f.Capability, "capability", "", "agents with a capability covering this action")
		fs.StringVar(&f.Skill, "skill", "", "agents with a skill of this id or tag")
		fs.StringVar(&f.Label, "label", "", "agents with this label (key=value)")
		fs.StringVar(&f.Tenant, "tenant", "", "agents of this tenant")
		fs.StringVar(&f.State, "state", "", "active or retired")
	case "register", "get", "retire", "rotate":
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
			fmt.Fprintf(stderr, "aibos agent %s: give the %s\n", sub, map[bool]string{true: "manifest FILE", false: "agent ID"}[sub == "register"])
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
	case "register":
		data, err := readInput(arg, stdin)
		if err != nil {
			fmt.Fprintf(stderr, "aibos agent register: %v\n", err)
			return exitInvalid
		}
		m, err := decodeManifest(data)
		if err != nil {
			fmt.Fprintf(stderr, "aibos agent register: %s: %v\n", arg, err)
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
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return m, err
	}
	j, err := json.Marshal(doc)
	if err != nil {
		return m, fmt.Errorf("manifest is not a JSON-compatible document: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return m, err
	}
	return m, nil
}
