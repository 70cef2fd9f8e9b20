package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func parse(s string) (response, error) {
	return readResponse(bufio.NewReaderSize(strings.NewReader(s), 64), nil)
}

func TestReadResponse(t *testing.T) {
	for _, tc := range []struct {
		in        string
		status    int
		body      string
		keepAlive bool
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, "hello", true},
		{"HTTP/1.1 200 OK\nContent-Length: 2\n\nhi", 200, "hi", true},
		{"HTTP/1.1 200\r\ncontent-length:  0 \r\n\r\n", 200, "", true},
		{"HTTP/1.1 500 Oops\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbad", 500, "bad", false},
		{"HTTP/1.1 200 OK\r\nConnection: Upgrade, CLOSE\r\nContent-Length: 0\r\n\r\n", 200, "", false},
		{"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", 200, "x", false},
		{"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx", 200, "x", true},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: y\r\n\r\n", 200, "hello world", true},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n", 200, "0123456789", true},
		{"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, "ok", true},
		{"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", 204, "", true},
		{"HTTP/1.1 200 OK\r\n\r\nuntil the end", 200, "until the end", false},
	} {
		r, err := parse(tc.in)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if r.status != tc.status || string(r.body) != tc.body || r.keepAlive != tc.keepAlive {
			t.Errorf("%q: got %d %q %v, want %d %q %v", tc.in, r.status, r.body, r.keepAlive, tc.status, tc.body, tc.keepAlive)
		}
	}
}

func TestReadResponseTwoInARow(t *testing.T) {
	br := bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nb\r\n0\r\n\r\n"))
	buf := make([]byte, 0, 8)
	for _, want := range []string{"a", "b"} {
		r, err := readResponse(br, buf)
		if err != nil || string(r.body) != want {
			t.Fatalf("got %q %v, want %q", r.body, err, want)
		}
		buf = r.body[:0]
	}
	if _, err := readResponse(br, buf); !errors.Is(err, errNoAnswer) {
		t.Fatalf("at the end: %v, want errNoAnswer", err)
	}
}

func TestReadResponseMalformed(t *testing.T) {
	for _, tc := range []struct{ in, err string }{
		{"", "connection closed"},
		{"HTTP/1.1 200 OK\r\nContent-Length: 5", "unexpected EOF"},
		{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", "reading a body of 5 bytes"},
		{"HTTP/2 200 OK\r\n\r\n", "malformed status line"},
		{"HTTP/1.1 2x0 OK\r\n\r\n", "malformed status code"},
		{"HTTP/1.1 099 OK\r\n\r\n", "out of range"},
		{"HTTP/1.1 2000 OK\r\n\r\n", "malformed status line"},
		{"HTTP/1.1 101 Switching\r\n\r\n", "101"},
		{"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "malformed Content-Length"},
		{"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", "malformed Content-Length"},
		{"HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\n", "exceeds the limit"},
		{"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", "conflicting Content-Length"},
		{"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", "both Content-Length and Transfer-Encoding"},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "unsupported Transfer-Encoding"},
		{"HTTP/1.1 200 OK\r\nNo colon\r\n\r\n", "malformed header line"},
		{"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n", "malformed header line"},
		{"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "malformed header name"},
		{"HTTP/1.1 200 OK\r\nA: b\r\n  folded\r\n\r\n", "folding"},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed chunk size"},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n", "chunk not followed by CRLF"},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n", "chunk size"},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nbad trailer\r\n\r\n", "malformed trailer"},
		{"HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", 100) + "\r\n\r\n", "longer than 64 bytes"},
		{"HTTP/1.1 200 OK\r\n" + strings.Repeat("A: b\r\n", 300) + "\r\n", "header lines"},
	} {
		_, err := parse(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%.60q: error %v, want one containing %q", tc.in, err, tc.err)
		}
	}
}

func TestReadResponseNoAllocs(t *testing.T) {
	msg := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"decision\":\"ok\"}")
	rd := bytes.NewReader(msg)
	br := bufio.NewReader(rd)
	buf := make([]byte, 0, 64)
	allocs := testing.AllocsPerRun(100, func() {
		rd.Reset(msg)
		br.Reset(rd)
		r, err := readResponse(br, buf)
		if err != nil {
			panic(err)
		}
		buf = r.body[:0]
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per response", allocs)
	}
}

// FuzzReadResponse: readResponse never panics, and what it accepts,
// written out again with a Content-Length, reads back the same.
func FuzzReadResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x\r\nhello\r\n0\r\nT: 1\r\n\r\n",
		"HTTP/1.0 404 Not Found\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nConnection: close\r\n\r\nrest",
		"HTTP/1.1 304 Not Modified\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(in), 16)
		r, err := readResponse(br, nil)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if r.status < 200 || r.status > 999 {
			t.Fatalf("accepted status %d", r.status)
		}
		if len(r.body) > maxBody || len(r.body) > len(in) {
			t.Fatalf("body of %d bytes from %d of input", len(r.body), len(in))
		}
		conn := ""
		if !r.keepAlive {
			conn = "Connection: close\r\n"
		}
		again := fmt.Sprintf("HTTP/1.1 %d X\r\n%sContent-Length: %d\r\n\r\n%s", r.status, conn, len(r.body), r.body)
		r2, err := readResponse(bufio.NewReader(strings.NewReader(again)), nil)
		if r.status == 204 || r.status == 304 {
			if len(r.body) != 0 {
				t.Fatalf("status %d with a body", r.status)
			}
		}
		if err != nil || r2.status != r.status || !bytes.Equal(r2.body, r.body) || r2.keepAlive != r.keepAlive {
			t.Fatalf("%q read as %d %q %v; again %d %q %v %v", in, r.status, r.body, r.keepAlive, r2.status, r2.body, r2.keepAlive, err)
		}
	})
}
