package node

import (
	"errors"
	"testing"
)

func TestSecurityCheck(t *testing.T) {
	cases := []struct {
		name, http, raft, adv string
		insecure              bool
		ok                    bool
	}{
		{name: "loopback", http: "127.0.0.1:8181", raft: "127.0.0.1:8300", ok: true},
		{name: "localhost and ipv6 loopback", http: "localhost:8181", raft: "[::1]:8300", ok: true},
		{name: "http on every interface", http: "0.0.0.0:8181", raft: "127.0.0.1:8300"},
		{name: "http on an empty host", http: ":8181", raft: "127.0.0.1:8300"},
		{name: "raft on a LAN address", http: "127.0.0.1:8181", raft: "10.0.0.5:8300"},
		{name: "raft advertised off loopback", http: "127.0.0.1:8181", raft: "127.0.0.1:8300", adv: "10.0.0.5:8300"},
		{name: "insecure allowed", http: "0.0.0.0:8181", raft: "0.0.0.0:8300", insecure: true, ok: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{NodeID: "n1", HTTPAddr: tc.http, RaftAddr: tc.raft, RaftAdvertise: tc.adv}
			err := Security{InsecureNoTLS: tc.insecure}.check(cfg)
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrInsecureListener)) {
				t.Fatalf("check: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
