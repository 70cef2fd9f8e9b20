package store

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// RaftTLS puts Raft traffic under mutual TLS: Server configures the
// listener (it must require and verify the peer's certificate), Client the
// connections this node dials. Both are required.
type RaftTLS struct {
	Server *tls.Config
	Client *tls.Config
}

// handshakeTimeout bounds a TLS handshake on the Raft port, so a peer that
// connects and sends nothing does not hold a goroutine.
const handshakeTimeout = 5 * time.Second

// tlsStream is a raft.StreamLayer over TLS. Accept hands raft a connection
// whose handshake runs on its first read or write (in raft's goroutine for
// that connection, not in the accept loop) under handshakeTimeout: bytes
// from a peer without a valid certificate never reach raft's decoder.
type tlsStream struct {
	ln        net.Listener
	advertise net.Addr
	client    *tls.Config
	server    *tls.Config
}

func newTLSStream(addr string, advertise net.Addr, cfg RaftTLS) (*tlsStream, error) {
	if cfg.Server == nil || cfg.Client == nil {
		return nil, errors.New("store: RaftTLS needs both Server and Client configurations")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("store: raft listen on %s: %w", addr, err)
	}
	s := &tlsStream{ln: ln, advertise: advertise, client: cfg.Client, server: cfg.Server}
	a, ok := s.Addr().(*net.TCPAddr)
	if !ok || a.IP == nil || a.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("store: raft address %s cannot be advertised to peers: listen on a specific IP or set the advertise address", s.Addr())
	}
	return s, nil
}

func (s *tlsStream) Accept() (net.Conn, error) {
	c, err := s.ln.Accept()
	if err != nil {
		return nil, err
	}
	return &serverConn{Conn: tls.Server(c, s.server)}, nil
}

func (s *tlsStream) Close() error { return s.ln.Close() }

func (s *tlsStream) Addr() net.Addr {
	if s.advertise != nil {
		return s.advertise
	}
	return s.ln.Addr()
}

func (s *tlsStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	return tls.DialWithDialer(d, "tcp", string(addr), s.client)
}

// serverConn completes the TLS handshake, bounded in time, before the
// first read or write.
type serverConn struct {
	*tls.Conn
	once sync.Once
	err  error
}

func (c *serverConn) handshake() error {
	c.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
		defer cancel()
		c.err = c.Conn.HandshakeContext(ctx)
		if c.err != nil {
			c.Conn.Close()
		}
	})
	return c.err
}

func (c *serverConn) Read(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func (c *serverConn) Write(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

// newTLSTransport is newTransport over TLS.
func newTLSTransport(addr, advertise string, cfg RaftTLS, logger hclog.Logger) (*raft.NetworkTransport, *tlsStream, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, nil, fmt.Errorf("store: raft address %q: %w", addr, err)
	}
	var adv net.Addr
	if advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			return nil, nil, fmt.Errorf("store: raft advertise address %q: %w", advertise, err)
		}
		adv = a
	}
	stream, err := newTLSStream(addr, adv, cfg)
	if err != nil {
		return nil, nil, err
	}
	t := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: stream, MaxPool: transportPool, Timeout: transportTimeout, Logger: logger,
	})
	return t, stream, nil
}

// ErrUnreachable: a node asked to join, but its Raft address does not
// answer (or, under TLS, does not answer as a node of this cluster).
var ErrUnreachable = errors.New("store: raft address does not answer")

// probeTimeout bounds the dial that checks a joining node's Raft address.
const probeTimeout = 3 * time.Second

// probe dials addr the way raft will, so that a member is never added at an
// address where no node answers: a voter there would count toward the
// quorum and could make the cluster lose it.
func (s *Store) probe(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var c net.Conn
	var err error
	if s.stream != nil {
		d := &tls.Dialer{Config: s.stream.client}
		c, err = d.DialContext(ctx, "tcp", addr)
	} else {
		var d net.Dialer
		c, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return fmt.Errorf("%w (%v); start the node first, and give the --raft address other nodes reach it at", ErrUnreachable, err)
	}
	return c.Close()
}
