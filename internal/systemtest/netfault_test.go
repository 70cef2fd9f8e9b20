package systemtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"

	"github.com/aibos/kernel/internal/loopback"
)

// network is the fault-injecting Raft network of one test cluster.
//
// Every node advertises the address of its own proxy, so every Raft
// connection *to* node Y passes through Y's proxy. A proxy cannot tell who
// dialed it from the source address (everything is 127.0.0.1), so it reads
// the first RPC of each connection: hashicorp/raft puts the sender's server
// ID in the header of every request, and a connection only ever carries
// requests from the node that dialed it (responses flow back on it). Knowing
// both ends, the network refuses connections that touch an isolated node
// and closes the ones already open, in both directions: nothing reaches the
// isolated node and nothing it sends reaches anyone.
//
// Only Raft traffic is cut. HTTP (clients, write forwarding, joins) still
// reaches every node, which is what a partition between servers looks like
// to a client that sits on the minority side.
type network struct {
	mu       sync.Mutex
	isolated map[string]bool    // guarded by mu
	links    map[*link]struct{} // guarded by mu
}

func newNetwork() *network {
	return &network{isolated: make(map[string]bool), links: make(map[*link]struct{})}
}

// Isolate cuts node id off from every other node until Heal.
func (nw *network) Isolate(id string) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.isolated[id] = true
	for l := range nw.links {
		if l.from == id || l.to == id {
			l.close()
			delete(nw.links, l)
		}
	}
}

// Heal lets node id talk to the others again.
func (nw *network) Heal(id string) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	delete(nw.isolated, id)
}

// HealAll ends every isolation.
func (nw *network) HealAll() {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	clear(nw.isolated)
}

// admit registers l unless one of its ends is isolated. Checking and
// registering under one lock means an Isolate either sees the link (and
// closes it) or happened before (and the link is refused).
func (nw *network) admit(l *link) bool {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if nw.isolated[l.from] || nw.isolated[l.to] {
		return false
	}
	nw.links[l] = struct{}{}
	return true
}

func (nw *network) forget(l *link) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	delete(nw.links, l)
}

func (nw *network) isIsolated(id string) bool {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	return nw.isolated[id]
}

// link is one proxied Raft connection from node from to node to.
type link struct {
	from, to string

	mu     sync.Mutex
	in     net.Conn // guarded by mu; from the dialing node
	out    net.Conn // guarded by mu; to the receiving node, nil until dialed
	closed bool     // guarded by mu
}

func (l *link) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	l.in.Close()
	if l.out != nil {
		l.out.Close()
	}
}

// attach sets the upstream connection, or closes it if the link was cut
// while dialing.
func (l *link) attach(out net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		out.Close()
		return false
	}
	l.out = out
	return true
}

// raftProxy forwards Raft connections to one node, subject to its network.
// It outlives the node: a killed node is restarted behind the same proxy,
// so its advertised address never changes.
type raftProxy struct {
	nw     *network
	id     string // the node behind the proxy
	target string // the node's real Raft address
	ln     net.Listener
	wg     sync.WaitGroup
}

// identifyTimeout bounds the wait for the first RPC of a new connection;
// raft sends it right after dialing.
const identifyTimeout = 5 * time.Second

func (nw *network) newProxy(id, target string) (*raftProxy, error) {
	ln, err := net.Listen("tcp", loopback.RaftAddr())
	if err != nil {
		return nil, fmt.Errorf("raft proxy for %s: %w", id, err)
	}
	p := &raftProxy{nw: nw, id: id, target: target, ln: ln}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr is the address the node advertises to its peers.
func (p *raftProxy) Addr() string { return p.ln.Addr().String() }

// Close stops accepting, cuts the proxy's links and waits for its
// goroutines.
func (p *raftProxy) Close() {
	p.ln.Close()
	p.nw.mu.Lock()
	for l := range p.nw.links {
		if l.to == p.id {
			l.close()
			delete(p.nw.links, l)
		}
	}
	p.nw.mu.Unlock()
	p.wg.Wait()
}

func (p *raftProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.handle(c)
	}
}

// handle identifies the sender from the first RPC, then pipes bytes both
// ways until either side or the network closes the link. Connections that
// cannot be identified are refused: every valid raft connection can be.
func (p *raftProxy) handle(in net.Conn) {
	defer p.wg.Done()
	if p.nw.isIsolated(p.id) {
		in.Close()
		return
	}
	var seen bytes.Buffer
	_ = in.SetReadDeadline(time.Now().Add(identifyTimeout))
	from, err := rpcSender(io.TeeReader(in, &seen))
	_ = in.SetReadDeadline(time.Time{})
	if err != nil {
		in.Close()
		return
	}
	l := &link{from: from, to: p.id, in: in}
	if !p.nw.admit(l) {
		in.Close()
		return
	}
	defer p.nw.forget(l)
	defer l.close()
	out, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil || !l.attach(out) {
		return
	}
	// The bytes read while identifying, read-ahead included, go first.
	if _, err := out.Write(seen.Bytes()); err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(out, in)
		l.close()
	}()
	_, _ = io.Copy(in, out)
	l.close()
	<-done
}

// rpcSender reads the first RPC of a raft connection (one type byte, then
// a msgpack request, see hashicorp/raft's net_transport.go) and returns the
// sender's server ID from its header. Every request type embeds
// raft.RPCHeader, which msgpack inlines, so one shape decodes them all;
// the request's other fields are skipped.
func rpcSender(r io.Reader) (string, error) {
	var typ [1]byte
	if _, err := io.ReadFull(r, typ[:]); err != nil {
		return "", err
	}
	var req struct{ raft.RPCHeader }
	if err := codec.NewDecoder(r, &codec.MsgpackHandle{}).Decode(&req); err != nil {
		return "", fmt.Errorf("decode raft rpc type %d: %w", typ[0], err)
	}
	if len(req.ID) == 0 {
		return "", errors.New("raft rpc without a sender id")
	}
	return string(req.ID), nil
}
