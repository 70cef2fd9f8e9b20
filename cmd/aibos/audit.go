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
	sub, rest := args[0], args[1:]
	fs := newFlags("audit "+sub, auditUsage, stdout, stderr)
	data := fs.String("data", "data", "the node's data directory (the log is in DIR/audit)")
	var server *string
	var ff filterFlags
	switch sub {
	case "verify":
		server = fs.String("server", "", "ask this node to verify its log instead of reading DIR")
		fs.String("token-file", "", "with --server: file holding the operator token (else $AIBOS_TOKEN, else "+defaultTokenFile+")")
		fs.String("tls-ca", os.Getenv("AIBOS_CA"), "PEM file of the CA of the node's HTTPS certificate (env AIBOS_CA)")
	case "query", "export":
		server = serverFlag(fs)
		ff.add(fs.FlagSet)
	default:
		return unknownSub("audit", sub, auditUsage, stderr)
	}
	if code, ok := fs.parse(rest); !ok {
		return code
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["data"] && set["server"] {
		fmt.Fprintf(stderr, "aibos audit %s: give --data or --server, not both\n", sub)
		return exitInvalid
	}
	// verify is local unless --server; query and export remote unless --data.
	remote := set["server"] || (sub != "verify" && !set["data"])
	dir := filepath.Join(*data, "audit")
	if !remote {
		if _, err := os.Stat(dir); err != nil {
			fmt.Fprintf(stderr, "aibos audit %s: %v (is --data the node's data directory?)\n", sub, err)
			return exitInvalid
		}
	}
	base := strings.TrimRight(strings.Split(*server, ",")[0], "/")
	token, err := credential(fs.FlagSet)
	if err != nil {
		fmt.Fprintf(stderr, "aibos audit %s: %v\n", sub, err)
		return exitInvalid
	}
	hc := httpClient(fs.FlagSet, 0)

	if sub == "verify" {
		var rep audit.Report
		var err error
		if remote {
			var vr audit.VerifyResponse
			err = auditGet(hc, token, base+"/v1/audit/verify", func(body io.Reader) error { return json.NewDecoder(body).Decode(&vr) })
			rep = vr.Report
		} else {
			rep, err = audit.Verify(dir)
		}
		if err != nil {
			fmt.Fprintf(stderr, "aibos audit verify: %v\n", err)
			return exitInvalid
		}
		return printAuditReport(stdout, rep)
	}

	f, err := ff.filter(time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "aibos audit %s: %v\n", sub, err)
		return exitInvalid
	}
	switch {
	case sub == "export" && remote:
		err = auditGet(hc, token, base+"/v1/audit/export?"+audit.FilterQuery(f).Encode(), func(body io.Reader) error {
			_, err := io.Copy(stdout, body)
			return err
		})
	case sub == "export":
		err = audit.ExportDir(dir, stdout, f)
	default:
		var recs []audit.Record
		if remote {
			var qr audit.QueryResponse
			err = auditGet(hc, token, base+"/v1/audit?"+audit.FilterQuery(f).Encode(), func(body io.Reader) error { return json.NewDecoder(body).Decode(&qr) })
			recs = qr.Records
		} else {
			recs, err = audit.QueryDir(dir, f)
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
	}
	if err != nil {
		fmt.Fprintf(stderr, "aibos audit %s: %v\n", sub, err)
		return exitInvalid
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
