package node

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"

	"github.com/aibos/kernel/internal/certs"
	"github.com/aibos/kernel/internal/store"
)

// Security is how a node protects its listeners. The zero value is
// plaintext, which Start allows only on loopback addresses.
type Security struct {
	// HTTPCert serves the HTTP API over TLS (--tls-cert, --tls-key). nil
	// with Node set: the node certificate serves it.
	HTTPCert *certs.Reloader
	// ClientCAs, if set, makes every HTTP client present a certificate
	// from it (--tls-client-ca); other nodes present node certificates.
	ClientCAs *x509.CertPool
	// Node is this node's identity for node-to-node traffic: Raft over
	// mutual TLS, forwarding and join over HTTPS with client certificates
	// (--node-cert, --node-key, --node-ca).
	Node *certs.Node
	// InsecureNoTLS lets a listener on a non-loopback address run without
	// TLS (--insecure-no-tls).
	InsecureNoTLS bool
}

// ErrInsecureListener: a listener on a non-loopback address would run
// without TLS.
var ErrInsecureListener = errors.New("node: refusing to listen without TLS on a non-loopback address")

// httpTLS is whether the HTTP API is served over TLS.
func (s Security) httpTLS() bool { return s.HTTPCert != nil || s.Node != nil }

// check refuses a configuration that would expose a plaintext listener
// beyond this machine, and a node certificate that names another node.
func (s Security) check(cfg Config) error {
	if s.Node != nil && s.Node.ID() != cfg.NodeID {
		return fmt.Errorf("node: --node-id is %q but the node certificate is for node %q; use the certificate issued for this node (aibos tls cert create --node %s)",
			cfg.NodeID, s.Node.ID(), cfg.NodeID)
	}
	if s.InsecureNoTLS {
		return nil
	}
	if !s.httpTLS() && !isLoopback(cfg.HTTPAddr) {
		return fmt.Errorf("%w: HTTP address %s: anyone who can reach it could read and change the cluster's state; give --tls-cert and --tls-key (or --node-cert, --node-key and --node-ca), listen on 127.0.0.1, or pass --insecure-no-tls to accept the risk",
			ErrInsecureListener, cfg.HTTPAddr)
	}
	if s.Node == nil {
		for _, a := range []string{cfg.RaftAddr, cfg.RaftAdvertise} {
			if a != "" && !isLoopback(a) {
				return fmt.Errorf("%w: Raft address %s: anyone who can reach it could take part in consensus; give --node-cert, --node-key and --node-ca (aibos tls cert create --node %s), listen on 127.0.0.1, or pass --insecure-no-tls to accept the risk",
					ErrInsecureListener, a, cfg.NodeID)
			}
		}
	}
	return nil
}

// isLoopback reports whether addr (host:port) can only be reached from
// this machine. An empty or unspecified host (":8181", "0.0.0.0:8181") is
// every interface, so not loopback.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (s Security) httpServerTLS() *tls.Config {
	cert := s.HTTPCert
	if cert == nil {
		cert = s.Node.Cert
	}
	return certs.HTTPServer(cert, s.Node, s.ClientCAs)
}

// peerTLS is the client configuration of calls to other nodes' HTTP APIs;
// nil for plain http.
func (s Security) peerTLS() *tls.Config {
	switch {
	case s.Node != nil:
		return s.Node.HTTPClient()
	case s.HTTPCert != nil:
		// No node identity: the leader's HTTP certificate is verified
		// against the system roots.
		return &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return nil
}

func (s Security) raftTLS() *store.RaftTLS {
	if s.Node == nil {
		return nil
	}
	return &store.RaftTLS{Server: s.Node.RaftServer(), Client: s.Node.RaftClient()}
}

func (s Security) identifyNode() func(*tls.ConnectionState) (string, bool) {
	if s.Node == nil {
		return nil
	}
	return s.Node.PeerNode
}
