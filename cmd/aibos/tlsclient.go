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
// https URLs are verified against --tls-ca when it is given, and the
// client certificate is presented when one is given.
func httpClientErr(fs *flag.FlagSet, timeout time.Duration) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca := flagValue(fs, "tls-ca"); ca != "" {
		pool, err := certs.LoadPool(ca)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		tc.RootCAs = pool
	}
	cert, key := flagValue(fs, "tls-client-cert"), flagValue(fs, "tls-client-key")
	if (cert == "") != (key == "") {
		return nil, fmt.Errorf("--tls-client-cert and --tls-client-key go together: give both or neither")
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("--tls-client-cert: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	tr.TLSClientConfig = tc
	return &http.Client{Timeout: timeout, Transport: tr}, nil
}

func flagValue(fs *flag.FlagSet, name string) string {
	if f := fs.Lookup(name); f != nil {
		return f.Value.String()
	}
	return ""
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
