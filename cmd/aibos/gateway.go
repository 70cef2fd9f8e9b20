package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/policy"
)

// The agent gateway's commands: orchestra, action, invoke, approval, kill.

const orchestraUsage = `Usage: aibos orchestra put|list|get|delete|accept [flags]

  aibos orchestra put FILE|-     create or replace an orchestra and its actions (YAML or JSON)
  aibos orchestra list           every orchestra, the kernel's own included
  aibos orchestra get NAME       one orchestra as JSON
  aibos orchestra delete NAME    delete an orchestra and its actions
  aibos orchestra accept NAME [TOOL]
                                 accept an MCP server's changed tool definitions (all, or TOOL's);
                                 the acceptor is your token's principal (--as NAME, if given, must be it)

Every subcommand takes --server URL.`

// cmdOrchestra runs `aibos orchestra put|list|get|delete`.
func cmdOrchestra(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if code, ok := groupHelp(args, orchestraUsage, stdout, stderr); !ok {
		return code
	}
	sub, rest := args[0], args[1:]
	fs := newFlags("orchestra "+sub, orchestraUsage, stdout, stderr)
	server := serverFlag(fs)
	as := fs.String("as", "", "accept: who accepts: your token's principal; if given, must be it")
	var arg, tool string
	switch sub {
	case "accept":
		var pos []string
		for {
			if err := fs.Parse(rest); err != nil {
				return exitInvalid
			}
			if fs.NArg() == 0 {
				break
			}
			pos, rest = append(pos, fs.Arg(0)), fs.Args()[1:]
		}
		if len(pos) == 0 || len(pos) > 2 {
			fmt.Fprintln(stderr, "aibos orchestra accept: give the orchestra NAME and optionally one TOOL (its name on the MCP server)")
			return exitInvalid
		}
		arg = pos[0]
		if len(pos) == 2 {
			tool = pos[1]
		}
	case "list":
		fs.synopsis = "Usage: aibos orchestra list [--server URL]\n\nEvery orchestra, the kernel's own included."
		if code, ok := fs.parse(rest); !ok {
			return code
		}
	case "put", "get", "delete":
		what := map[bool]string{true: "FILE|-", false: "NAME"}[sub == "put"]
		fs.synopsis = "Usage: aibos orchestra " + sub + " " + what + " [--server URL]"
		var err error
		if arg, err = parseWithPath(fs, rest); err != nil {
			if errors.Is(err, errMissingArg) {
				err = fmt.Errorf("give the %s", map[bool]string{true: "orchestra FILE (YAML or JSON)", false: "orchestra NAME"}[sub == "put"])
			}
			return fs.fail(err)
		}
	default:
		return unknownSub("orchestra", sub, orchestraUsage, stderr)
	}
	c, err := newClient(fs, *server)
	if err != nil {
		return apiFail(stderr, "orchestra "+sub, err)
	}
	ctx := context.Background()
	switch sub {
	case "put":
		data, err := readInput(arg, stdin)
		if err != nil {
			fmt.Fprintf(stderr, "aibos orchestra put: %v\n", err)
			return exitInvalid
		}
		var o api.Orchestra
		if err := policy.DecodeStrict(inputName(arg), data, &o); err != nil {
			fmt.Fprintf(stderr, "aibos orchestra put: %v\n", err)
			return exitInvalid
		}
		if strings.TrimSpace(o.Name) == "" {
			// The name is the URL's last segment: without it the request
			// would go to /v1/orchestras/ and come back as a bare 404/405.
			fmt.Fprintf(stderr, "aibos orchestra put: %s: the orchestra has no name (add name: ... at the top)\n", inputName(arg))
			return exitInvalid
		}
		out, err := c.PutOrchestra(ctx, o)
		if err != nil {
			return apiFail(stderr, "orchestra put", err)
		}
		fmt.Fprintf(stdout, "orchestra %s with %d actions at revision %d\n", out.Name, len(out.Actions), out.Revision)
	case "list":
		os, err := c.Orchestras(ctx)
		if err != nil {
			return apiFail(stderr, "orchestra list", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tBACKEND\tACTIONS\tURL")
		for _, o := range os {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", o.Name, o.Backend.Type, len(o.Actions), o.Backend.URL)
		}
		_ = tw.Flush()
	case "get":
		o, err := c.Orchestra(ctx, arg)
		if err != nil {
			return apiFail(stderr, "orchestra get", err)
		}
		printJSON(stdout, o)
	case "delete":
		if err := c.DeleteOrchestra(ctx, arg); err != nil {
			return apiFail(stderr, "orchestra delete", err)
		}
		fmt.Fprintf(stdout, "orchestra %s deleted\n", arg)
	case "accept":
		out, err := c.AcceptOrchestra(ctx, arg, tool, *as)
		if err != nil {
			return apiFail(stderr, "orchestra accept", err)
		}
		if len(out.Accepted) == 0 {
			fmt.Fprintf(stdout, "orchestra %s: no definition changed; nothing to accept\n", arg)
		} else {
			fmt.Fprintf(stdout, "orchestra %s: accepted the new definition of %s (revision %d)\n", arg, strings.Join(out.Accepted, ", "), out.Orchestra.Revision)
		}
	}
	return exitOK
}

// inputName names an input in messages: its file, or stdin for -.
func inputName(arg string) string {
	if arg == "-" {
		return "(stdin)"
	}
	return arg
}

// riskClasses are the risk classes of actions, for --risk.
func riskClasses() []string {
	return []string{api.RiskRead, api.RiskWrite, api.RiskDestructive, api.RiskExternal}
}

const actionUsage = "Usage: aibos action list [--orchestra NAME] [--risk read|write|destructive|external] [--server URL]\n\nEvery action agents can invoke, the kernel's own included."

// cmdAction runs `aibos action list`.
func cmdAction(args []string, stdout, stderr io.Writer) int {
	if code, ok := groupHelp(args, actionUsage, stdout, stderr); !ok {
		return code
	}
	if args[0] != "list" {
		return unknownSub("action", args[0], actionUsage, stderr)
	}
	fs := newFlags("action list", actionUsage, stdout, stderr)
	server := serverFlag(fs)
	orch := fs.String("orchestra", "", "only this orchestra's actions")
	risks := riskClasses()
	risk := fs.String("risk", "", "only actions of this risk class ("+strings.Join(risks, ", ")+")")
	if code, ok := fs.parse(args[1:]); !ok {
		return code
	}
	if *risk != "" && !slices.Contains(risks, *risk) {
		return fs.fail(fmt.Errorf("--risk %q: want one of %s", *risk, strings.Join(risks, ", ")))
	}
	c, err := newClient(fs, *server)
	if err != nil {
		return apiFail(stderr, "action list", err)
	}
	as, err := c.Actions(context.Background(), *orch, *risk)
	if err != nil {
		return apiFail(stderr, "action list", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACTION\tORCHESTRA\tRISK\tBACKEND\tDESCRIPTION")
	for _, a := range as {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.Name, a.Orchestra, a.Risk, a.Backend, a.Description)
	}
	_ = tw.Flush()
	return exitOK
}

const invokeUsage = "Usage: aibos invoke ACTION [--input JSON|@FILE|-] [--token T] [--idempotency-key K] [--approval ID] [--wait 5m] [--server URL]\n\nInvoke an action as an agent and print the answer. Exit 1 for any outcome but\ncompleted (held for approval, denied, failed, cancelled)."

// cmdInvoke runs `aibos invoke ACTION`: an agent's call, for scripts and
// for trying policies out.
func cmdInvoke(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("invoke", invokeUsage, stdout, stderr)
	server := serverFlag(fs)
	token := fs.String("token", os.Getenv("AIBOS_AGENT_TOKEN"), "the agent's token (env AIBOS_AGENT_TOKEN)")
	input := fs.String("input", "{}", "the input: JSON, @FILE, or - for stdin")
	key := fs.String("idempotency-key", "", "make a retried call run once")
	approval := fs.String("approval", "", "redeem this approved approval")
	wait := fs.Duration("wait", 0, "when the call is held for approval, wait up to this long for it, then redeem it")
	action, err := parseWithPath(fs, args)
	if err != nil {
		if errors.Is(err, errMissingArg) {
			err = errors.New("give the ACTION to invoke")
		}
		return fs.fail(err)
	}
	raw := []byte(*input)
	switch {
	case *input == "-":
		raw, err = io.ReadAll(io.LimitReader(stdin, 1<<20))
	case strings.HasPrefix(*input, "@"):
		raw, err = os.ReadFile((*input)[1:])
	}
	if err == nil && !json.Valid(raw) {
		err = errors.New("the input is not valid JSON")
	}
	if err != nil {
		fmt.Fprintf(stderr, "aibos invoke: --input: %v\n", err)
		return exitInvalid
	}
	// An invocation may run on its backend for up to the action's timeout
	// (at most 10 min): the client's default 30 s would cut it.
	// The agent's token for every call: waiting for its own approval too.
	c, err := client.New(strings.Split(*server, ","), client.Options{HTTPClient: httpClient(fs.FlagSet, invokeHTTPTimeout), Token: *token})
	if err != nil {
		return apiFail(stderr, "invoke", err)
	}
	ctx := context.Background()
	req := api.InvokeRequest{Input: raw, ApprovalID: *approval}
	resp, err := c.Invoke(ctx, *token, action, req, client.InvokeOptions{IdempotencyKey: *key})
	if err == nil && resp.Status == api.InvocationPendingApproval && *wait > 0 {
		fmt.Fprintf(stderr, "held for approval %s; waiting up to %s (approve with: aibos approval approve %s)\n", resp.ApprovalID, *wait, resp.ApprovalID)
		a, aerr := waitApproval(ctx, c, resp.ApprovalID, *wait)
		switch {
		case aerr != nil:
			printJSON(stdout, resp)
			fmt.Fprintf(stderr, "aibos invoke: waiting for approval %s: %v\n", resp.ApprovalID, aerr)
			return exitFailed
		case a.State == api.ApprovalApproved:
			req.ApprovalID = a.ID
			resp, err = c.Invoke(ctx, *token, action, req, client.InvokeOptions{IdempotencyKey: *key})
		case a.State != api.ApprovalPending:
			printJSON(stdout, resp)
			fmt.Fprintf(stderr, "aibos invoke: approval %s is %s (by %s: %s)\n", a.ID, a.State, a.DecidedBy, a.Reason)
			return exitFailed
		}
	}
	if resp.InvocationID != "" {
		printJSON(stdout, resp)
	}
	switch {
	case err != nil && resp.InvocationID == "":
		return apiFail(stderr, "invoke", err)
	case err != nil:
		// The kernel decided and answered (denied, failed, cancelled,
		// killed): the answer is on stdout, the reason on stderr too.
		fmt.Fprintf(stderr, "aibos invoke: %s: %v\n", resp.Status, err)
		return exitFailed
	case resp.Status == api.InvocationPendingApproval:
		fmt.Fprintf(stderr, "aibos invoke: held for approval %s; once approved, invoke again with the same input and --approval %s (or use --wait)\n", resp.ApprovalID, resp.ApprovalID)
		return exitFailed
	case resp.Status != api.InvocationCompleted:
		fmt.Fprintf(stderr, "aibos invoke: status %s\n", resp.Status)
		return exitFailed
	}
	return exitOK
}

// invokeHTTPTimeout bounds one invoke request: an action's backend timeout
// is at most 10 minutes.
const invokeHTTPTimeout = 11 * time.Minute

// waitApproval waits up to wait for an approval to leave the pending
// state, asking the node in long polls; it returns the approval as last
// seen (still pending if nobody decided in time).
func waitApproval(ctx context.Context, c *client.Client, id string, wait time.Duration) (api.Approval, error) {
	deadline := time.Now().Add(wait)
	for {
		left := time.Until(deadline)
		a, err := c.Approval(ctx, id, max(min(left, 60*time.Second), time.Millisecond))
		if err != nil || a.State != api.ApprovalPending || time.Until(deadline) <= 0 {
			return a, err
		}
	}
}

const approvalUsage = `Usage: aibos approval list|get|approve|deny [flags]

  aibos approval list [--state pending] [--agent A] [--action X]   held invocations (default: the pending ones)
  aibos approval get ID [--wait 30s]                               one approval as JSON
  aibos approval approve ID [--reason R]                           the held call may run once
  aibos approval deny ID [--reason R]                              the held call never runs

The approver is your token's principal (--as NAME, if given, must be it).
Every subcommand takes --server URL and --token-file F.`

// approvalStates are the states of an approval, for --state.
func approvalStates() []string {
	return []string{api.ApprovalPending, api.ApprovalApproved, api.ApprovalDenied, api.ApprovalExpired, api.ApprovalVoided, api.ApprovalConsumed}
}

// cmdApproval runs `aibos approval list|get|approve|deny`.
func cmdApproval(args []string, stdout, stderr io.Writer) int {
	if code, ok := groupHelp(args, approvalUsage, stdout, stderr); !ok {
		return code
	}
	sub, rest := args[0], args[1:]
	fs := newFlags("approval "+sub, approvalUsage, stdout, stderr)
	server := serverFlag(fs)
	var f client.ApprovalFilter
	var as, reason *string
	var wait *time.Duration
	var id string
	states := approvalStates()
	switch sub {
	case "list":
		fs.synopsis = "Usage: aibos approval list [--state S] [--agent A] [--action X] [--server URL]\n\nHeld invocations, with their (redacted) input."
		fs.StringVar(&f.State, "state", api.ApprovalPending, strings.Join(states, ", ")+"; empty for all")
		fs.StringVar(&f.Agent, "agent", "", "only this agent's")
		fs.StringVar(&f.Action, "action", "", "only this action's")
		if code, ok := fs.parse(rest); !ok {
			return code
		}
		if f.State != "" && !slices.Contains(states, f.State) {
			return fs.fail(fmt.Errorf("--state %q: want one of %s, or empty for all", f.State, strings.Join(states, ", ")))
		}
	case "get", "approve", "deny":
		switch sub {
		case "get":
			fs.synopsis = "Usage: aibos approval get ID [--wait 30s] [--server URL]\n\nOne approval as JSON."
			wait = fs.Duration("wait", 0, "wait up to this long for a pending approval to be decided")
		case "approve":
			fs.synopsis = "Usage: aibos approval approve ID [--reason R] [--server URL]\n\nApprove a held invocation: the agent may run it once, with the same arguments.\nThe approver is your token's principal."
		case "deny":
			fs.synopsis = "Usage: aibos approval deny ID [--reason R] [--server URL]\n\nDeny a held invocation: it never runs. The decider is your token's principal."
		}
		if sub != "get" {
			as = fs.String("as", "", "who decides: your token's principal; if given, must be it")
			reason = fs.String("reason", "", "why (recorded with the approval)")
		}
		var err error
		if id, err = parseWithPath(fs, rest); err != nil {
			if errors.Is(err, errMissingArg) {
				err = errors.New("give the approval ID (aibos approval list shows them)")
			}
			return fs.fail(err)
		}
	default:
		return unknownSub("approval", sub, approvalUsage, stderr)
	}
	c, err := newClient(fs, *server)
	if err != nil {
		return apiFail(stderr, "approval "+sub, err)
	}
	ctx := context.Background()
	switch sub {
	case "list":
		list, err := c.Approvals(ctx, f)
		if err != nil {
			return apiFail(stderr, "approval list", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATE\tAGENT\tACTION\tEXPIRES\tARGS")
		for _, a := range list {
			who := a.Agent
			if a.AgentVersion != "" {
				who += "@" + a.AgentVersion
			}
			// An AuthZEN access request's "agent" is its subject, TYPE:ID.
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.State, who, a.Action, a.ExpiresAt.Format(time.RFC3339), string(a.Input))
		}
		_ = tw.Flush()
		return exitOK
	case "get":
		var a api.Approval
		if *wait > 0 {
			a, err = waitApproval(ctx, c, id, *wait)
		} else {
			a, err = c.Approval(ctx, id, 0)
		}
		if err != nil {
			return apiFail(stderr, "approval get", err)
		}
		printJSON(stdout, a)
		return exitOK
	}
	asGiven := false
	fs.Visit(func(f *flag.Flag) { asGiven = asGiven || f.Name == "as" })
	if asGiven && strings.TrimSpace(*as) == "" {
		fmt.Fprintf(stderr, "aibos approval %s: --as is empty: leave it out to decide as your token's principal\n", sub)
		return exitInvalid
	}
	var a api.Approval
	if sub == "approve" {
		a, err = c.Approve(ctx, id, *as, *reason)
	} else {
		a, err = c.DenyApproval(ctx, id, *as, *reason)
	}
	if err != nil {
		return apiFail(stderr, "approval "+sub, err)
	}
	if sub == "approve" {
		fmt.Fprintf(stdout, "approval %s is %s by %s: %s on %s@%s may run once with the approved arguments until %s\n",
			a.ID, a.State, a.DecidedBy, a.Action, a.Agent, a.AgentVersion, a.ExpiresAt.Format(time.RFC3339))
	} else {
		fmt.Fprintf(stdout, "approval %s is %s by %s: %s on %s@%s will not run; the agent gets a denial if it asks again\n",
			a.ID, a.State, a.DecidedBy, a.Action, a.Agent, a.AgentVersion)
	}
	return exitOK
}

const killUsage = `Usage: aibos kill set|lift|list [flags]

  aibos kill set --scope global|tenant|agent|action [--target T] --reason R   stop everything in a scope
  aibos kill lift ID [--reason R] [--approval ID]                            lift a kill switch
  aibos kill list [--all]                                                    active kill switches (--all: lifted ones too)

Who sets or lifts is your token's principal (--by NAME, if given, must be it).
The two-person rule holds lifting a global kill switch: a second principal
approves (aibos approval approve ID), and kill lift ID --approval ID redeems it.
Every subcommand takes --server URL and --token-file F.`

// cmdKill runs `aibos kill set|lift|list`.
func cmdKill(args []string, stdout, stderr io.Writer) int {
	if code, ok := groupHelp(args, killUsage, stdout, stderr); !ok {
		return code
	}
	sub, rest := args[0], args[1:]
	fs := newFlags("kill "+sub, killUsage, stdout, stderr)
	server := serverFlag(fs)
	var by, reason, scope, target *string
	var all *bool
	approval := new(string)
	var id string
	switch sub {
	case "set":
		fs.synopsis = "Usage: aibos kill set --scope global|tenant|agent|action [--target T] --reason R [--server URL]\n\nSet a kill switch: every node refuses new invocations in its scope, cancels\nthe running ones and voids pending approvals, until it is lifted."
		scope = fs.String("scope", "", "global, tenant, agent or action")
		target = fs.String("target", "", "the tenant, agent id or action pattern (none for global)")
		reason = fs.String("reason", "", "why (required; recorded and shown in kill list)")
		by = fs.String("by", "", "who sets it: your token's principal; if given, must be it")
		approval = fs.String("approval", "", "redeem this approved approval (when a system rule holds setting it for a second person)")
		if code, ok := fs.parse(rest); !ok {
			return code
		}
		if strings.TrimSpace(*reason) == "" {
			return fs.fail(errors.New("--reason is required: say why the kill switch is set (it is recorded and shown in kill list)"))
		}
	case "list":
		fs.synopsis = "Usage: aibos kill list [--all] [--server URL]\n\nThe active kill switches."
		all = fs.Bool("all", false, "lifted kill switches too")
		if code, ok := fs.parse(rest); !ok {
			return code
		}
	case "lift":
		fs.synopsis = "Usage: aibos kill lift ID [--reason R] [--approval ID] [--server URL]\n\nLift a kill switch (aibos kill list shows their ids). The two-person rule\nholds lifting a global kill switch: a second principal approves it, and the\nsame lift with --approval ID runs once."
		by = fs.String("by", "", "who lifts it: your token's principal; if given, must be it")
		approval = fs.String("approval", "", "redeem this approved approval (the two-person rule holds lifting a global kill switch)")
		reason = fs.String("reason", "", "why (recorded)")
		var err error
		if id, err = parseWithPath(fs, rest); err != nil {
			if errors.Is(err, errMissingArg) {
				err = errors.New("give the kill switch ID (aibos kill list shows them)")
			}
			return fs.fail(err)
		}
	default:
		return unknownSub("kill", sub, killUsage, stderr)
	}
	c, err := newClient(fs, *server)
	if err != nil {
		return apiFail(stderr, "kill "+sub, err)
	}
	ctx := context.Background()
	if *approval != "" {
		ctx = client.WithApproval(ctx, *approval)
	}
	switch sub {
	case "set":
		k, err := c.Kill(ctx, api.KillRequest{Scope: *scope, Target: *target, Reason: *reason, By: *by})
		if err != nil {
			return apiFail(stderr, "kill set", err)
		}
		fmt.Fprintf(stdout, "kill switch %s set (%s) at revision %d; lift it with: aibos kill lift %s\n", k.ID, killScope(k), k.Revision, k.ID)
	case "lift":
		k, err := c.LiftKill(ctx, id, *by, *reason)
		if err != nil {
			return apiFail(stderr, "kill lift", err)
		}
		fmt.Fprintf(stdout, "kill switch %s lifted by %s at revision %d\n", k.ID, k.LiftedBy, k.Revision)
	case "list":
		ks, err := c.Kills(ctx, *all)
		if err != nil {
			return apiFail(stderr, "kill list", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tACTIVE\tSCOPE\tTARGET\tBY\tSINCE\tREASON")
		for _, k := range ks {
			fmt.Fprintf(tw, "%s\t%t\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Active, k.Scope, k.Target, k.By, k.CreatedAt.Format(time.RFC3339), k.Reason)
		}
		_ = tw.Flush()
	}
	return exitOK
}

// killScope says what a kill switch stops: "global", "agent billing-bot".
func killScope(k api.KillSwitch) string {
	if k.Target == "" {
		return k.Scope
	}
	return k.Scope + " " + k.Target
}

func printJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
