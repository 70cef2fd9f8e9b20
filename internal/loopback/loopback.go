// Package loopback gives test nodes Raft addresses that nodes of other
// test processes do not reach.
//
// Tests run their packages in parallel processes, each starting and
// stopping clusters on free loopback ports. A closed node's port goes back
// to the kernel and may be handed to a new node of another process while
// the closed node's peers still send it heartbeats: plain-TCP Raft has no
// cluster identity, so the new node takes the foreign leader for its own
// and never elects itself. (Production clusters get that identity from
// mutual TLS: a peer without this cluster's certificate never reaches
// raft.) Spreading the listeners over 127.0.0.0/8 makes such a reuse as
// unlikely as an address-and-port collision across millions of choices.
package loopback

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
)

var (
	once   sync.Once
	spread bool
)

// RaftAddr is a listen address with port 0 on a random IP of 127.0.0.0/8
// (outside 127.0.0.0/16, which tests use for fixed addresses), or
// "127.0.0.1:0" where the system does not route the whole block to
// loopback.
func RaftAddr() string {
	once.Do(func() {
		ln, err := net.Listen("tcp", "127.201.0.1:0")
		if err == nil {
			ln.Close()
			spread = true
		}
	})
	if !spread {
		return "127.0.0.1:0"
	}
	return fmt.Sprintf("127.%d.%d.%d:0", 1+rand.IntN(254), rand.IntN(256), 1+rand.IntN(254))
}
