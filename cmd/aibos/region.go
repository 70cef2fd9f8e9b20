package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aibos/kernel/api"
)

const regionUsage = `Usage: aibos region list [--json]                 the region registry, as the region at --server applied it
       aibos region add ID --domain D --endpoint URL [--endpoint URL...] [--standby R]
                                                   add a region to the registry, or change one (at the primary)
       aibos region promote ID                     make region ID the primary of a new epoch
       aibos region failover ID                    declare region ID lost: its standby serves its tenants (at the primary)
       aibos region status [--json]                how far the region at --server follows the primary
  [--server URL] [--token-file F]

A promotion runs in the region promoted: point --server at region ID's own
endpoints (it asks the other regions for their promises itself). The other
writes go to the primary region, reads to any region.`

const tenantUsage = `Usage: aibos tenant add ID --home REGION   add a tenant to the directory with its home region (at the primary)
       aibos tenant list [--json]         the tenant directory, as the region at --server applied it
  [--server URL] [--token-file F]

A tenant's data lives in its home region's residency domain and never leaves it.`

// cmdRegion runs `aibos region list|add|promote|failover|status`.
func cmdRegion(args []string, stdout, stderr io.Writer) int {
	if code, ok := groupHelp(args, regionUsage, stdout, stderr); !ok {
		return code
	}
	sub, rest := args[0], args[1:]
	fs := newFlags("region "+sub, regionUsage, stdout, stderr)
	server := serverFlag(fs)
	var asJSON *bool
	var domain, standby *string
	var endpoints []string
	switch sub {
	case "list", "status":
		asJSON = fs.Bool("json", false, "print the answer as JSON")
	case "add":
		domain = fs.String("domain", "", "the region's residency domain (us, eu, apac, ...); never changes once added")
		fs.Func("endpoint", "a base URL of the region's API, such as https://eu-west.example:8181 (repeatable, tried in order)", func(v string) error {
			endpoints = append(endpoints, v)
			return nil
		})
		standby = fs.String("standby", "", "the region of the same domain that serves this region's tenants if it is lost (already in the registry)")
	case "promote", "failover":
	default:
		return unknownSub("region", sub, regionUsage, stderr)
	}
	var id string
	switch sub {
	case "list", "status":
		if code, ok := fs.parse(rest); !ok {
			return code
		}
	default:
		var err error
		if id, err = parseWithPath(fs, rest); err != nil {
			if errors.Is(err, errMissingArg) {
				err = errors.New("give the region's ID (aibos region list shows them)")
			}
			return fs.fail(err)
		}
	}
	if sub == "add" && (strings.TrimSpace(*domain) == "" || len(endpoints) == 0) {
		return fs.fail(fmt.Errorf("give --domain D and at least one --endpoint URL for region %s", id))
	}
	c, err := newClient(fs, *server)
	if err != nil {
		return apiFail(stderr, "region "+sub, err)
	}
	ctx := context.Background()
	switch sub {
	case "list":
		regs, err := c.Regions(ctx)
		if err != nil {
			return apiFail(stderr, "region list", err)
		}
		if *asJSON {
			printJSON(stdout, regs)
			return exitOK
		}
		printRegions(stdout, regs)
	case "add":
		w, err := c.PutRegion(ctx, api.Region{ID: id, Domain: *domain, Endpoints: endpoints, Standby: *standby})
		if err != nil {
			return apiFail(stderr, "region add", err)
		}
		fmt.Fprintf(stdout, "region %s (domain %s) in the registry at global version %d\n", id, *domain, w.GlobalVersion)
	case "promote":
		p, err := c.PromoteRegion(ctx, id)
		if err != nil {
			return apiFail(stderr, "region promote", err)
		}
		if len(p.Votes) == 0 {
			// A region that is the primary already asks nobody.
			fmt.Fprintf(stdout, "region %s is the primary of epoch %d already (global version %d); nothing was asked\n", p.Primary, p.Epoch, p.GlobalVersion)
			return exitOK
		}
		fmt.Fprintf(stdout, "region %s is the primary of epoch %d (from global version %d)\n", p.Primary, p.Epoch, p.GlobalVersion)
		fmt.Fprintf(stdout, "votes: %s\n", listOrNone(p.Votes))
		fmt.Fprintf(stdout, "refused: %s\n", listOrNone(p.Refused))
	case "failover":
		w, err := c.FailoverRegion(ctx, id)
		if err != nil {
			return apiFail(stderr, "region failover", err)
		}
		fmt.Fprintf(stdout, "region %s failed over at global version %d: its standby serves its tenants\n", id, w.GlobalVersion)
	case "status":
		r, err := c.Replication(ctx)
		if err != nil {
			return apiFail(stderr, "region status", err)
		}
		if *asJSON {
			printJSON(stdout, r)
			return exitOK
		}
		printReplication(stdout, r)
	}
	return exitOK
}

func printRegions(w io.Writer, regs api.Regions) {
	fmt.Fprintf(w, "self %s, primary %s, epoch %d, global version %d\n", regs.Self, orDash(regs.Primary), regs.Epoch, regs.GlobalVersion)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tDOMAIN\tROLE\tSTANDBY\tFAILED_OVER\tENDPOINTS")
	for _, r := range regs.Regions {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%s\n", r.ID, r.Domain, orDash(r.Role), orDash(r.Standby), r.FailedOver, strings.Join(r.Endpoints, ","))
	}
	_ = tw.Flush()
}

func printReplication(w io.Writer, r api.Replication) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("region", fmt.Sprintf("%s (domain %s)", r.Region, r.Domain))
	row("role", r.Role)
	row("primary", orDash(r.Primary))
	row("epoch", fmt.Sprint(r.Epoch))
	gv := fmt.Sprint(r.GlobalVersion)
	if r.PrimaryVersion > 0 {
		gv += fmt.Sprintf(" (primary at %d)", r.PrimaryVersion)
	}
	row("global version", gv)
	row("lag", fmt.Sprintf("%d versions", r.LagVersions))
	row("connected", fmt.Sprint(r.Connected))
	row("last contact", timeOrDash(r.LastContact))
	row("lease until", leaseOf(r))
	row("quarantined", fmt.Sprintf("%d entries", r.Quarantined))
	if r.Error != "" {
		row("error", r.Error)
	}
	_ = tw.Flush()
	if len(r.Standby) == 0 {
		fmt.Fprintln(w, "standby streams: none")
		return
	}
	fmt.Fprintln(w, "standby streams:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tREVISION\tCONNECTED\tSERVING\tLAST_CONTACT")
	for _, s := range r.Standby {
		fmt.Fprintf(tw, "%s\t%d\t%v\t%v\t%s\n", s.Source, s.Revision, s.Connected, s.Serving, timeOrDash(s.LastContact))
	}
	_ = tw.Flush()
}

// cmdTenant runs `aibos tenant add|list`.
func cmdTenant(args []string, stdout, stderr io.Writer) int {
	if code, ok := groupHelp(args, tenantUsage, stdout, stderr); !ok {
		return code
	}
	sub, rest := args[0], args[1:]
	fs := newFlags("tenant "+sub, tenantUsage, stdout, stderr)
	server := serverFlag(fs)
	var home *string
	var asJSON *bool
	var id string
	switch sub {
	case "add":
		home = fs.String("home", "", "the tenant's home region (in the registry: aibos region list)")
		var err error
		if id, err = parseWithPath(fs, rest); err != nil {
			if errors.Is(err, errMissingArg) {
				err = errors.New("give the tenant's ID")
			}
			return fs.fail(err)
		}
		if strings.TrimSpace(*home) == "" {
			return fs.fail(fmt.Errorf("give --home REGION, the region tenant %s lives in", id))
		}
	case "list":
		asJSON = fs.Bool("json", false, "print the answer as JSON")
		if code, ok := fs.parse(rest); !ok {
			return code
		}
	default:
		return unknownSub("tenant", sub, tenantUsage, stderr)
	}
	c, err := newClient(fs, *server)
	if err != nil {
		return apiFail(stderr, "tenant "+sub, err)
	}
	ctx := context.Background()
	if sub == "add" {
		w, err := c.PutTenant(ctx, id, *home)
		if err != nil {
			return apiFail(stderr, "tenant add", err)
		}
		fmt.Fprintf(stdout, "tenant %s lives in region %s from global version %d\n", id, *home, w.GlobalVersion)
		return exitOK
	}
	dir, err := c.Tenants(ctx)
	if err != nil {
		return apiFail(stderr, "tenant list", err)
	}
	if *asJSON {
		printJSON(stdout, dir)
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tHOME\tDOMAIN")
	for _, t := range dir.Tenants {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", t.ID, t.Home, t.Domain)
	}
	_ = tw.Flush()
	return exitOK
}

// leaseOf says until when a primary may write global state. The runtime
// answers year 9999 for a primary that is the only region: a majority by
// itself, it needs no acknowledgement.
func leaseOf(r api.Replication) string {
	switch {
	case r.Role != api.RolePrimary:
		return timeOrDash(r.LeaseUntil)
	case r.LeaseUntil.IsZero():
		return "none: no majority of regions acknowledged this primary lately, so it writes no global state"
	case r.LeaseUntil.Year() >= 9999:
		return "unbounded (the only region: a majority by itself)"
	}
	return timeOrDash(r.LeaseUntil)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}

func timeOrDash(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format(time.RFC3339)
}
