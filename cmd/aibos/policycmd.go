package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/engine"
	"github.com/aibos/kernel/internal/policy"
)

const policyUsage = `Usage:
  aibos policy lint PATH [--strict]            parse and compile; print errors with file:line:column, then warnings
  aibos policy test PATH [--json]              run the bundle's Test documents
  aibos policy eval PATH --request FILE|- [--entities FILE] [--now RFC3339] [--fail-on-deny]
  aibos policy publish PATH [--message M] [--author A] [--dry-run] [--server URL]
  aibos policy versions [--server URL]
  aibos policy rollback --to V [--message M] [--author A] [--server URL]
  aibos policy diff A B [--json] [--server URL] semantic changes from A to B (each a PATH or a version number)
  aibos policy simulate PATH [--since 1h] [--json] [--server URL]   replay a node's logged decisions against PATH

PATH is a bundle file or a directory (read recursively: .yaml, .yml, .json).
Exit codes: 0 ok; 1 failed tests, (with --fail-on-deny) a decision other than allow, or (with
--strict) lint warnings; 2 invalid input.
`

func cmdPolicy(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if code, ok := groupHelp(args, policyUsage, stdout, stderr); !ok {
		return code
	}
	switch args[0] {
	case "lint":
		return policyLint(args[1:], stdout, stderr)
	case "test":
		return policyTest(args[1:], stdout, stderr)
	case "eval":
		return policyEval(args[1:], stdin, stdout, stderr)
	case "publish":
		return policyPublish(args[1:], stdout, stderr)
	case "versions":
		return policyVersions(args[1:], stdout, stderr)
	case "rollback":
		return policyRollback(args[1:], stdout, stderr)
	case "diff":
		return policyDiff(args[1:], stdout, stderr)
	case "simulate":
		return policySimulate(args[1:], stdout, stderr)
	default:
		return unknownSub("policy", args[0], policyUsage, stderr)
	}
}

// parseWithPath parses flags that may come before or after one positional
// PATH argument.
func parseWithPath(fs *flags, args []string) (string, error) {
	var path string
	for {
		if err := fs.Parse(args); err != nil {
			return "", err
		}
		if fs.NArg() == 0 {
			break
		}
		if path != "" {
			return "", fmt.Errorf("give one PATH; got %q and %q", path, fs.Arg(0))
		}
		path, args = fs.Arg(0), fs.Args()[1:]
	}
	if path == "" {
		return "", errMissingArg
	}
	return path, nil
}

// errMissingArg is parseWithPath's error when the positional argument is
// missing; callers that take something other than a PATH say what.
var errMissingArg = errors.New("missing PATH: give a bundle file or directory")

// loadBundle reads, parses and compiles a bundle, printing every error.
func loadBundle(path string, stderr io.Writer) (*engine.Bundle, bool) {
	files, err := policy.ReadPath(path)
	if err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return nil, false
	}
	b, err := engine.Load(files, engine.Options{})
	if err == nil {
		return b, true
	}
	var list policy.ErrorList
	if errors.As(err, &list) {
		for _, e := range list {
			fmt.Fprintf(stderr, "%s\n", relativeTo(path, e))
		}
		fmt.Fprintf(stderr, "%d error(s)\n", len(list))
	} else {
		fmt.Fprintf(stderr, "error: %v\n", err)
	}
	return nil, false
}

// relativeTo prefixes an error's file with the directory it was read from,
// so the position can be opened as printed.
func relativeTo(root string, e policy.Error) string {
	if info, err := os.Stat(root); err == nil && info.IsDir() && e.Pos.File != "" {
		e.Pos.File = strings.TrimSuffix(root, "/") + "/" + e.Pos.File
	} else if err == nil && !info.IsDir() {
		e.Pos.File = root
	}
	return e.Error()
}

func policyLint(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("policy lint", "Usage: aibos policy lint PATH [--strict]\n\nParse and compile a bundle (a file or a directory); print every error with\nfile:line:column, then the warnings.", stdout, stderr)
	strict := fs.Bool("strict", false, "exit 1 when there are warnings")
	path, err := parseWithPath(fs, args)
	if err != nil {
		return fs.fail(err)
	}
	b, ok := loadBundle(path, stderr)
	if !ok {
		return exitInvalid
	}
	st := b.Stats()
	fmt.Fprintf(stdout, "ok: %d policies, %d rules, %d distinct conditions, %d test suites; layers %s\n",
		st.Policies, st.Rules, st.Conditions, len(b.Source().Tests), strings.Join(b.Layers(), " > "))
	warnings := engine.Lint(b)
	for _, w := range warnings {
		fmt.Fprintf(stdout, "warning: %s\n", relativeTo(path, policy.Error{Pos: w.Pos, Msg: w.Message}))
	}
	if *strict && len(warnings) > 0 {
		fmt.Fprintf(stdout, "%d warning(s)\n", len(warnings))
		return exitFailed
	}
	return exitOK
}

func policyTest(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("policy test", "Usage: aibos policy test PATH [--json]\n\nRun the bundle's Test documents; each failure with its request, the expected\nand actual decisions and the rules that decided. Exit 1 if any fails.", stdout, stderr)
	asJSON := fs.Bool("json", false, "print every result as JSON")
	path, err := parseWithPath(fs, args)
	if err != nil {
		return fs.fail(err)
	}
	b, ok := loadBundle(path, stderr)
	if !ok {
		return exitInvalid
	}
	results := b.RunTests(time.Now())
	failed := engine.Failed(results)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(results)
	} else {
		for _, r := range failed {
			req, _ := json.Marshal(r.Request)
			fmt.Fprintf(stdout, "FAIL %s: %s / %s\n  request:  %s\n  expected: %s\n  actual:   %s\n  rules:    %s\n",
				relativeTo(path, policy.Error{Pos: r.Pos, Msg: "case"}), r.Suite, r.Case, req, r.Expect, r.Decision.Decision, engine.DescribeReasons(r.Decision.Reasons))
			if r.Problem != "" && r.Decision.Decision == r.Expect {
				fmt.Fprintf(stdout, "  problem:  %s\n", r.Problem)
			}
			for _, e := range r.Decision.Errors {
				fmt.Fprintf(stdout, "  error:    %s\n", e)
			}
		}
		fmt.Fprintf(stdout, "%d passed, %d failed\n", len(results)-len(failed), len(failed))
	}
	if len(failed) > 0 {
		return exitFailed
	}
	return exitOK
}

func policyEval(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("policy eval", "Usage: aibos policy eval PATH --request FILE|- [--entities FILE] [--now RFC3339] [--fail-on-deny]\n\nDecide one request locally against the bundle at PATH and print the decision\nwith its per-layer explanation. Stored entities (the roles and properties a\ncluster would merge from `aibos entities put`) come only from --entities.", stdout, stderr)
	reqPath := fs.String("request", "", "request JSON file, or - for standard input")
	entPath := fs.String("entities", "", "optional JSON file {\"entities\": [...]} of stored entities")
	nowFlag := fs.String("now", "", "time of the decision (RFC 3339); default: now")
	failOnDeny := fs.Bool("fail-on-deny", false, "exit 1 unless the decision is allow")
	path, err := parseWithPath(fs, args)
	if err != nil {
		return fs.fail(err)
	}
	if *reqPath == "" {
		fmt.Fprintln(stderr, "aibos policy eval: --request FILE (or -) is required")
		return exitInvalid
	}
	b, ok := loadBundle(path, stderr)
	if !ok {
		return exitInvalid
	}
	data, err := readInput(*reqPath, stdin)
	if err != nil {
		fmt.Fprintf(stderr, "aibos policy eval: %v\n", err)
		return exitInvalid
	}
	req, err := api.DecodeCheckRequest(data)
	if err != nil {
		fmt.Fprintf(stderr, "aibos policy eval: request %s: %v\n", *reqPath, err)
		return exitInvalid
	}
	var ents engine.EntityLookup = engine.NoEntities{}
	if *entPath != "" {
		data, err := readInput(*entPath, stdin)
		if err != nil {
			fmt.Fprintf(stderr, "aibos policy eval: %v\n", err)
			return exitInvalid
		}
		var er api.EntitiesRequest
		if err := json.Unmarshal(data, &er); err != nil {
			fmt.Fprintf(stderr, "aibos policy eval: entities %s: %v (want {\"entities\": [{\"type\", \"id\", \"properties\"}]})\n", *entPath, err)
			return exitInvalid
		}
		ents = engine.NewMapEntities(er.Entities)
	}
	now := time.Now()
	if *nowFlag != "" {
		if now, err = time.Parse(time.RFC3339, *nowFlag); err != nil {
			fmt.Fprintf(stderr, "aibos policy eval: --now %q: want RFC 3339, e.g. 2026-01-02T15:04:05Z\n", *nowFlag)
			return exitInvalid
		}
	}
	req.Explain = true
	d := b.Decide(req, ents, now)
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	enc.Encode(d)
	if *failOnDeny && d.Decision != api.Allow {
		return exitFailed
	}
	return exitOK
}

func readInput(path string, stdin io.Reader) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(io.LimitReader(stdin, 64<<20))
	}
	return os.ReadFile(path)
}

// serverFlag adds --server (several URLs may be given, comma-separated),
// --token-file, the operator credential (see credential), --tls-ca, the
// CA that https URLs are verified against, and the client certificate
// flags.
func serverFlag(fs *flags) *string {
	def := os.Getenv("AIBOS_SERVER")
	if def == "" {
		def = "http://127.0.0.1:8181"
	}
	fs.String("token-file", "", "file holding the operator token (else $AIBOS_TOKEN, else "+defaultTokenFile+")")
	fs.String("tls-ca", os.Getenv("AIBOS_CA"), "PEM file of the CA that signed the cluster's HTTPS certificates, for https:// servers (env AIBOS_CA; empty: the system roots)")
	fs.String("tls-client-cert", os.Getenv("AIBOS_CLIENT_CERT"), "client certificate to present, for nodes started with --tls-client-ca (env AIBOS_CLIENT_CERT; with --tls-client-key)")
	fs.String("tls-client-key", os.Getenv("AIBOS_CLIENT_KEY"), "key of --tls-client-cert (env AIBOS_CLIENT_KEY)")
	return fs.String("server", def, "kernel node URL(s), comma-separated (env AIBOS_SERVER)")
}

// newClient is a client of servers with the credential and the HTTP
// client that serverFlag's flags describe.
func newClient(fs *flags, servers string) (*client.Client, error) {
	return newClientWith(fs, servers, client.Options{})
}

// newClientWith is newClient with options. The token is the credential
// (see credential) unless o has one; the HTTP client is the one
// serverFlag's flags describe, with a 30s timeout, unless o has one.
func newClientWith(fs *flags, servers string, o client.Options) (*client.Client, error) {
	if o.Token == "" {
		tok, err := credential(fs.FlagSet)
		if err != nil {
			return nil, err
		}
		o.Token = tok
	}
	if o.HTTPClient == nil {
		hc, err := httpClientErr(fs.FlagSet, 30*time.Second)
		if err != nil {
			return nil, err
		}
		o.HTTPClient = hc
	}
	return client.New(strings.Split(servers, ","), o)
}

// apiFail prints an error answer or a transport error and returns exit 2.
// A node that could not be reached at all is named, with what to do.
func apiFail(stderr io.Writer, what string, err error) int {
	var ue *url.Error
	var op *net.OpError
	if errors.As(err, &ue) && errors.As(err, &op) && op.Op == "dial" {
		node := ue.URL
		if u, perr := url.Parse(ue.URL); perr == nil {
			node = u.Scheme + "://" + u.Host
		}
		fmt.Fprintf(stderr, "aibos %s: cannot reach a kernel node at %s (%v): is aibos serve running there? Start it, or point --server (or AIBOS_SERVER) at a running node\n", what, node, op.Err)
		return exitInvalid
	}
	fmt.Fprintf(stderr, "aibos %s: %v\n", what, err)
	return exitInvalid
}

func policyPublish(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("policy publish", "Usage: aibos policy publish PATH [--message M] [--author A] [--dry-run] [--server URL]\n\nPublish a bundle to a cluster as a new version; the server validates it and\nruns its tests first (--dry-run: only that).", stdout, stderr)
	server := serverFlag(fs)
	msg := fs.String("message", "", "why this version (recorded with it)")
	author := fs.String("author", "", "who publishes: recorded from your token's principal; if given, must be it")
	dry := fs.Bool("dry-run", false, "validate and test on the server without publishing")
	path, err := parseWithPath(fs, args)
	if err != nil {
		return fs.fail(err)
	}
	files, err := policy.ReadPath(path)
	if err != nil {
		fmt.Fprintf(stderr, "aibos policy publish: %v\n", err)
		return exitInvalid
	}
	c, err := newClient(fs, *server)
	if err != nil {
		return apiFail(stderr, "policy publish", err)
	}
	resp, err := c.Publish(context.Background(), files, client.PublishOptions{Message: *msg, Author: *author, DryRun: *dry})
	if err != nil {
		return apiFail(stderr, "policy publish", err)
	}
	if *dry {
		fmt.Fprintf(stdout, "valid: the bundle compiles and its tests pass (hash %s); nothing was published\n", resp.Hash)
	} else {
		fmt.Fprintf(stdout, "published version %d at revision %d (hash %s)\n", resp.Version, resp.Revision, resp.Hash)
	}
	for _, w := range resp.Warnings {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	return exitOK
}

func policyVersions(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("policy versions", "Usage: aibos policy versions [--json] [--server URL]\n\nList a cluster's bundle versions: who, when, why, content hash.", stdout, stderr)
	server := serverFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if code, ok := fs.parse(args); !ok {
		return code
	}
	c, err := newClient(fs, *server)
	if err != nil {
		return apiFail(stderr, "policy versions", err)
	}
	vs, err := c.Versions(context.Background())
	if err != nil {
		return apiFail(stderr, "policy versions", err)
	}
	if *asJSON {
		json.NewEncoder(stdout).Encode(vs)
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tREVISION\tTIME\tAUTHOR\tHASH\tMESSAGE")
	for _, v := range vs {
		msg := v.Message
		if v.RollbackOf != 0 {
			msg = fmt.Sprintf("(rollback to %d) %s", v.RollbackOf, msg)
		}
		hash := v.Hash
		if len(hash) > 12 {
			hash = hash[:12]
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\n", v.Version, v.Revision, v.Time.Format(time.RFC3339), v.Author, hash, msg)
	}
	tw.Flush()
	return exitOK
}

func policyRollback(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("policy rollback", "Usage: aibos policy rollback --to V [--message M] [--author A] [--server URL]\n\nPublish version V's content as a new version.", stdout, stderr)
	server := serverFlag(fs)
	to := fs.Uint64("to", 0, "the version whose content becomes current (as a new version)")
	msg := fs.String("message", "", "why (recorded with the new version)")
	author := fs.String("author", "", "who rolls back: recorded from your token's principal; if given, must be it")
	if code, ok := fs.parse(args); !ok {
		return code
	}
	if *to == 0 {
		fmt.Fprintln(stderr, "aibos policy rollback: --to V is required")
		return exitInvalid
	}
	c, err := newClient(fs, *server)
	if err != nil {
		return apiFail(stderr, "policy rollback", err)
	}
	resp, err := c.RollbackBy(context.Background(), *to, *msg, *author)
	if err != nil {
		return apiFail(stderr, "policy rollback", err)
	}
	fmt.Fprintf(stdout, "rolled back to the content of version %d as version %d at revision %d\n", *to, resp.Version, resp.Revision)
	return exitOK
}

func policyDiff(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("policy diff", "Usage: aibos policy diff A B [--json] [--server URL]\n\nSemantic changes from bundle A to bundle B, each a PATH or a version number\nfetched from --server.", stdout, stderr)
	server := serverFlag(fs)
	asJSON := fs.Bool("json", false, "print the changes as JSON")
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return fs.fail(err)
		}
		if fs.NArg() == 0 {
			break
		}
		pos, args = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	if len(pos) != 2 {
		fmt.Fprintf(stderr, "aibos policy diff: give two bundles, A and B (each a PATH or a version number); got %d\n", len(pos))
		return exitInvalid
	}
	var srcs [2]*policy.Bundle
	for i, arg := range pos {
		b, ok := diffSource(fs, arg, *server, stderr)
		if !ok {
			return exitInvalid
		}
		srcs[i] = b
	}
	changes := engine.Diff(srcs[0], srcs[1])
	if *asJSON {
		if changes == nil {
			changes = []engine.Change{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(changes)
		return exitOK
	}
	if len(changes) == 0 {
		fmt.Fprintln(stdout, "no semantic changes")
		return exitOK
	}
	for _, c := range changes {
		fmt.Fprintln(stdout, c)
	}
	return exitOK
}

// diffSource parses one side of a diff: a version number fetched from the
// server, unless a file of that name exists, or a local bundle.
func diffSource(fs *flags, arg, server string, stderr io.Writer) (*policy.Bundle, bool) {
	var files []api.File
	var err error
	if v, perr := strconv.ParseUint(arg, 10, 64); perr == nil && !exists(arg) {
		var c *client.Client
		if c, err = newClient(fs, server); err == nil {
			var bv api.BundleVersion
			bv, err = c.Version(context.Background(), v)
			files = bv.Files
		}
		if err != nil {
			fmt.Fprintf(stderr, "aibos policy diff: version %d: %v\n", v, err)
			return nil, false
		}
	} else if files, err = policy.ReadPath(arg); err != nil {
		fmt.Fprintf(stderr, "aibos policy diff: %v\n", err)
		return nil, false
	}
	b, err := policy.Parse(files)
	if err == nil {
		return b, true
	}
	var list policy.ErrorList
	if errors.As(err, &list) {
		for _, e := range list {
			fmt.Fprintf(stderr, "%s\n", relativeTo(arg, e))
		}
		fmt.Fprintf(stderr, "%s: %d error(s)\n", arg, len(list))
	} else {
		fmt.Fprintf(stderr, "aibos policy diff: %s: %v\n", arg, err)
	}
	return nil, false
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
