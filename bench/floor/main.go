// Command floor is the bare net/http server that bench/vs-peers measures
// the decision servers against: it reads the request body and answers a
// fixed allow decision, the least any HTTP decision point has to do.
package main

import (
	"flag"
	"io"
	"log"
	"net/http"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18200", "listen address")
	flag.Parse()
	answer := []byte(`{"decision":"allow","version":1,"revision":2,"reasons":[{"policy":"bench","rule":"ops-refunds","layer":"tenant","effect":"allow"}]}` + "\n")
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(answer)
	})
	log.Fatal(http.ListenAndServe(*addr, nil))
}
