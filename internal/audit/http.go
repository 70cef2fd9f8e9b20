package audit

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/aibos/kernel/api"
)

// Handler serves the log over HTTP at these paths (the server mounts it):
//
//	GET /v1/audit          {"records": [...]}; params agent, action, decision,
//	                       kind, invocation, since, until (RFC 3339), limit, order=asc|desc
//	GET /v1/audit/export   the same records as JSON lines (application/x-ndjson), no limit by default
//	GET /v1/audit/verify   the Report of Verify, with "ok"
func (l *Log) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/audit", l.serveQuery)
	mux.HandleFunc("GET /v1/audit/export", l.serveExport)
	mux.HandleFunc("GET /v1/audit/verify", l.serveVerify)
	return mux
}

// QueryResponse is the answer of GET /v1/audit.
type QueryResponse struct {
	Records []Record `json:"records"`
}

// VerifyResponse is the answer of GET /v1/audit/verify.
type VerifyResponse struct {
	OK bool `json:"ok"`
	Report
}

func (l *Log) serveQuery(w http.ResponseWriter, r *http.Request) {
	f, err := ParseFilter(r.URL.Query(), false)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	recs, err := l.Query(f)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	if recs == nil {
		recs = []Record{}
	}
	writeJSON(w, http.StatusOK, QueryResponse{Records: recs})
}

func (l *Log) serveExport(w http.ResponseWriter, r *http.Request) {
	f, err := ParseFilter(r.URL.Query(), true)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	// Once records are streaming the status is sent; an error after that
	// can only cut the stream short.
	_ = l.Export(w, f)
}

func (l *Log) serveVerify(w http.ResponseWriter, r *http.Request) {
	if len(r.URL.RawQuery) > 0 {
		writeError(w, http.StatusBadRequest, "bad_request", "verify takes no query parameters")
		return
	}
	rep, err := l.Verify()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, VerifyResponse{OK: rep.OK(), Report: rep})
}

// ParseFilter reads a Filter from the query parameters of GET /v1/audit
// (export: of /v1/audit/export, whose limit has no maximum). The error
// names the parameter and what it expects.
func ParseFilter(q url.Values, export bool) (Filter, error) {
	var f Filter
	for k, vs := range q {
		if len(vs) != 1 {
			return f, fmt.Errorf("query parameter %s is given %d times; give it once", k, len(vs))
		}
		v := vs[0]
		var err error
		switch k {
		case "agent":
			f.Agent = v
		case "action":
			f.Action = v
		case "decision":
			f.Decision = v
		case "kind":
			f.Kind = v
		case "invocation":
			f.InvocationID = v
		case "since":
			f.Since, err = parseTime(k, v)
		case "until":
			f.Until, err = parseTime(k, v)
		case "limit":
			n, perr := strconv.Atoi(v)
			top := MaxLimit
			if export {
				top = int(^uint(0) >> 1)
			}
			if perr != nil || n < 1 || n > top {
				if export {
					return f, fmt.Errorf("query parameter limit=%q: want a positive integer", v)
				}
				return f, fmt.Errorf("query parameter limit=%q: want an integer from 1 to %d", v, MaxLimit)
			}
			f.Limit = n
		case "order":
			switch v {
			case "asc":
			case "desc":
				f.Desc = true
			default:
				return f, fmt.Errorf("query parameter order=%q: want asc or desc", v)
			}
		default:
			return f, fmt.Errorf("unknown query parameter %q: want agent, action, decision, kind, invocation, since, until, limit or order", k)
		}
		if err != nil {
			return f, err
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return f, fmt.Errorf("query parameters since=%s and until=%s: since must be before until", q.Get("since"), q.Get("until"))
	}
	return f, nil
}

func parseTime(k, v string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return t, fmt.Errorf("query parameter %s=%q: want an RFC 3339 time like 2026-01-02T15:04:05Z", k, v)
	}
	return t, nil
}

// FilterQuery renders f as the query parameters ParseFilter reads.
func FilterQuery(f Filter) url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"agent": f.Agent, "action": f.Action, "decision": f.Decision,
		"kind": f.Kind, "invocation": f.InvocationID} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.Format(time.RFC3339Nano))
	}
	if !f.Until.IsZero() {
		q.Set("until", f.Until.Format(time.RFC3339Nano))
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	if f.Desc {
		q.Set("order", "desc")
	}
	return q
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, api.ErrorBody{Error: api.ErrorDetail{Code: code, Message: msg}})
}
