package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
)

// The agent gateway's commands: orchestra, action, invoke, approval, kill.

const orchestraUsage = "Usage: aibos orchestra put FILE|- | list | get NAME | delete NAME   [--server URL]"

// cmdOrchestra runs `aibos orchestra put|list|get|delete`.
func cmdOrchestra(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, orchestraUsage)
		return exitInvalid
	}
	sub, rest := args[0], args[1:]
	fs := flag.NewFlagSet("orchestra "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := serverFlag(fs)
	var arg string
	switch sub {
	case "list":
		if err := fs.Parse(rest); err != nil {
			return exitInvalid
		}
	case "put", "get", "delete":
		var err error
		if arg, err = parseWithPath(fs, rest); err != nil || arg == "" {
			fmt.Fprintf(stderr, "aibos orchestra %s: give the %s\n", sub, map[bool]string{true: "orchestra FILE (YAML or JSON)", false: "orchestra NAME"}[sub == "put"])
			return exitInvalid
		}
	default:
		fmt.Fprintf(stderr, "aibos orchestra: unknown subcommand %q\n%s\n", sub, orchestraUsage)
		return exitInvalid
	}
	c, err := newClient(*server, fs)
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
		if err := decodeStrictYAML(data, &o); err != nil {
			fmt.Fprintf(stderr, "aibos orchestra put: %s: %v\n", arg, err)
			return exitInvalid
		}
		if strings.TrimSpace(o.Name) == "" {
			// The name is the URL's last segment: without it the request
			// would go to /v1/orchestras/ and come back as a bare 404/405.
			fmt.Fprintf(stderr, "aibos orchestra put: %s: the orchestra has no name\n", arg)
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
	}
	return exitOK
}

// cmdAction runs `aibos action list`.
func cmdAction(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "list" {
		fmt.Fprintln(stderr, "Usage: aibos action list [--orchestra NAME] [--risk CLASS] [--server URL]")
		return exitInvalid
	}
	fs := flag.NewFlagSet("action list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := serverFlag(fs)
	orch := fs.String("orchestra", "", "only this orchestra's actions")
	risk := fs.String("risk", "", "only actions of this risk class (read, write, destructive, external)")
	if err := fs.Parse(args[1:]); err != nil {
		return exitInvalid
	}
	c, err := newClient(*server, fs)
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

// cmdInvoke runs `aibos invoke ACTION`: an agent's call, for scripts and
// for trying policies out.
func cmdInvoke(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("invoke", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := serverFlag(fs)
	token := fs.String("token", os.Getenv("AIBOS_AGENT_TOKEN"), "the agent's token (env AIBOS_AGENT_TOKEN)")
	input := fs.String("input", "{}", "the input: JSON, @FILE, or - for stdin")
	key := fs.String("idempotency-key", "", "make a retried call run once")
	approval := fs.String("approval", "", "redeem this approved approval")
	wait := fs.Duration("wait", 0, "when the call is held for approval, wait up to this long for it, then redeem it")
	action, err := parseWithPath(fs, args)
	if err != nil || action == "" {
		fmt.Fprintln(stderr, "Usage: aibos invoke ACTION [--input JSON|@FILE|-] [--token T] [--idempotency-key K] [--approval ID] [--wait 5m] [--server URL]")
		return exitInvalid
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
	c, err := client.New(strings.Split(*server, ","), client.Options{HTTPClient: &http.Client{Timeout: invokeHTTPTimeout}, Token: *token})
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

const approvalUsage = "Usage: aibos approval list [--state pending] | get ID [--wait 30s] | approve ID [--reason R] | deny ID [--reason R]   [--server URL] [--token-file F]\n(the approver is your token's principal; --as NAME, if given, must be it)"

// cmdApproval runs `aibos approval list|get|approve|deny`.
func cmdApproval(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, approvalUsage)
		return exitInvalid
	}
	sub, rest := args[0], args[1:]
	fs := flag.NewFlagSet("approval "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := serverFlag(fs)
	var f client.ApprovalFilter
	as := fs.String("as", "", "who decides: your token's principal; if given, must be it")
	reason := fs.String("reason", "", "why (recorded with the approval)")
	wait := fs.Duration("wait", 0, "get: wait up to this long for a pending approval to be decided")
	var id string
	switch sub {
	case "list":
		fs.StringVar(&f.State, "state", "pending", "pending, approved, denied, expired, voided, consumed; empty for all")
		fs.StringVar(&f.Agent, "agent", "", "only this agent's")
		fs.StringVar(&f.Action, "action", "", "only this action's")
		if err := fs.Parse(rest); err != nil {
			return exitInvalid
		}
	case "get", "approve", "deny":
		var err error
		if id, err = parseWithPath(fs, rest); err != nil || id == "" {
			fmt.Fprintln(stderr, approvalUsage)
			return exitInvalid
		}
	default:
		fmt.Fprintf(stderr, "aibos approval: unknown subcommand %q\n%s\n", sub, approvalUsage)
		return exitInvalid
	}
	c, err := newClient(*server, fs)
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
			fmt.Fprintf(tw, "%s\t%s\t%s@%s\t%s\t%s\t%s\n", a.ID, a.State, a.Agent, a.AgentVersion, a.Action, a.ExpiresAt.Format(time.RFC3339), string(a.Input))
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
	fmt.Fprintf(stdout, "approval %s is %s by %s: %s on %s@%s may run once with the approved arguments until %s\n",
		a.ID, a.State, a.DecidedBy, a.Action, a.Agent, a.AgentVersion, a.ExpiresAt.Format(time.RFC3339))
	return exitOK
}

const killUsage = "Usage: aibos kill set --scope global|tenant|agent|action [--target T] --reason R | lift ID [--reason R] | list [--all]   [--server URL] [--token-file F]"

// cmdKill runs `aibos kill set|lift|list`.
func cmdKill(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, killUsage)
		return exitInvalid
	}
	sub, rest := args[0], args[1:]
	fs := flag.NewFlagSet("kill "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := serverFlag(fs)
	by := fs.String("by", "", "who: your token's principal; if given, must be it")
	reason := fs.String("reason", "", "why (recorded; required to set)")
	scope := fs.String("scope", "", "set: global, tenant, agent or action")
	target := fs.String("target", "", "set: the tenant, agent id or action pattern (none for global)")
	all := fs.Bool("all", false, "list: lifted kill switches too")
	approval := fs.String("approval", "", "lift: redeem this approved approval (the two-person rule holds lifting a global kill switch)")
	var id string
	switch sub {
	case "set", "list":
		if err := fs.Parse(rest); err != nil {
			return exitInvalid
		}
	case "lift":
		var err error
		if id, err = parseWithPath(fs, rest); err != nil || id == "" {
			fmt.Fprintln(stderr, killUsage)
			return exitInvalid
		}
	default:
		fmt.Fprintf(stderr, "aibos kill: unknown subcommand %q\n%s\n", sub, killUsage)
		return exitInvalid
	}
	c, err := newClient(*server, fs)
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
		fmt.Fprintf(stdout, "kill switch %s set (%s %s) at revision %d; lift it with: aibos kill lift %s\n", k.ID, k.Scope, k.Target, k.Revision, k.ID)
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

func printJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
