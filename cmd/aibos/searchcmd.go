package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/aibos/kernel/api"
)

const searchUsage = `Usage:
  aibos search subject  --type TYPE --action NAME --resource TYPE:ID   who may do NAME on the resource?
  aibos search resource --subject TYPE:ID --action NAME --type TYPE    which resources of TYPE may the subject NAME?
  aibos search action   --subject TYPE:ID --resource TYPE:ID           which actions may the subject do on the resource?
Flags of each: --context JSON, --limit N (page size), --json (the pages as JSON), --server URL.
Results are printed one a line (TYPE:ID, or the action name), every page followed.
`

// cmdSearch runs the AuthZEN Search APIs against a cluster.
func cmdSearch(args []string, stdout, stderr io.Writer) int {
	if code, ok := groupHelp(args, searchUsage, stdout, stderr); !ok {
		return code
	}
	kind := args[0]
	if kind != "subject" && kind != "resource" && kind != "action" {
		return unknownSub("search", kind, searchUsage, stderr)
	}
	fs := newFlags("search "+kind, searchUsage, stdout, stderr)
	server := serverFlag(fs)
	subject := fs.String("subject", "", "subject as TYPE:ID (resource and action search)")
	resource := fs.String("resource", "", "resource as TYPE:ID (subject and action search)")
	typ := fs.String("type", "", "the type of the subjects or resources searched (subject and resource search)")
	action := fs.String("action", "", "action name (subject and resource search)")
	ctxJSON := fs.String("context", "", "context as a JSON object")
	limit := fs.Int("limit", 0, "results per page (0: the server's default)")
	asJSON := fs.Bool("json", false, "print each page as JSON")
	if code, ok := fs.parse(args[1:]); !ok {
		return code
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "aibos search %s: %s\n", kind, fmt.Sprintf(format, a...))
		return exitInvalid
	}
	req := api.SearchRequest{}
	entity := func(flagName, v string) (api.Entity, bool) {
		e, ok := parseEntityFlag(v)
		if !ok {
			fail("--%s %q: want TYPE:ID, e.g. user:alice", flagName, v)
		}
		return e, ok
	}
	var ok bool
	switch kind {
	case "subject":
		if *typ == "" {
			return fail("--type is required: the type of the subjects to find, e.g. user")
		}
		req.Subject = api.Entity{Type: *typ}
		if req.Resource, ok = entity("resource", *resource); !ok {
			return exitInvalid
		}
	case "resource":
		if *typ == "" {
			return fail("--type is required: the type of the resources to find, e.g. record")
		}
		req.Resource = api.Entity{Type: *typ}
		if req.Subject, ok = entity("subject", *subject); !ok {
			return exitInvalid
		}
	case "action":
		if req.Subject, ok = entity("subject", *subject); !ok {
			return exitInvalid
		}
		if req.Resource, ok = entity("resource", *resource); !ok {
			return exitInvalid
		}
		if *action != "" {
			return fail("--action is what an action search finds: leave it out")
		}
	}
	if kind != "action" {
		if *action == "" {
			return fail("--action is required")
		}
		req.Action = &api.Action{Name: *action}
	}
	if *ctxJSON != "" {
		if err := json.Unmarshal([]byte(*ctxJSON), &req.Context); err != nil {
			return fail("--context: %v (want a JSON object)", err)
		}
	}
	if *limit < 0 {
		return fail("--limit %d: want 0 or more", *limit)
	}
	c, err := newClient(fs, *server)
	if err != nil {
		return apiFail(stderr, "search "+kind, err)
	}
	page := api.PageRequest{Limit: *limit}
	enc := json.NewEncoder(stdout)
	for {
		req.Page = &page
		resp, err := c.Search(context.Background(), kind, req)
		if err != nil {
			return apiFail(stderr, "search "+kind, err)
		}
		if *asJSON {
			enc.Encode(resp)
		} else {
			for _, r := range resp.Results {
				if kind == "action" {
					fmt.Fprintln(stdout, r.Name)
				} else {
					fmt.Fprintf(stdout, "%s:%s\n", r.Type, r.ID)
				}
			}
		}
		if resp.Page.NextToken == "" {
			return exitOK
		}
		page.Token = resp.Page.NextToken
	}
}
