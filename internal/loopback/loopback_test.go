package loopback

import (
	"net"
	"testing"
)

// TestRaftAddr: every address listens, on loopback, and on Linux (which
// routes all of 127.0.0.0/8 to lo) they are spread over the block.
func TestRaftAddr(t *testing.T) {
	seen := map[string]bool{}
	for range 50 {
		a := RaftAddr()
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("listen on %s: %v", a, err)
		}
		ip := ln.Addr().(*net.TCPAddr).IP
		ln.Close()
		if !ip.IsLoopback() {
			t.Fatalf("%s is not loopback", ip)
		}
		seen[ip.String()] = true
	}
	if spread && len(seen) < 40 {
		t.Fatalf("50 addresses on %d IPs: %v", len(seen), seen)
	}
	if spread {
		for ip := range seen {
			if net.ParseIP(ip).To4()[1] == 0 {
				t.Fatalf("%s is in 127.0.0.0/16", ip)
			}
		}
	}
}
