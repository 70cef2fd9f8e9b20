package main

import (
	"fmt"
	"io"

	"github.com/aibos/kernel/internal/store"
)

const recoverUsage = "aibos cluster recover --node-id ID --data DIR --peers FILE   (the node stopped; FILE: [{\"id\":\"n1\",\"raft\":\"127.0.0.1:8301\"}, ...])"

// clusterRecover rewrites a stopped node's Raft configuration from a
// peers file, for a cluster that lost its quorum for good.
func clusterRecover(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("cluster recover", "Usage: "+recoverUsage+"\n\nRewrite a stopped node's Raft configuration from a peers file, for a\ncluster that lost its quorum for good.", stdout, stderr)
	id := fs.String("node-id", "node1", "the id of the node whose data this is (its --node-id)")
	data := fs.String("data", "data", "the stopped node's data directory")
	peersFile := fs.String("peers", "", "JSON file listing the members of the recovered cluster")
	if code, ok := fs.parse(args); !ok {
		return code
	}
	if *peersFile == "" {
		fmt.Fprintln(stderr, "aibos cluster recover: --peers FILE is required")
		return exitInvalid
	}
	peers, err := store.ReadPeers(*peersFile)
	if err == nil {
		err = store.Recover(*id, *data, peers)
	}
	if err != nil {
		fmt.Fprintf(stderr, "aibos cluster recover: %v\n", err)
		return exitInvalid
	}
	fmt.Fprintf(stdout, "recovered %s: its configuration is now the %d peers of %s; do the same on every other listed node, then start them (without --join)\n",
		*data, len(peers), *peersFile)
	return exitOK
}
