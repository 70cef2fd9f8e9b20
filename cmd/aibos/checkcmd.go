package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/aibos/kernel/api"
)

func cmdCheck(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := serverFlag(fs)
	reqPath := fs.String("request", "", "request JSON file, or - for standard input (instead of the flags below)")
	subject := fs.String("subject", "", "subject as TYPE:ID")
	action := fs.String("action", "", "action name, e.g. data.query")
	resource := fs.String("resource", "", "resource as TYPE:ID")
	ctxJSON := fs.String("context", "", "context as a JSON object")
	minRev := fs.Uint64("min-revision", 0, "answer only once the node has applied this revision")
	explain := fs.Bool("explain", false, "include per-layer outcomes")
	failOnDeny := fs.Bool("fail-on-deny", false, "exit 1 unless the decision is allow")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: aibos check --subject TYPE:ID --action NAME --resource TYPE:ID [--context JSON] | --request FILE|-")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitInvalid
	}
	var req *api.CheckRequest
	if *reqPath != "" {
		data, err := readInput(*reqPath, stdin)
		if err != nil {
			fmt.Fprintf(stderr, "aibos check: %v\n", err)
			return exitInvalid
		}
		if req, err = api.DecodeCheckRequest(data); err != nil {
			fmt.Fprintf(stderr, "aibos check: request %s: %v\n", *reqPath, err)
			return exitInvalid
		}
	} else {
		req = &api.CheckRequest{Action: api.Action{Name: *action}}
		var ok bool
		if req.Subject, ok = parseEntityFlag(*subject); !ok {
			fmt.Fprintf(stderr, "aibos check: --subject %q: want TYPE:ID, e.g. agent:a1\n", *subject)
			return exitInvalid
		}
		if req.Resource, ok = parseEntityFlag(*resource); !ok {
			fmt.Fprintf(stderr, "aibos check: --resource %q: want TYPE:ID, e.g. table:t1\n", *resource)
			return exitInvalid
		}
		if *action == "" {
			fmt.Fprintln(stderr, "aibos check: --action is required")
			return exitInvalid
		}
		if *ctxJSON != "" {
			if err := json.Unmarshal([]byte(*ctxJSON), &req.Context); err != nil {
				fmt.Fprintf(stderr, "aibos check: --context: %v (want a JSON object)\n", err)
				return exitInvalid
			}
		}
	}
	if *minRev > 0 {
		req.MinRevision = *minRev
	}
	req.Explain = req.Explain || *explain
	c, err := newClient(*server, fs)
	if err != nil {
		return apiFail(stderr, "check", err)
	}
	d, err := c.Check(context.Background(), *req)
	if err != nil {
		return apiFail(stderr, "check", err)
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	enc.Encode(d)
	if *failOnDeny && d.Decision != api.Allow {
		return exitFailed
	}
	return exitOK
}

func parseEntityFlag(s string) (api.Entity, bool) {
	typ, id, ok := strings.Cut(s, ":")
	if !ok || typ == "" || id == "" {
		return api.Entity{}, false
	}
	return api.Entity{Type: typ, ID: id}, true
}

func cmdEntities(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "put" {
		fmt.Fprintln(stderr, "Usage: aibos entities put FILE|- [--server URL]   (FILE: {\"entities\": [{\"type\", \"id\", \"properties\"}]})")
		return exitInvalid
	}
	fs := flag.NewFlagSet("entities put", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := serverFlag(fs)
	path, err := parseWithPath(fs, args[1:])
	if err != nil {
		fmt.Fprintf(stderr, "aibos entities put: %v\n", err)
		return exitInvalid
	}
	data, err := readInput(path, stdin)
	if err != nil {
		fmt.Fprintf(stderr, "aibos entities put: %v\n", err)
		return exitInvalid
	}
	var er api.EntitiesRequest
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&er); err != nil {
		fmt.Fprintf(stderr, "aibos entities put: %s: %v\n", path, err)
		return exitInvalid
	}
	c, err := newClient(*server, fs)
	if err != nil {
		return apiFail(stderr, "entities put", err)
	}
	rev, err := c.PutEntities(context.Background(), er.Entities)
	if err != nil {
		return apiFail(stderr, "entities put", err)
	}
	fmt.Fprintf(stdout, "upserted %d entities at revision %d\n", len(er.Entities), rev)
	return exitOK
}

func cmdCluster(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "status" {
		fmt.Fprintln(stderr, "Usage: aibos cluster status [--server URL] [--json]")
		return exitInvalid
	}
	fs := flag.NewFlagSet("cluster status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := serverFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return exitInvalid
	}
	c, err := newClient(*server, fs)
	if err != nil {
		return apiFail(stderr, "cluster status", err)
	}
	cl, err := c.Cluster(context.Background())
	if err != nil {
		return apiFail(stderr, "cluster status", err)
	}
	if *asJSON {
		json.NewEncoder(stdout).Encode(cl)
		return exitOK
	}
	fmt.Fprintf(stdout, "region %s, leader %s\n", cl.Region, cl.Leader)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tHTTP\tRAFT\tAPPLIED")
	for _, n := range cl.Nodes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", n.ID, n.Role, n.HTTP, n.Raft, n.AppliedRevision)
	}
	tw.Flush()
	return exitOK
}
