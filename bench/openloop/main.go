// Command openloop is an open-loop load generator: it sends POST requests
// at a fixed rate whatever the server's pace, and measures each latency
// from the moment the request was due (not when it was sent), so a stalled
// server cannot hide its queueing (no coordinated omission). wrk2 does this
// but is not packaged in Debian; this is the part of it bench/vs-peers
// needs.
//
// It is its own lean HTTP/1.1 client over raw TCP rather than net/http's,
// whose goroutines and allocations on the one core the generator is pinned
// to cost most of that core at tens of thousands of requests a second and
// put a scheduling tail of milliseconds into the latencies it measures.
// The request (POST, Content-Type: application/json, the body, and a
// bearer token if one is given) is built once and sent with one write;
// each connection carries one request at a time (no pipelining), kept
// alive until the server closes it or anything goes wrong, and is then
// dialled again. The answer is parsed by readResponse (resp.go), into
// reused buffers, so the steady state does not allocate. Requests are
// released by a timerfd (pace_linux.go): request i is due at the start
// plus i intervals.
//
// It prints one line, which bench/vs-peers/run.sh parses, and exits 1 if
// any request failed (a transport error, a status other than 200, or an
// answer without the -expect substring):
//
//	openloop -url http://127.0.0.1:8181/v1/check -body check.json -rate 5000 -d 5s -expect '"allow"'
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	url := flag.String("url", "", "URL to POST to (http only)")
	bodyFile := flag.String("body", "", "file holding the request body")
	rate := flag.Float64("rate", 1000, "requests per second")
	dur := flag.Duration("d", 5*time.Second, "how long to send")
	conns := flag.Int("c", 64, "connections (and sending goroutines); each carries one request at a time")
	expect := flag.String("expect", "", "substring every answer must contain")
	token := flag.String("token", os.Getenv("TOKEN"), "bearer token sent with every request ($TOKEN)")
	flag.Parse()
	body, err := os.ReadFile(*bodyFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "openloop:", err)
		os.Exit(2)
	}
	res, err := run(config{url: *url, body: body, rate: *rate, dur: *dur, conns: *conns, expect: *expect, token: *token})
	if err != nil {
		fmt.Fprintln(os.Stderr, "openloop:", err)
		os.Exit(2)
	}
	fmt.Println(res)
	if res.errors > 0 {
		fmt.Fprintln(os.Stderr, "openloop: first error:", res.firstErr)
		os.Exit(1)
	}
}

// config is what the flags ask for.
type config struct {
	url    string
	body   []byte
	rate   float64 // requests per second
	dur    time.Duration
	conns  int
	expect string
	token  string
	// timeout bounds how long past the end of sending a request may
	// take; 0 means 10 s.
	timeout time.Duration
}

// result is what a run measured.
type result struct {
	rate     float64         // asked for
	lat      []time.Duration // one per request, sorted
	elapsed  time.Duration   // from the start until the last answer
	errors   int64
	firstErr error
}

// String is the line run.sh parses.
func (r result) String() string {
	q := func(p float64) time.Duration {
		if len(r.lat) == 0 {
			return 0
		}
		return r.lat[min(len(r.lat)-1, int(p*float64(len(r.lat))))].Round(time.Microsecond)
	}
	return fmt.Sprintf("requests %d in %.2fs (%.0f/s asked, %.0f/s done), errors %d, p50 %s p90 %s p99 %s max %s",
		len(r.lat), r.elapsed.Seconds(), r.rate, float64(len(r.lat))/r.elapsed.Seconds(), r.errors,
		q(0.5), q(0.9), q(0.99), q(1))
}

// run sends cfg.rate requests a second for cfg.dur and measures them. Its
// error is for what stops it from running at all; failed requests are
// counted in the result.
func run(cfg config) (result, error) {
	addr, host, path, err := parseTarget(cfg.url)
	if err != nil {
		return result{}, err
	}
	if !(cfg.rate > 0) || cfg.dur <= 0 {
		return result{}, fmt.Errorf("rate %g/s for %s: both must be positive", cfg.rate, cfg.dur)
	}
	n := int(cfg.rate * cfg.dur.Seconds())
	if n < 1 {
		return result{}, fmt.Errorf("rate %g/s for %s is not a single request", cfg.rate, cfg.dur)
	}
	if cfg.timeout <= 0 {
		cfg.timeout = 10 * time.Second
	}
	interval := time.Duration(float64(time.Second) / cfg.rate)
	req := buildRequest(host, path, cfg.token, cfg.body)
	// One deadline per connection for the whole run rather than one per
	// request, which would cost a timer update each.
	deadline := time.Now().Add(cfg.dur + cfg.timeout + 5*time.Second)

	var (
		start    time.Time // written before the first send on due
		due      = make(chan int, n)
		lat      = make([]time.Duration, n)
		next     atomic.Int64
		bad      atomic.Int64
		errOnce  sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	workers := make([]*worker, max(1, cfg.conns))
	for k := range workers {
		w := &worker{addr: addr, req: req, expect: []byte(cfg.expect), deadline: deadline, buf: make([]byte, 0, 4096)}
		_ = w.dial() // warm; a failure is counted when a request needs it
		workers[k] = w
	}
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.close()
			for i := range due {
				t := start.Add(time.Duration(i) * interval)
				err := w.do()
				d := time.Since(t)
				lat[next.Add(1)-1] = d
				if err != nil {
					bad.Add(1)
					errOnce.Do(func() { firstErr = err })
				}
			}
		}()
	}

	start = time.Now()
	if tk, err := newTicker(interval); err == nil {
		// Request 0 is due now; each expiry releases those due by then.
		due <- 0
		for released, expired := 1, 0; released < n; {
			k, err := tk.wait()
			if err != nil {
				tk.stop()
				close(due)
				wg.Wait()
				return result{}, err
			}
			for expired += k; released <= expired && released < n; released++ {
				due <- released
			}
		}
		tk.stop()
	} else {
		for i := range n {
			if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
				time.Sleep(d) // millisecond resolution: see ticker
			}
			due <- i
		}
	}
	close(due)
	wg.Wait()
	res := result{rate: cfg.rate, lat: lat[:next.Load()], elapsed: time.Since(start), errors: bad.Load(), firstErr: firstErr}
	slices.Sort(res.lat)
	return res, nil
}

// parseTarget splits an http URL into the address to dial, the Host
// header and the request target.
func parseTarget(raw string) (addr, host, path string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", "", err
	}
	if u.Scheme != "http" {
		return "", "", "", fmt.Errorf("url %q: only http:// is supported", raw)
	}
	if u.Host == "" {
		return "", "", "", fmt.Errorf("url %q has no host", raw)
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	return net.JoinHostPort(u.Hostname(), port), u.Host, u.RequestURI(), nil
}

// buildRequest is the whole request, head and body, as sent every time.
func buildRequest(host, path, token string, body []byte) []byte {
	var b bytes.Buffer
	b.WriteString("POST " + path + " HTTP/1.1\r\nHost: " + host + "\r\n")
	b.WriteString("Content-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n")
	if token != "" {
		b.WriteString("Authorization: Bearer " + token + "\r\n")
	}
	b.WriteString("Connection: keep-alive\r\n\r\n")
	b.Write(body)
	return b.Bytes()
}

// worker owns one connection and its buffers.
type worker struct {
	addr     string
	req      []byte
	expect   []byte
	deadline time.Time
	conn     net.Conn
	br       *bufio.Reader
	buf      []byte // the last body, reused
	used     bool   // conn has carried a request
}

func (w *worker) dial() error {
	c, err := net.DialTimeout("tcp", w.addr, 5*time.Second)
	if err != nil {
		return err
	}
	if err := c.SetDeadline(w.deadline); err != nil {
		c.Close()
		return err
	}
	if w.br == nil {
		w.br = bufio.NewReaderSize(c, 16<<10)
	} else {
		w.br.Reset(c)
	}
	w.conn, w.used = c, false
	return nil
}

func (w *worker) close() {
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
}

// do sends the request and checks the answer. A kept-alive connection
// that the server has closed meanwhile without saying so is dialled again
// and the request sent once more.
func (w *worker) do() error {
	for retried := false; ; retried = true {
		if w.conn == nil {
			if err := w.dial(); err != nil {
				return err
			}
		}
		reused := w.used
		resp, err := w.roundTrip()
		if err != nil {
			w.close()
			if reused && !retried && (errors.Is(err, errNoAnswer) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) {
				continue
			}
			return err
		}
		w.used = true
		w.buf = resp.body[:0]
		if !resp.keepAlive {
			w.close()
		}
		if resp.status != 200 {
			return fmt.Errorf("status %d", resp.status)
		}
		if !bytes.Contains(resp.body, w.expect) {
			return fmt.Errorf("answer without %q: %.200q", w.expect, resp.body)
		}
		return nil
	}
}

func (w *worker) roundTrip() (response, error) {
	if _, err := w.conn.Write(w.req); err != nil {
		return response{}, err
	}
	return readResponse(w.br, w.buf)
}
