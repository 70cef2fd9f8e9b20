package systemtest

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// TestProxyIdentifiesAndIsolates drives real raft TCP transports through a
// proxy: every RPC type must reach the receiver and be attributed to its
// sender, and isolating either end must make RPCs fail until healed.
func TestProxyIdentifiesAndIsolates(t *testing.T) {
	nw := newNetwork()
	logger := hclog.NewNullLogger()
	recv, err := raft.NewTCPTransportWithLogger("127.0.0.1:0", nil, 2, time.Second, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Close()
	proxy, err := nw.newProxy("b", string(recv.LocalAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	send, err := raft.NewTCPTransportWithLogger("127.0.0.1:0", nil, 2, time.Second, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer send.Close()

	// The receiver answers every RPC with an empty response of its type
	// and reports the sender it saw.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen := make(chan string, 16)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case rpc := <-recv.Consumer():
				var resp any
				switch cmd := rpc.Command.(type) {
				case *raft.AppendEntriesRequest:
					resp = &raft.AppendEntriesResponse{}
					seen <- string(cmd.ID)
				case *raft.RequestVoteRequest:
					resp = &raft.RequestVoteResponse{}
					seen <- string(cmd.ID)
				case *raft.RequestPreVoteRequest:
					resp = &raft.RequestPreVoteResponse{}
					seen <- string(cmd.ID)
				case *raft.TimeoutNowRequest:
					resp = &raft.TimeoutNowResponse{}
					seen <- string(cmd.ID)
				case *raft.InstallSnapshotRequest:
					_, _ = io.Copy(io.Discard, rpc.Reader)
					resp = &raft.InstallSnapshotResponse{Success: true}
					seen <- string(cmd.ID)
				}
				rpc.Respond(resp, nil)
			}
		}
	}()

	hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("a"), Addr: []byte(send.LocalAddr())}
	target := raft.ServerAddress(proxy.Addr())
	rpcs := map[string]func() error{
		"append_entries": func() error {
			return send.AppendEntries("b", target, &raft.AppendEntriesRequest{RPCHeader: hdr, Term: 3,
				Entries: []*raft.Log{{Index: 1, Term: 3, Type: raft.LogCommand, Data: []byte("x"), AppendedAt: time.Now()}}},
				&raft.AppendEntriesResponse{})
		},
		"request_vote": func() error {
			return send.RequestVote("b", target, &raft.RequestVoteRequest{RPCHeader: hdr, Term: 3}, &raft.RequestVoteResponse{})
		},
		"request_pre_vote": func() error {
			return send.RequestPreVote("b", target, &raft.RequestPreVoteRequest{RPCHeader: hdr, Term: 3}, &raft.RequestPreVoteResponse{})
		},
		"timeout_now": func() error {
			return send.TimeoutNow("b", target, &raft.TimeoutNowRequest{RPCHeader: hdr}, &raft.TimeoutNowResponse{})
		},
		"install_snapshot": func() error {
			data := "snapshot bytes"
			return send.InstallSnapshot("b", target, &raft.InstallSnapshotRequest{RPCHeader: hdr, Term: 3, Size: int64(len(data))},
				&raft.InstallSnapshotResponse{}, strings.NewReader(data))
		},
	}
	for name, call := range rpcs {
		t.Run(name, func(t *testing.T) {
			if err := call(); err != nil {
				t.Fatalf("through the proxy: %v", err)
			}
			if got := <-seen; got != "a" {
				t.Fatalf("receiver saw sender %q", got)
			}
			for _, id := range []string{"a", "b"} {
				nw.Isolate(id)
				if err := call(); err == nil {
					t.Fatalf("RPC succeeded with %s isolated", id)
				}
				nw.Heal(id)
				if err := call(); err != nil {
					t.Fatalf("after healing %s: %v", id, err)
				}
				<-seen
			}
		})
	}
}
