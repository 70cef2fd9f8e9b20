package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/client"
	"github.com/aibos/kernel/internal/engine/enginetest"
)

// cmdBench drives a running node with decisions over HTTP and reports
// decisions per second and latency percentiles. It is a closed-loop load
// generator by default; --rate makes it open-loop at a fixed request rate,
// measuring latency from each request's scheduled time so that a stalled
// server is not hidden (no coordinated omission).
func cmdBench(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("bench", "Usage: aibos bench [flags]\n\nDrive a running node on loopback with decisions over HTTP and report\ndecisions per second and latency percentiles.", stdout, stderr)
	server := fs.String("server", "http://127.0.0.1:8181", "node URL")
	fs.String("token-file", "", "file holding the operator token (else $AIBOS_TOKEN, else "+defaultTokenFile+"); it needs the pep role, and policy-author with --setup")
	conc := fs.Int("concurrency", 32, "concurrent connections")
	dur := fs.Duration("duration", 10*time.Second, "how long to drive load")
	batch := fs.Int("batch", 0, "checks per request on /v1/check/batch (0: single checks on /v1/check)")
	rate := fs.Float64("rate", 0, "requests per second in total (0: as fast as possible)")
	setup := fs.Bool("setup", false, "publish a generated bundle of --policies policies first: it replaces the node's live bundle (as a new version; roll back to restore)")
	policies := fs.Int("policies", 1000, "policies in the generated bundle")
	reqFile := fs.String("requests", "", "JSON file of the check requests to send: one request, an array of them or {\"checks\": [...]} (default: requests for the generated bundle)")
	if code, ok := fs.parse(args); !ok {
		return code
	}
	if *conc < 1 || *dur <= 0 || *batch < 0 {
		fmt.Fprintln(stderr, "aibos bench: --concurrency ≥ 1, --duration > 0 and --batch ≥ 0 are required")
		return exitInvalid
	}
	if !isLoopbackURL(*server) {
		fmt.Fprintf(stderr, "aibos bench: %s is not a loopback address; the load generator only drives local nodes\n", *server)
		return exitInvalid
	}
	ctx := context.Background()
	const namespaces = 20
	reqs := benchRequests(*policies, namespaces, 256)
	if *reqFile != "" {
		var err error
		if reqs, err = readBenchRequests(*reqFile); err != nil {
			fmt.Fprintf(stderr, "aibos bench: --requests %s: %v\n", *reqFile, err)
			return exitInvalid
		}
	}
	// A bundle someone published is theirs: bench decides with it, and
	// replaces it only when --setup asks.
	c, err := newClient(fs, *server)
	if err != nil {
		return apiFail(stderr, "bench", err)
	}
	cur, err := c.Current(ctx)
	var ce *client.Error
	live := err == nil
	if err != nil && !(errors.As(err, &ce) && ce.Code == "not_found") {
		return apiFail(stderr, "bench", err)
	}
	switch {
	case *setup:
		resp, err := c.Publish(ctx, enginetest.GenerateBundle(*policies, namespaces), client.PublishOptions{Message: "bench bundle"})
		if err != nil {
			return apiFail(stderr, "bench: publish", err)
		}
		if live {
			fmt.Fprintf(stdout, "replaced the live bundle (version %d) with a generated %d-policy bundle as version %d, as --setup asks; restore yours with: aibos policy rollback --to %d\n", cur.Version, *policies, resp.Version, cur.Version)
		} else {
			fmt.Fprintf(stdout, "published a generated %d-policy bundle as version %d\n", *policies, resp.Version)
		}
	case !live:
		fmt.Fprintf(stderr, "aibos bench: the node at %s has no policy bundle, so every check would be denied for that reason alone.\n"+
			"Publish yours (aibos policy publish FILE) and give requests for it (--requests FILE), or run aibos bench --setup to publish a generated %d-policy bundle (it becomes the node's live bundle).\n", *server, *policies)
		return exitInvalid
	case *reqFile == "":
		fmt.Fprintf(stdout, "benchmarking the live bundle (version %d), unchanged, with requests generated for the bench bundle: their decisions depend on your policies; --requests FILE sends yours\n", cur.Version)
	default:
		fmt.Fprintf(stdout, "benchmarking the live bundle (version %d), unchanged, with %d requests from %s\n", cur.Version, len(reqs), *reqFile)
	}
	bodies := benchBodies(reqs, *batch)
	token, err := credential(fs.FlagSet)
	if err != nil {
		fmt.Fprintf(stderr, "aibos bench: %v\n", err)
		return exitInvalid
	}
	res := drive(ctx, *server, token, *conc, *dur, *rate, *batch, bodies)
	perReq := max(*batch, 1)
	fmt.Fprintf(stdout, "mode=%s concurrency=%d duration=%s rate=%s\n", benchMode(*batch), *conc, *dur, rateString(*rate))
	fmt.Fprintf(stdout, "requests=%d errors=%d decisions=%d decisions/s=%.0f requests/s=%.0f\n",
		res.ok, res.errs, res.ok*perReq, float64(res.ok*perReq)/res.elapsed.Seconds(), float64(res.ok)/res.elapsed.Seconds())
	fmt.Fprintf(stdout, "latency p50=%s p99=%s p999=%s max=%s\n", res.pct(0.50), res.pct(0.99), res.pct(0.999), res.pct(1))
	if res.errs > 0 {
		fmt.Fprintf(stdout, "first error: %v\n", res.firstErr)
		return exitFailed
	}
	return exitOK
}

func benchMode(batch int) string {
	if batch > 0 {
		return fmt.Sprintf("batch(%d)", batch)
	}
	return "single"
}

func rateString(r float64) string {
	if r == 0 {
		return "max"
	}
	return fmt.Sprintf("%.0f/s", r)
}

func isLoopbackURL(u string) bool {
	host := strings.TrimPrefix(strings.TrimPrefix(u, "http://"), "https://")
	host, _, _ = strings.Cut(host, "/")
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// readBenchRequests reads check requests from a JSON file: one request,
// an array of them, or a batch {"checks": [...]}.
func readBenchRequests(path string) ([]api.CheckRequest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	data = bytes.TrimSpace(data)
	var reqs []api.CheckRequest
	switch {
	case len(data) > 0 && data[0] == '[':
		var items []json.RawMessage
		if err := json.Unmarshal(data, &items); err != nil {
			return nil, fmt.Errorf("not a JSON array of check requests: %v", err)
		}
		for i, it := range items {
			r, err := api.DecodeCheckRequest(it)
			if err != nil {
				return nil, fmt.Errorf("request [%d]: %v", i, err)
			}
			reqs = append(reqs, *r)
		}
	default:
		r, err := api.DecodeCheckRequest(data)
		if err != nil {
			b, berr := api.DecodeBatchCheckRequest(data)
			if berr != nil {
				return nil, err
			}
			reqs = b.Checks
			break
		}
		reqs = append(reqs, *r)
	}
	if len(reqs) == 0 {
		return nil, errors.New("no check requests in the file")
	}
	return reqs, nil
}

// benchBodies pre-encodes request bodies so the generator spends its time
// waiting on the server, not encoding.
func benchBodies(reqs []api.CheckRequest, batch int) [][]byte {
	var bodies [][]byte
	if batch == 0 {
		for _, r := range reqs {
			b, _ := json.Marshal(r)
			bodies = append(bodies, b)
		}
		return bodies
	}
	for i := 0; i < 16; i++ {
		checks := make([]api.CheckRequest, batch)
		for j := range checks {
			checks[j] = reqs[(i*batch+j)%len(reqs)]
		}
		b, _ := json.Marshal(api.BatchCheckRequest{Checks: checks})
		bodies = append(bodies, b)
	}
	return bodies
}

type benchResult struct {
	ok, errs  int
	elapsed   time.Duration
	latencies []time.Duration
	firstErr  error
}

func (r *benchResult) pct(p float64) time.Duration {
	return percentile(r.latencies, p).Round(time.Microsecond)
}

func drive(ctx context.Context, server, token string, conc int, dur time.Duration, rate float64, batch int, bodies [][]byte) benchResult {
	path := "/v1/check"
	if batch > 0 {
		path = "/v1/check/batch"
	}
	tr := &http.Transport{MaxIdleConns: conc, MaxIdleConnsPerHost: conc, DisableCompression: true}
	hc := &http.Client{Transport: bearer{tr, token}, Timeout: 10 * time.Second}
	defer tr.CloseIdleConnections()
	url := strings.TrimRight(server, "/") + path
	ctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()

	var mu sync.Mutex
	var res benchResult
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			var lat []time.Duration
			var ok, errs int
			var firstErr error
			var interval time.Duration
			if rate > 0 {
				interval = time.Duration(float64(time.Second) * float64(conc) / rate)
			}
			next := start.Add(time.Duration(w) * interval / time.Duration(conc))
			for i := w; ctx.Err() == nil; i++ {
				sched := time.Now()
				if interval > 0 {
					if d := time.Until(next); d > 0 {
						select {
						case <-time.After(d):
						case <-ctx.Done():
						}
						if ctx.Err() != nil {
							break
						}
					}
					sched = next
					next = next.Add(interval)
				}
				err := post(ctx, hc, url, bodies[i%len(bodies)])
				if ctx.Err() != nil {
					break
				}
				if err != nil {
					errs++
					if firstErr == nil {
						firstErr = err
					}
					continue
				}
				ok++
				lat = append(lat, time.Since(sched))
			}
			mu.Lock()
			res.ok += ok
			res.errs += errs
			res.latencies = append(res.latencies, lat...)
			if res.firstErr == nil {
				res.firstErr = firstErr
			}
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	slices.Sort(res.latencies)
	return res
}

func post(ctx context.Context, hc *http.Client, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}

// benchRequests spreads n requests over the exact actions of a generated
// bundle, each allowed after every matching rule was evaluated.
func benchRequests(policies, namespaces, n int) []api.CheckRequest {
	perNS := max(policies/namespaces, 1)
	var reqs []api.CheckRequest
	for i := 0; len(reqs) < n; i++ {
		ns, k := i%namespaces, (i/namespaces)%perNS
		if k%10 == 3 {
			continue // a namespace glob policy, not an exact action
		}
		reqs = append(reqs, *enginetest.Request(enginetest.Action(ns, k)))
	}
	return reqs
}

// bearer adds the operator token to every request.
type bearer struct {
	rt    http.RoundTripper
	token string
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	if b.token != "" {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+b.token)
	}
	return b.rt.RoundTrip(r)
}
