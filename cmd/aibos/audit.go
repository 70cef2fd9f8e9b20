package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/audit"
)

const auditUsage = `Usage:
  aibos audit verify [--data DIR | --server URL]   check the audit log's checksums, hash chain and head (exit 1 on problems)
  aibos audit query  [--data DIR | --server URL] [--agent A] [--action X] [--decision D] [--kind K]
                     [--invocation ID] [--since T] [--until T] [--limit N] [--desc]   print records as JSON lines
  aibos audit export [same flags as query]        all matching records as JSON lines (no limit unless given)

verify reads DIR/audit (DIR defaults to ./data) unless --server is given; query
and export ask the server (--server, env AIBOS_SERVER, http://127.0.0.1:8181)
unless --data is given. T is an RFC 3339 time or a duration before now (1h).`

// cmdAudit runs `aibos audit verify|query|export`.
func cmdAudit(args []string, stdout, stderr io.Writer) int {
	if code, ok := groupHelp(args, auditUsage, stdout, stderr); !ok {
		return code
	}
	switch args[0] {
	case "verify":
		return auditVerify(args[1:], stdout, stderr)
	case "query":
		return auditQuery(args[1:], stdout, stderr)
	case "export":
		return auditExport(args[1:], stdout, stderr)
	default:
		return unknownSub("audit", args[0], auditUsage, stderr)
	}
}

// auditLog is the log an audit subcommand reads: a node's, over HTTP, or
// the one in a data directory.
type auditLog struct {
	sub    string
	stderr io.Writer
	remote bool
	dir    string       // DIR/audit, when not remote
	base   string       // the node's URL, when remote
	token  string       // the operator token for the node
	hc     *http.Client // the client of the node
}

// newAuditFlags makes the flags of `aibos audit SUB` with --data.
func newAuditFlags(sub string, stdout, stderr io.Writer) (*flags, *string) {
	fs := newFlags("audit "+sub, auditUsage, stdout, stderr)
	return fs, fs.String("data", "data", "the node's data directory (the log is in DIR/audit)")
}

// openAuditLog parses the arguments of `aibos audit SUB` and finds its
// log: the node's if --server is given, or if remoteByDefault and --data
// is not, else the one in --data.
func openAuditLog(fs *flags, sub string, args []string, data, server *string, remoteByDefault bool) (src auditLog, code int, ok bool) {
	if code, ok := fs.parse(args); !ok {
		return src, code, false
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["data"] && set["server"] {
		fmt.Fprintf(fs.stderr, "aibos audit %s: give --data or --server, not both\n", sub)
		return src, exitInvalid, false
	}
	src = auditLog{sub: sub, stderr: fs.stderr, remote: set["server"] || (remoteByDefault && !set["data"]), dir: filepath.Join(*data, "audit")}
	if !src.remote {
		if _, err := os.Stat(src.dir); err != nil {
			return src, src.fail(fmt.Errorf("%v (is --data the node's data directory?)", err)), false
		}
	}
	src.base = strings.TrimRight(strings.Split(*server, ",")[0], "/")
	token, err := credential(fs.FlagSet)
	if err != nil {
		return src, src.fail(err), false
	}
	src.token = token
	src.hc = httpClient(fs.FlagSet, 0)
	return src, exitOK, true
}

// get GETs pathQuery from the node; see auditGet.
func (l auditLog) get(pathQuery string, read func(io.Reader) error) error {
	return auditGet(l.hc, l.token, l.base+pathQuery, read)
}

// auditVerify runs `aibos audit verify`: of DIR/audit unless --server.
func auditVerify(args []string, stdout, stderr io.Writer) int {
	fs, data := newAuditFlags("verify", stdout, stderr)
	server := fs.String("server", "", "ask this node to verify its log instead of reading DIR")
	fs.String("token-file", "", "with --server: file holding the operator token (else $AIBOS_TOKEN, else "+defaultTokenFile+")")
	fs.String("tls-ca", os.Getenv("AIBOS_CA"), "PEM file of the CA of the node's HTTPS certificate (env AIBOS_CA)")
	src, code, ok := openAuditLog(fs, "verify", args, data, server, false)
	if !ok {
		return code
	}
	var rep audit.Report
	var err error
	if src.remote {
		var vr audit.VerifyResponse
		err = src.get("/v1/audit/verify", func(body io.Reader) error { return json.NewDecoder(body).Decode(&vr) })
		rep = vr.Report
	} else {
		rep, err = audit.Verify(src.dir)
	}
	if err != nil {
		return src.fail(err)
	}
	return printAuditReport(stdout, rep)
}

// openAuditRecords parses the arguments of `aibos audit query|export`,
// which read the node's log unless --data is given, and their filter.
func openAuditRecords(sub string, args []string, stdout, stderr io.Writer) (src auditLog, f audit.Filter, code int, ok bool) {
	fs, data := newAuditFlags(sub, stdout, stderr)
	server := serverFlag(fs)
	var ff filterFlags
	ff.add(fs.FlagSet)
	if src, code, ok = openAuditLog(fs, sub, args, data, server, true); !ok {
		return src, f, code, false
	}
	f, err := ff.filter(time.Now())
	if err != nil {
		return src, f, src.fail(err), false
	}
	return src, f, exitOK, true
}

// fail prints err as the subcommand's and returns exit 2.
func (l auditLog) fail(err error) int {
	fmt.Fprintf(l.stderr, "aibos audit %s: %v\n", l.sub, err)
	return exitInvalid
}

// auditQuery runs `aibos audit query`: the matching records as JSON lines.
func auditQuery(args []string, stdout, stderr io.Writer) int {
	src, f, code, ok := openAuditRecords("query", args, stdout, stderr)
	if !ok {
		return code
	}
	var recs []audit.Record
	var err error
	if src.remote {
		var qr audit.QueryResponse
		err = src.get("/v1/audit?"+audit.FilterQuery(f).Encode(), func(body io.Reader) error { return json.NewDecoder(body).Decode(&qr) })
		recs = qr.Records
	} else {
		recs, err = audit.QueryDir(src.dir, f)
	}
	if err == nil {
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		for i := range recs {
			if err = enc.Encode(&recs[i]); err != nil {
				break
			}
		}
	}
	if err != nil {
		return src.fail(err)
	}
	return exitOK
}

// auditExport runs `aibos audit export`: every matching record (no limit
// unless given) as JSON lines.
func auditExport(args []string, stdout, stderr io.Writer) int {
	src, f, code, ok := openAuditRecords("export", args, stdout, stderr)
	if !ok {
		return code
	}
	var err error
	if src.remote {
		err = src.get("/v1/audit/export?"+audit.FilterQuery(f).Encode(), func(body io.Reader) error {
			_, err := io.Copy(stdout, body)
			return err
		})
	} else {
		err = audit.ExportDir(src.dir, stdout, f)
	}
	if err != nil {
		return src.fail(err)
	}
	return exitOK
}

// printAuditReport prints a verification and returns exit 1 if it found
// problems.
func printAuditReport(w io.Writer, rep audit.Report) int {
	for _, p := range rep.Problems {
		fmt.Fprintf(w, "PROBLEM %s seq %d offset %d: %s\n", p.Segment, p.Seq, p.Offset, p.Message)
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	status := "ok"
	if !rep.OK() {
		status = fmt.Sprintf("%d problem(s)", len(rep.Problems))
	}
	fmt.Fprintf(w, "%s: %d records (seq %d..%d) in %d segments; chain head %s\n",
		status, rep.Records, rep.FirstSeq, rep.LastSeq, rep.Segments, rep.Head)
	if !rep.OK() {
		return exitFailed
	}
	return exitOK
}

// filterFlags are the record filters of query and export.
type filterFlags struct {
	agent, action, decision, kind, invocation, since, until string
	limit                                                   int
	desc                                                    bool
}

func (ff *filterFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&ff.agent, "agent", "", "records of this agent")
	fs.StringVar(&ff.action, "action", "", "records of this action")
	fs.StringVar(&ff.decision, "decision", "", "records with this decision (allow, deny, require_approval)")
	fs.StringVar(&ff.kind, "kind", "", "records of this kind (decision, invocation, approval, kill)")
	fs.StringVar(&ff.invocation, "invocation", "", "records of this invocation id")
	fs.StringVar(&ff.since, "since", "", "records at or after T: RFC 3339, or a duration before now (1h)")
	fs.StringVar(&ff.until, "until", "", "records before T: RFC 3339, or a duration before now")
	fs.IntVar(&ff.limit, "limit", 0, "at most N records (query: default 100, max 10000; export: no limit)")
	fs.BoolVar(&ff.desc, "desc", false, "newest first")
}

func (ff *filterFlags) filter(now time.Time) (audit.Filter, error) {
	f := audit.Filter{Agent: ff.agent, Action: ff.action, Decision: ff.decision, Kind: ff.kind,
		InvocationID: ff.invocation, Limit: ff.limit, Desc: ff.desc}
	var err error
	if f.Since, err = flagTime("since", ff.since, now); err != nil {
		return f, err
	}
	if f.Until, err = flagTime("until", ff.until, now); err != nil {
		return f, err
	}
	if ff.limit < 0 {
		return f, fmt.Errorf("--limit %d: want a positive number", ff.limit)
	}
	return f, nil
}

func flagTime(name, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return t, fmt.Errorf("--%s %q: want an RFC 3339 time (2026-01-02T15:04:05Z) or a duration before now (1h)", name, v)
	}
	return t, nil
}

// auditGet GETs url and hands a 200 body to read; an error answer becomes
// its message.
func auditGet(hc *http.Client, token, url string, read func(io.Reader) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		var eb api.ErrorBody
		body, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
		if json.Unmarshal(body, &eb) == nil && eb.Error.Message != "" {
			return fmt.Errorf("%s: %s (%s)", res.Status, eb.Error.Message, eb.Error.Code)
		}
		return fmt.Errorf("%s: %s", res.Status, strings.TrimSpace(string(body)))
	}
	if err := read(res.Body); err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	return nil
}
