package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"net/http"
	"time"

	"github.com/aibos/kernel/internal/certs"
)

// httpClientErr is the HTTP client of a command with serverFlag's flags:
// https URLs are verified against --tls-ca when it is given.
func httpClientErr(fs *flag.FlagSet, timeout time.Duration) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if f := fs.Lookup("tls-ca"); f != nil && f.Value.String() != "" {
		pool, err := certs.LoadPool(f.Value.String())
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	}
	return &http.Client{Timeout: timeout, Transport: tr}, nil
}

// httpClient is httpClientErr for callers that report a bad --tls-ca on
// their first request instead: a client whose every request fails with
// the error.
func httpClient(fs *flag.FlagSet, timeout time.Duration) *http.Client {
	hc, err := httpClientErr(fs, timeout)
	if err != nil {
		return &http.Client{Transport: failing{err}}
	}
	return hc
}

type failing struct{ err error }

func (f failing) RoundTrip(*http.Request) (*http.Response, error) { return nil, f.err }
