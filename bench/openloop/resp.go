package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Limits of what readResponse accepts. A line longer than the reader's
// buffer is an error too (bufio.ErrBufferFull).
const (
	maxBody        = 16 << 20 // bytes of body
	maxHeaderLines = 256      // per response, informational ones included
)

// errNoAnswer is the connection ending cleanly where a response should
// have begun.
var errNoAnswer = errors.New("connection closed before a response")

// response is what readResponse parsed. body is a slice of the buffer
// given to readResponse (grown if it was too small): it is valid until the
// next call that reuses that buffer.
type response struct {
	status    int
	body      []byte
	keepAlive bool // the connection may carry another request
}

// readResponse reads one HTTP/1.x response from r: the status line, the
// headers and a body delimited by Content-Length, by chunked
// Transfer-Encoding, or (neither given) by the end of the connection. It
// appends the body to buf[:0]. Informational (1xx) responses before the
// final one are skipped. It does not allocate unless the buffer has to
// grow or the input is malformed; the error then says what was wrong.
func readResponse(r *bufio.Reader, buf []byte) (response, error) {
	lines := 0
	for {
		resp, framing, length, err := readHead(r, &lines)
		if err != nil {
			return response{}, err
		}
		if resp.status >= 100 && resp.status < 200 {
			if resp.status == 101 {
				return response{}, errors.New("status 101: switching protocols is not supported")
			}
			continue
		}
		buf = buf[:0]
		switch framing {
		case frameNone:
		case frameLength:
			buf, err = readFull(r, buf, length)
		case frameChunked:
			buf, err = readChunked(r, buf, &lines)
		case frameClose:
			buf, err = readToEOF(r, buf)
			resp.keepAlive = false
		}
		if err != nil {
			return response{}, err
		}
		resp.body = buf
		return resp, nil
	}
}

type framing int

const (
	frameNone    framing = iota // no body (204, 304)
	frameLength                 // Content-Length
	frameChunked                // Transfer-Encoding: chunked
	frameClose                  // until the connection ends
)

// readHead reads a status line and the headers up to the empty line.
func readHead(r *bufio.Reader, lines *int) (resp response, f framing, length int, err error) {
	line, err := readLine(r, "status line")
	if errors.Is(err, io.EOF) {
		return resp, 0, 0, errNoAnswer
	}
	if err != nil {
		return resp, 0, 0, err
	}
	// HTTP/1.x SP 3DIGIT [SP reason]
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || (line[7] != '0' && line[7] != '1') ||
		line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return resp, 0, 0, fmt.Errorf("malformed status line %.40q", line)
	}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return resp, 0, 0, fmt.Errorf("malformed status code in %.40q", line)
		}
		resp.status = resp.status*10 + int(c-'0')
	}
	if resp.status < 100 {
		return resp, 0, 0, fmt.Errorf("status code %d out of range", resp.status)
	}
	http11 := line[7] == '1'
	resp.keepAlive = http11
	length = -1
	chunked := false
	for {
		if *lines++; *lines > maxHeaderLines {
			return resp, 0, 0, fmt.Errorf("more than %d header lines", maxHeaderLines)
		}
		line, err := readLine(r, "header")
		if err != nil {
			return resp, 0, 0, err
		}
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return resp, 0, 0, fmt.Errorf("obsolete header line folding in %.40q", line)
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return resp, 0, 0, fmt.Errorf("malformed header line %.40q", line)
		}
		name, value := line[:colon], trimSpace(line[colon+1:])
		for _, c := range name {
			if c <= ' ' || c >= 0x7f {
				return resp, 0, 0, fmt.Errorf("malformed header name %.40q", name)
			}
		}
		switch {
		case asciiEqualFold(name, "content-length"):
			n, ok := parseDecimal(value)
			if !ok {
				return resp, 0, 0, fmt.Errorf("malformed Content-Length %.40q", value)
			}
			if n > maxBody {
				return resp, 0, 0, fmt.Errorf("Content-Length %d exceeds the limit of %d", n, maxBody)
			}
			if length >= 0 && length != n {
				return resp, 0, 0, fmt.Errorf("conflicting Content-Length %d and %d", length, n)
			}
			length = n
		case asciiEqualFold(name, "transfer-encoding"):
			if !asciiEqualFold(value, "chunked") || chunked {
				return resp, 0, 0, fmt.Errorf("unsupported Transfer-Encoding %.40q", value)
			}
			chunked = true
		case asciiEqualFold(name, "connection"):
			for len(value) > 0 {
				tok := value
				if i := bytes.IndexByte(value, ','); i >= 0 {
					tok, value = value[:i], value[i+1:]
				} else {
					value = nil
				}
				tok = trimSpace(tok)
				if asciiEqualFold(tok, "close") {
					resp.keepAlive = false
				} else if asciiEqualFold(tok, "keep-alive") && !http11 {
					resp.keepAlive = true
				}
			}
		}
	}
	switch {
	case resp.status < 200 || resp.status == 204 || resp.status == 304:
		return resp, frameNone, 0, nil
	case chunked && length >= 0:
		return resp, 0, 0, errors.New("both Content-Length and Transfer-Encoding given")
	case chunked:
		return resp, frameChunked, 0, nil
	case length >= 0:
		return resp, frameLength, length, nil
	}
	return resp, frameClose, 0, nil
}

// readLine returns the next line without its LF or CRLF; the slice is
// valid until the next read from r.
func readLine(r *bufio.Reader, what string) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	switch {
	case err == bufio.ErrBufferFull:
		return nil, fmt.Errorf("%s longer than %d bytes", what, r.Size())
	case err == io.EOF && len(line) == 0:
		return nil, fmt.Errorf("reading %s: %w", what, io.EOF)
	case err == io.EOF:
		return nil, fmt.Errorf("reading %s: %w", what, io.ErrUnexpectedEOF)
	case err != nil:
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// readFull appends n bytes from r to buf.
func readFull(r *bufio.Reader, buf []byte, n int) ([]byte, error) {
	start := len(buf)
	buf = grow(buf, n)
	if _, err := io.ReadFull(r, buf[start:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return buf[:start], fmt.Errorf("reading a body of %d bytes: %w", n, err)
	}
	return buf, nil
}

func readChunked(r *bufio.Reader, buf []byte, lines *int) ([]byte, error) {
	for {
		line, err := readLine(r, "chunk size")
		if err != nil {
			return buf, err
		}
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i] // chunk extensions, ignored
		}
		line = trimSpace(line)
		n, ok := parseHex(line)
		if !ok {
			return buf, fmt.Errorf("malformed chunk size %.40q", line)
		}
		if n > maxBody-len(buf) {
			return buf, fmt.Errorf("chunked body exceeds the limit of %d bytes", maxBody)
		}
		if n == 0 {
			break
		}
		if buf, err = readFull(r, buf, n); err != nil {
			return buf, err
		}
		line, err = readLine(r, "chunk end")
		if err != nil {
			return buf, err
		}
		if len(line) != 0 {
			return buf, fmt.Errorf("chunk not followed by CRLF but %.40q", line)
		}
	}
	for { // trailer fields, ignored
		if *lines++; *lines > maxHeaderLines {
			return buf, fmt.Errorf("more than %d header lines", maxHeaderLines)
		}
		line, err := readLine(r, "trailer")
		if err != nil {
			return buf, err
		}
		if len(line) == 0 {
			return buf, nil
		}
		if bytes.IndexByte(line, ':') <= 0 {
			return buf, fmt.Errorf("malformed trailer line %.40q", line)
		}
	}
}

func readToEOF(r *bufio.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			if len(buf) >= maxBody {
				return buf, fmt.Errorf("body exceeds the limit of %d bytes", maxBody)
			}
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):min(cap(buf), maxBody)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, fmt.Errorf("reading a body up to the end of the connection: %w", err)
		}
	}
}

// grow extends buf by n bytes, reallocating only if it has to.
func grow(buf []byte, n int) []byte {
	if cap(buf)-len(buf) < n {
		nb := make([]byte, len(buf), len(buf)+n)
		copy(nb, buf)
		buf = nb
	}
	return buf[:len(buf)+n]
}

func parseDecimal(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 10 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func parseHex(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 8 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		n = n<<4 | int(c)
	}
	return n, true
}

// trimSpace cuts HTTP's optional whitespace (spaces and tabs) off b.
func trimSpace(b []byte) []byte { return bytes.Trim(b, " \t") }

// asciiEqualFold reports whether b equals the lower-case ASCII s, ignoring
// case.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
