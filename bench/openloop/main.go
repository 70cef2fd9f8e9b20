// Command openloop is an open-loop load generator: it sends POST requests
// at a fixed rate whatever the server's pace, and measures each latency
// from the moment the request was due (not when it was sent), so a stalled
// server cannot hide its queueing (no coordinated omission). wrk2 does this
// but is not packaged in Debian; this is the part of it bench/vs-peers
// needs.
//
//	openloop -url http://127.0.0.1:8181/v1/check -body check.json -rate 5000 -d 5s -expect '"allow"'
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	url := flag.String("url", "", "URL to POST to")
	bodyFile := flag.String("body", "", "file holding the request body")
	rate := flag.Float64("rate", 1000, "requests per second")
	dur := flag.Duration("d", 5*time.Second, "how long to send")
	conns := flag.Int("c", 64, "connections (and sending goroutines)")
	expect := flag.String("expect", "", "substring every answer must contain")
	token := flag.String("token", os.Getenv("TOKEN"), "bearer token sent with every request ($TOKEN)")
	flag.Parse()
	body, err := os.ReadFile(*bodyFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "openloop:", err)
		os.Exit(2)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}

	n := int(*rate * dur.Seconds())
	due := make(chan time.Time, n)
	lat := make([]time.Duration, n)
	var next, bad atomic.Int64
	var wg sync.WaitGroup
	for range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range due {
				req, _ := http.NewRequest(http.MethodPost, *url, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				if *token != "" {
					req.Header.Set("Authorization", "Bearer "+*token)
				}
				resp, err := client.Do(req)
				ok := err == nil
				if ok {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					ok = resp.StatusCode == 200 && bytes.Contains(b, []byte(*expect))
				}
				i := next.Add(1) - 1
				lat[i] = time.Since(t)
				if !ok {
					bad.Add(1)
				}
			}
		}()
	}
	start := time.Now()
	interval := time.Duration(float64(time.Second) / *rate)
	if tk, err := newTicker(interval); err == nil {
		// Each expiry releases the requests due by then, timed from
		// when each was due.
		for i := 0; i < n; {
			k, err := tk.wait()
			if err != nil {
				fmt.Fprintln(os.Stderr, "openloop:", err)
				os.Exit(2)
			}
			for ; k > 0 && i < n; k-- {
				due <- start.Add(time.Duration(i+1) * interval)
				i++
			}
		}
		tk.stop()
	} else {
		for i := range n {
			t := start.Add(time.Duration(i) * interval)
			if d := time.Until(t); d > 0 {
				time.Sleep(d) // millisecond resolution: see ticker
			}
			due <- t
		}
	}
	close(due)
	wg.Wait()
	elapsed := time.Since(start)
	lat = lat[:next.Load()]
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	fmt.Printf("requests %d in %.2fs (%.0f/s asked, %.0f/s done), errors %d, p50 %s p90 %s p99 %s max %s\n",
		len(lat), elapsed.Seconds(), *rate, float64(len(lat))/elapsed.Seconds(), bad.Load(),
		q(0.5).Round(time.Microsecond), q(0.9).Round(time.Microsecond), q(0.99).Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond))
	if bad.Load() > 0 {
		os.Exit(1)
	}
}
