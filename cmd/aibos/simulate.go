package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/policy"
	"github.com/aibos/kernel/internal/simulate"
)

// policySimulate asks one node to replay its logged decisions against a
// candidate bundle. Only that node's log is read: each node logs its own.
func policySimulate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("policy simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := serverFlag(fs)
	since := fs.Duration("since", time.Hour, "replay the decisions of this last period")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	path, err := parseWithPath(fs, args)
	if err != nil {
		fmt.Fprintf(stderr, "aibos policy simulate: %v\n", err)
		return exitInvalid
	}
	files, err := policy.ReadPath(path)
	if err != nil {
		fmt.Fprintf(stderr, "aibos policy simulate: %v\n", err)
		return exitInvalid
	}
	body, err := tarBundle(files)
	if err != nil {
		fmt.Fprintf(stderr, "aibos policy simulate: %v\n", err)
		return exitInvalid
	}
	base := strings.TrimSuffix(strings.Split(*server, ",")[0], "/")
	hc := &http.Client{Timeout: 10 * time.Minute}
	resp, err := hc.Post(base+"/v1/policies/simulate?since="+url.QueryEscape(since.String()), "application/x-tar", bytes.NewReader(body))
	if err != nil {
		return apiFail(stderr, "policy simulate", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return apiFail(stderr, "policy simulate", err)
	}
	if resp.StatusCode != http.StatusOK {
		var eb api.ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error.Message != "" {
			fmt.Fprintf(stderr, "aibos policy simulate: %s: %s\n", resp.Status, eb.Error.Message)
			for _, d := range eb.Error.Details {
				fmt.Fprintf(stderr, "  %s\n", d)
			}
			return exitInvalid
		}
		return apiFail(stderr, "policy simulate", fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(data)))
	}
	if *asJSON {
		stdout.Write(data)
		return exitOK
	}
	var rep simulate.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		return apiFail(stderr, "policy simulate", fmt.Errorf("decode report: %w", err))
	}
	printReport(stdout, &rep, *since)
	return exitOK
}

func tarBundle(files []api.File) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.Name, Mode: 0o644, Size: int64(len(f.Data)), Typeflag: tar.TypeReg}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func printReport(w io.Writer, rep *simulate.Report, since time.Duration) {
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
