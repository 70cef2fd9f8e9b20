// Package client is the public Go SDK of the AI-BOS Kernel: a remote client
// for the kernel's HTTP API over one or more node URLs. Reads and decisions
// go to a healthy node; writes may go to any node (followers forward them to
// the leader) and are retried while the cluster has no leader.
package client

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aibos/kernel/api"
)

// Error is an error answer of the API.
type Error struct {
	Status  int
	Code    string
	Message string
	Details []string
	// Body is the answer as received (an invocation's refusal carries the
	// whole api.InvokeResponse).
	Body []byte
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s (%d %s)", e.Message, e.Status, e.Code)
	if len(e.Details) > 0 {
		s += ":\n  " + strings.Join(e.Details, "\n  ")
	}
	return s
}

// Codes of answers that say the call was certainly not carried out, so it
// is retried: no leader was reachable for a write, or the node has not yet
// replayed its state after a start (it answers nothing until it has).
const (
	codeNoLeader = api.CodeNoLeader
	codeNotReady = api.CodeNotReady
)

// notCarriedOut reports whether err is an answer that says nothing was done.
func notCarriedOut(e *Error) bool { return e.Code == codeNoLeader || e.Code == codeNotReady }

// codeApprovalRequired: a kernel act held for a second person's approval
// (202); the Error's Body holds its approval_id.
const codeApprovalRequired = api.CodeApprovalRequired

type approvalKey struct{}

// WithApproval makes the calls made with ctx redeem the approved kernel
// approval id: the act the two-person rule held runs, once, when sent again
// exactly as it was asked for.
func WithApproval(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, approvalKey{}, id)
}

// Options tune a Client.
type Options struct {
	// HTTPClient is used for every call; nil means a client with a 30 s
	// timeout.
	HTTPClient *http.Client
	// TLS, if set and HTTPClient is nil, configures https node URLs:
	// RootCAs is the cluster CA (nil: the system roots), Certificates an
	// operator's client certificate where nodes require one.
	TLS *tls.Config
	// RetryFor bounds how long a call keeps retrying while nodes are
	// unreachable or there is no leader. Zero means 5 s; negative disables
	// retries.
	RetryFor time.Duration
	// Token is the operator token sent with every call as "Authorization:
	// Bearer TOKEN" (aibos_op_…; an agent's token for an agent). A call
	// that sets its own Authorization (Invoke) keeps it.
	Token string
	// Tenant, if set, is sent with every call as the Aibos-Tenant header,
	// so that a region routes the call to the tenant's home region;
	// WithTenant sets it for one call.
	Tenant string
}

// Client calls a kernel cluster. It is safe for concurrent use.
type Client struct {
	urls     []string
	http     *http.Client
	retryFor time.Duration
	token    string
	tenant   string
	next     atomic.Uint32
	// regions is the region registry that redirects are checked against.
	regions registry
}

// New returns a client for the nodes at urls ("http://127.0.0.1:8181",
// or "https://..." for nodes that serve TLS: see Options.TLS).
func New(urls []string, opts Options) (*Client, error) {
	if len(urls) == 0 {
		return nil, errors.New("client: give at least one node URL")
	}
	clean := make([]string, len(urls))
	for i, u := range urls {
		if !strings.Contains(u, "://") {
			u = "http://" + u
		}
		if _, err := url.Parse(u); err != nil {
			return nil, fmt.Errorf("client: node URL %q: %w", u, err)
		}
		clean[i] = strings.TrimRight(u, "/")
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 30 * time.Second}
		if opts.TLS != nil {
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.TLSClientConfig = opts.TLS
			opts.HTTPClient.Transport = tr
		}
	}
	// The client follows redirects itself, only to endpoints of the region
	// registry (see once): net/http would follow any Location and, for the
	// same host on another port, send the token with it. The caller's
	// http.Client is copied, not changed.
	hc := *opts.HTTPClient
	hc.CheckRedirect = noRedirects
	opts.HTTPClient = &hc
	if opts.RetryFor == 0 {
		opts.RetryFor = 5 * time.Second
	}
	return &Client{urls: clean, http: opts.HTTPClient, retryFor: opts.RetryFor, token: strings.TrimSpace(opts.Token), tenant: strings.TrimSpace(opts.Tenant)}, nil
}

// Check asks for one decision.
func (c *Client) Check(ctx context.Context, req api.CheckRequest) (api.Decision, error) {
	var d api.Decision
	err := c.doJSON(ctx, http.MethodPost, "/v1/check", req, &d)
	return d, err
}

// CheckBatch asks for several decisions; the results are in request order.
func (c *Client) CheckBatch(ctx context.Context, reqs []api.CheckRequest) ([]api.Decision, error) {
	var resp api.BatchCheckResponse
	err := c.doJSON(ctx, http.MethodPost, "/v1/check/batch", api.BatchCheckRequest{Checks: reqs}, &resp)
	return resp.Results, err
}

// PublishOptions describe a publish.
type PublishOptions struct {
	Message string
	Author  string
	// DryRun validates and tests the bundle without publishing it.
	DryRun bool
}

// Publish publishes a bundle's files as a new version. One file is sent as
// it is; several are sent as a tar archive.
func (c *Client) Publish(ctx context.Context, files []api.File, o PublishOptions) (api.PublishResponse, error) {
	body, ctype, q, err := bundleBody(files)
	if err != nil {
		return api.PublishResponse{}, err
	}
	if o.Message != "" {
		q.Set("message", o.Message)
	}
	if o.Author != "" {
		q.Set("author", o.Author)
	}
	if o.DryRun {
		q.Set("dry_run", "true")
	}
	var resp api.PublishResponse
	err = c.do(ctx, http.MethodPut, "/v1/policies?"+q.Encode(), ctype, body, &resp)
	return resp, err
}

// Simulate asks a node to replay the decisions it logged during the last
// since against a candidate bundle and report what would change. Only the
// answering node's log is read (each node logs its own decisions). A long
// log may take longer than the HTTP client's timeout: give the Client an
// HTTPClient with a longer one.
func (c *Client) Simulate(ctx context.Context, files []api.File, since time.Duration) (api.SimulationReport, error) {
	body, ctype, q, err := bundleBody(files)
	if err != nil {
		return api.SimulationReport{}, err
	}
	q.Set("since", since.String())
	var rep api.SimulationReport
	err = c.do(ctx, http.MethodPost, "/v1/policies/simulate?"+q.Encode(), ctype, body, &rep)
	return rep, err
}

// bundleBody encodes bundle files as a request body: one file as it is
// (named in the query), several as a tar archive.
func bundleBody(files []api.File) (body []byte, ctype string, q url.Values, err error) {
	q = url.Values{}
	switch len(files) {
	case 0:
		return nil, "", nil, errors.New("client: no bundle files")
	case 1:
		q.Set("name", files[0].Name)
		return files[0].Data, "application/yaml", q, nil
	default:
		body, err = tarFiles(files)
		return body, "application/x-tar", q, err
	}
}

func tarFiles(files []api.File) ([]byte, error) {
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

// Versions lists the published versions, oldest first.
func (c *Client) Versions(ctx context.Context) ([]api.VersionInfo, error) {
	var resp struct {
		Versions []api.VersionInfo `json:"versions"`
	}
	err := c.doJSON(ctx, http.MethodGet, "/v1/policies/versions", nil, &resp)
	return resp.Versions, err
}

// Version returns one version with its files.
func (c *Client) Version(ctx context.Context, v uint64) (api.BundleVersion, error) {
	var bv api.BundleVersion
	err := c.doJSON(ctx, http.MethodGet, "/v1/policies/versions/"+strconv.FormatUint(v, 10), nil, &bv)
	return bv, err
}

// Current returns the current version with its files.
func (c *Client) Current(ctx context.Context) (api.BundleVersion, error) {
	var bv api.BundleVersion
	err := c.doJSON(ctx, http.MethodGet, "/v1/policies", nil, &bv)
	return bv, err
}

// Rollback publishes the content of version to as a new version.
func (c *Client) Rollback(ctx context.Context, to uint64, message string) (api.PublishResponse, error) {
	return c.RollbackBy(ctx, to, message, "")
}

// RollbackBy is Rollback recording author as who rolled back (empty: the
// server's default).
func (c *Client) RollbackBy(ctx context.Context, to uint64, message, author string) (api.PublishResponse, error) {
	path := "/v1/policies/rollback"
	if author != "" {
		path += "?" + url.Values{"author": {author}}.Encode()
	}
	var resp api.PublishResponse
	err := c.doJSON(ctx, http.MethodPost, path, api.RollbackRequest{To: to, Message: message}, &resp)
	return resp, err
}

// PutEntities upserts entities at once and returns the committing revision.
func (c *Client) PutEntities(ctx context.Context, ents []api.Entity) (uint64, error) {
	var resp api.WriteResponse
	err := c.doJSON(ctx, http.MethodPut, "/v1/entities", api.EntitiesRequest{Entities: ents}, &resp)
	return resp.Revision, err
}

// Entity reads one entity; minRevision > 0 asks for read-your-writes.
func (c *Client) Entity(ctx context.Context, typ, id string, minRevision uint64) (api.Entity, error) {
	var e api.Entity
	p := "/v1/entities/" + url.PathEscape(typ) + "/" + url.PathEscape(id)
	if minRevision > 0 {
		p += "?min_revision=" + strconv.FormatUint(minRevision, 10)
	}
	err := c.doJSON(ctx, http.MethodGet, p, nil, &e)
	return e, err
}

// DeleteEntity deletes one entity and returns the committing revision.
func (c *Client) DeleteEntity(ctx context.Context, typ, id string) (uint64, error) {
	var resp api.WriteResponse
	err := c.doJSON(ctx, http.MethodDelete, "/v1/entities/"+url.PathEscape(typ)+"/"+url.PathEscape(id), nil, &resp)
	return resp.Revision, err
}

// Cluster returns the cluster as the answering node sees it.
func (c *Client) Cluster(ctx context.Context) (api.Cluster, error) {
	var cl api.Cluster
	err := c.doJSON(ctx, http.MethodGet, "/v1/cluster", nil, &cl)
	return cl, err
}

func (c *Client) doJSON(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	return c.do(ctx, method, path, "application/json", body, out)
}

// do sends a request to a node, moving to the next node when one cannot be
// reached and retrying while there is no leader, for up to RetryFor.
func (c *Client) do(ctx context.Context, method, path, ctype string, body []byte, out any) error {
	return c.doH(ctx, method, path, ctype, body, nil, out, safeToRetry)
}

// doH is do with extra request headers and a retry rule of the caller's.
func (c *Client) doH(ctx context.Context, method, path, ctype string, body []byte, hdr http.Header, out any, retry func(method, path string, err error) bool) error {
	deadline := time.Now().Add(c.retryFor)
	backoff := 20 * time.Millisecond
	for attempt := 0; ; attempt++ {
		cur := c.next.Load()
		i := int(cur % uint32(len(c.urls)))
		err := c.once(ctx, c.urls[i]+path, method, ctype, body, hdr, out)
		if err == nil {
			return nil
		}
		var apiErr *Error
		retryable := retry(method, path, err)
		if !errors.As(err, &apiErr) {
			// Move past the node that could not be reached, unless another
			// call already did.
			c.next.CompareAndSwap(cur, cur+1)
		}
		if !retryable || c.retryFor < 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		if apiErr != nil || attempt >= len(c.urls)-1 {
			select {
			case <-ctx.Done():
				return err
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 250*time.Millisecond)
		}
	}
}

// safeToRetry reports whether a failed call may be sent again without the
// risk of applying a write twice. An answer that says no leader took the
// write, and a connection that was never made, are always safe; any other
// transport failure is safe only for calls that change nothing or whose
// repetition changes nothing more (checks, reads, entity upserts and
// deletes). A publish or a rollback that failed after it was sent is not
// retried: its outcome is unknown, and the caller reads the versions first.
func safeToRetry(method, path string, err error) bool {
	var apiErr *Error
	if errors.As(err, &apiErr) {
		return notCarriedOut(apiErr)
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return true
	}
	switch {
	case method == http.MethodGet, method == http.MethodDelete,
		path == "/v1/check", path == "/v1/check/batch", path == "/v1/entities":
		return true
	}
	return false
}

// once sends one call to the node at u and, when the node answers that the
// call's tenant lives in another region, to that region (see follow).
func (c *Client) once(ctx context.Context, u, method, ctype string, body []byte, hdr http.Header, out any) error {
	for hops := 0; ; hops++ {
		resp, data, err := c.send(ctx, u, method, ctype, body, hdr)
		if err != nil {
			return err
		}
		next, err := c.follow(ctx, u, resp, data, hops)
		if err != nil {
			return err
		}
		if next == "" {
			return answer(u, resp, data, out)
		}
		u = next
	}
}

// send makes one HTTP request with the client's credentials and returns
// the answer with its body read.
func (c *Client) send(ctx context.Context, u, method, ctype string, body []byte, hdr http.Header) (*http.Response, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", ctype)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if id, ok := ctx.Value(approvalKey{}).(string); ok {
		req.Header.Set("X-Aibos-Approval", id)
	}
	if t := c.tenantOf(ctx); t != "" {
		req.Header.Set(api.HeaderTenant, t)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	return resp, data, nil
}

// answer decodes a node's answer into out, or into an *Error.
func answer(u string, resp *http.Response, data []byte, out any) error {
	if resp.StatusCode == http.StatusAccepted {
		// A kernel act held for a second person (two-person rule) is not
		// done: say so as an error the caller cannot mistake for success.
		var eb api.ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error.Code == codeApprovalRequired {
			return &Error{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message, Body: data}
		}
	}
	if resp.StatusCode >= 300 {
		var eb api.ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error.Code != "" {
			return &Error{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message, Details: eb.Error.Details, Body: data}
		}
		return &Error{Status: resp.StatusCode, Code: "http_" + strconv.Itoa(resp.StatusCode), Message: strings.TrimSpace(string(data)), Body: data}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("client: decode answer of %s: %w", u, err)
	}
	return nil
}
