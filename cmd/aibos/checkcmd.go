package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
)

func cmdCheck(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("check", "Usage: aibos check --subject TYPE:ID --action NAME --resource TYPE:ID [--context JSON] | --request FILE|-\n\nAsk a cluster for a decision and print it.", stdout, stderr)
	server := serverFlag(fs)
	reqPath := fs.String("request", "", "request JSON file, or - for standard input (instead of the flags below)")
	subject := fs.String("subject", "", "subject as TYPE:ID")
	action := fs.String("action", "", "action name, e.g. data.query")
	resource := fs.String("resource", "", "resource as TYPE:ID")
	ctxJSON := fs.String("context", "", "context as a JSON object")
	minRev := fs.Uint64("min-revision", 0, "answer only once the node has applied this revision")
	explain := fs.Bool("explain", false, "include per-layer outcomes")
	failOnDeny := fs.Bool("fail-on-deny", false, "exit 1 unless the decision is allow")
	if code, ok := fs.parse(args); !ok {
		return code
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
	c, err := newClient(fs, *server)
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

const entitiesUsage = `Usage: aibos entities put FILE|- [--server URL]

Upsert stored entities in a cluster. FILE (or - for stdin) is JSON:
{"entities": [{"type": "user", "id": "u1", "properties": {...}}]}`

func cmdEntities(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if code, ok := groupHelp(args, entitiesUsage, stdout, stderr); !ok {
		return code
	}
	if args[0] != "put" {
		return unknownSub("entities", args[0], entitiesUsage, stderr)
	}
	fs := newFlags("entities put", entitiesUsage, stdout, stderr)
	server := serverFlag(fs)
	path, err := parseWithPath(fs, args[1:])
	if err != nil {
		return fs.fail(err)
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
	c, err := newClient(fs, *server)
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

const clusterUsage = `Usage:
  aibos cluster status [--wait 10s] [--json] [--server URL]
      a cluster's members as the answering node sees them: role, addresses,
      the revision each has applied and whether it is ready (each member is
      asked). Waits up to --wait for the node to be up and to know a leader
      (a node just started is still electing or joining); exit 1 if none is
      known by then.
  ` + recoverUsage

func cmdCluster(args []string, stdout, stderr io.Writer) int {
	if code, ok := groupHelp(args, clusterUsage, stdout, stderr); !ok {
		return code
	}
	if args[0] == "recover" {
		return clusterRecover(args[1:], stdout, stderr)
	}
	if args[0] != "status" {
		return unknownSub("cluster", args[0], clusterUsage, stderr)
	}
	fs := newFlags("cluster status", clusterUsage, stdout, stderr)
	server := serverFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	wait := fs.Duration("wait", 10*time.Second, "how long to wait for the node to answer and know a leader (0: ask once)")
	if code, ok := fs.parse(args[1:]); !ok {
		return code
	}
	retry := *wait
	if retry <= 0 {
		retry = -1 // client.Options: no retries
	}
	c, err := newClientWith(fs, *server, client.Options{RetryFor: retry})
	if err != nil {
		return apiFail(stderr, "cluster status", err)
	}
	ctx := context.Background()
	deadline := time.Now().Add(*wait)
	var cl api.Cluster
	for {
		cl, err = c.Cluster(ctx)
		if err != nil {
			return apiFail(stderr, "cluster status", err)
		}
		if (cl.Leader != "" && len(cl.Nodes) > 0) || !time.Now().Before(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if *asJSON {
		json.NewEncoder(stdout).Encode(cl)
	} else {
		leader := cl.Leader
		if leader == "" {
			leader = "unknown"
		}
		fmt.Fprintf(stdout, "region %s, leader %s\n", cl.Region, leader)
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tROLE\tSTATUS\tHTTP\tRAFT\tAPPLIED")
		for _, n := range cl.Nodes {
			role, applied := n.Role, fmt.Sprint(n.AppliedRevision)
			if n.Status != api.NodeReady {
				applied = "-"
			}
			if n.Status == api.NodeUnreachable && role != "leader" {
				role = "unknown"
			}
			status := n.Status
			if n.Detail != "" {
				status += " (" + n.Detail + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", n.ID, role, status, n.HTTP, n.Raft, applied)
		}
		tw.Flush()
	}
	if cl.Leader == "" || len(cl.Nodes) == 0 {
		what := "knows no leader"
		if len(cl.Nodes) == 0 {
			what = "has no cluster configuration yet"
		}
		fmt.Fprintf(stderr, "aibos cluster status: %s %s after %s: it is still starting, electing or joining (see its log); run this again, or wait longer with --wait 30s\n", *server, what, *wait)
		return exitFailed
	}
	return exitOK
}
