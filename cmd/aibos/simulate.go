package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/policy"
)

// policySimulate asks one node to replay its logged decisions against a
// candidate bundle. Only that node's log is read: each node logs its own.
func policySimulate(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("policy simulate", "Usage: aibos policy simulate PATH [--since 1h] [--json] [--server URL]\n\nReplay one node's logged decisions of the last --since against the candidate\nbundle at PATH: how many would change, by action, candidate rule and subject.", stdout, stderr)
	server := serverFlag(fs)
	since := fs.Duration("since", time.Hour, "replay the decisions of this last period")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	path, err := parseWithPath(fs, args)
	if err != nil {
		return fs.fail(err)
	}
	files, err := policy.ReadPath(path)
	if err != nil {
		fmt.Fprintf(stderr, "aibos policy simulate: %v\n", err)
		return exitInvalid
	}
	c, err := newClientWith(fs, *server, client.Options{HTTPClient: httpClient(fs.FlagSet, 10*time.Minute)})
	if err != nil {
		return apiFail(stderr, "policy simulate", err)
	}
	rep, err := c.Simulate(context.Background(), files, *since)
	if err != nil {
		return apiFail(stderr, "policy simulate", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
		return exitOK
	}
	printReport(stdout, &rep, *since)
	return exitOK
}

func printReport(w io.Writer, rep *api.SimulationReport, since time.Duration) {
	fmt.Fprintf(w, "replayed %d logged decisions of the last %s on this node in %s: %d would change, %d with condition errors\n",
		rep.Replayed, since, time.Duration(rep.Took).Round(time.Millisecond), rep.Changed, rep.Errors)
	if rep.Changed == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	group := func(title string, m map[string]map[string]int) {
		fmt.Fprintf(tw, "\n%s\tCHANGE\tCOUNT\n", title)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			for _, f := range slices.Sorted(maps.Keys(m[k])) {
				fmt.Fprintf(tw, "%s\t%s\t%d\n", k, f, m[k][f])
			}
		}
	}
	fmt.Fprintf(tw, "\nCHANGE\tCOUNT\n")
	for _, f := range slices.Sorted(maps.Keys(rep.Flips)) {
		fmt.Fprintf(tw, "%s\t%d\n", f, rep.Flips[f])
	}
	group("ACTION", rep.ByAction)
	group("CANDIDATE RULE", rep.ByRule)
	group("SUBJECT", rep.BySubject)
	tw.Flush()
	fmt.Fprintf(w, "\nexamples:\n")
	for _, c := range rep.Samples {
		fmt.Fprintf(w, "  %s %s:%s %s %s:%s: %s (%s) → %s (%s)\n", c.Time.Format(time.RFC3339), c.Request.Subject.Type, c.Request.Subject.ID,
			c.Request.Action.Name, c.Request.Resource.Type, c.Request.Resource.ID, c.Recorded, c.RecordedRule, c.Candidate, c.CandidateRule)
	}
}
