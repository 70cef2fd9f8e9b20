package server

import (
	"net/http"
	"time"
)

// The HTTP server (internal/node) bounds every connection: the request
// must arrive within its read timeout and the answer be written within its
// write timeout. Those fit every ordinary request. The few handlers that
// run longer on purpose — a long poll, a stream, a bundle compiled and
// tested, a replay, a backend call with its own timeout — move their own
// connection's deadlines with holdOpen; everything else keeps the
// server's. (The WebSocket of /v1/watch needs nothing: net/http clears a
// connection's deadlines when it is hijacked, and the watch hub bounds each
// of its writes.)

// Bounds of the handlers that outlive the server's timeouts.
const (
	// bundleWork bounds compiling, linting and testing a published bundle,
	// or replaying the decision log against one.
	bundleWork = 5 * time.Minute
	// invokeWork bounds an invocation: the gateway cuts the backend call at
	// the action's timeout (at most 10 minutes) and this is the backstop.
	invokeWork = 10*time.Minute + 30*time.Second
	// answerMargin is the time left to write an answer after a wait.
	answerMargin = 10 * time.Second
	// streamWrite bounds each write of a streamed answer: a client that
	// stops reading is cut after it, one that keeps reading is not.
	streamWrite = 30 * time.Second
)

// holdOpen lets the handler of w run for d from now, past the server's
// read and write timeouts. The read deadline is lifted too: once the body
// is read, net/http reads on in the background to notice a client that
// leaves, and that read hitting the request's read deadline would cancel
// the request's context. A client that leaves still cancels it.
func holdOpen(w http.ResponseWriter, d time.Duration) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Now().Add(d))
}

// streaming lets a handler that streams its answer (an export) write for
// as long as the client reads: each write gets streamWrite from its start.
func streaming(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		holdOpen(w, streamWrite)
		h.ServeHTTP(&deadlineWriter{ResponseWriter: w, rc: http.NewResponseController(w)}, r)
	})
}

type deadlineWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	_ = w.rc.SetWriteDeadline(time.Now().Add(streamWrite))
	return w.ResponseWriter.Write(p)
}

// Unwrap gives http.ResponseController the connection's writer.
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
