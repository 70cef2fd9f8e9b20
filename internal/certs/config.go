package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Node is a node's identity for node-to-node traffic: its certificate
// (reloaded like any other) and the cluster CA that every peer's
// certificate must chain to.
type Node struct {
	Cert *Reloader
	CAs  *x509.CertPool
	// Now is the clock certificates are checked against (time.Now).
	Now func() time.Time
}

// LoadNode reads a node certificate, its key and the cluster CA, and checks
// that the certificate is a node certificate issued by that CA.
func LoadNode(certFile, keyFile, caFile string, log *slog.Logger) (*Node, error) {
	r, err := NewReloader(certFile, keyFile, log)
	if err != nil {
		return nil, err
	}
	pool, err := LoadPool(caFile)
	if err != nil {
		return nil, err
	}
	n := &Node{Cert: r, CAs: pool, Now: time.Now}
	leaf := r.Current().Leaf
	if _, err := VerifyNode([]*x509.Certificate{leaf}, pool, time.Now()); err != nil {
		return nil, fmt.Errorf("certs: %s is not a usable node certificate of the CA in %s: %w", certFile, caFile, err)
	}
	return n, nil
}

func (n *Node) now() time.Time {
	if n.Now == nil {
		return time.Now()
	}
	return n.Now()
}

// ID is the node id in the node's own certificate.
func (n *Node) ID() string {
	id, _ := NodeID(n.Cert.Current().Leaf)
	return id
}

// verifyPeer accepts a TLS peer only if it presents a node certificate of
// the cluster CA. Host names are not checked: node-to-node identity is
// "holds a node certificate of this CA", which survives proxies and NAT
// in front of the Raft port; the HTTP join checks the id itself.
func (n *Node) verifyPeer(cs tls.ConnectionState) error {
	_, err := VerifyNode(cs.PeerCertificates, n.CAs, n.now())
	return err
}

// RaftServer is the TLS configuration of the Raft listener: mutual TLS,
// node certificates only, TLS 1.3.
func (n *Node) RaftServer() *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		GetCertificate:   n.Cert.GetCertificate,
		ClientAuth:       tls.RequireAnyClientCert, // verified by VerifyConnection, with the node marker
		VerifyConnection: n.verifyPeer,
	}
}

// RaftClient is the TLS configuration for dialing another node's Raft
// port: it presents this node's certificate and accepts only a node
// certificate of the cluster CA.
func (n *Node) RaftClient() *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetClientCertificate: n.Cert.GetClientCertificate,
		InsecureSkipVerify:   true, // the chain and marker are checked by VerifyConnection
		VerifyConnection:     n.verifyPeer,
	}
}

// HTTPClient is the TLS configuration of a node's calls to another node's
// HTTP API (forwarding a write to the leader, joining): it presents the
// node certificate, and verifies the server's certificate by the standard
// rules (host name included) against the cluster CA and the system roots,
// so an HTTP certificate from a public CA works too.
func (n *Node) HTTPClient() *tls.Config {
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	// Pools cannot be merged; VerifyConnection tries each.
	cas := n.CAs
	return &tls.Config{
		MinVersion:           tls.VersionTLS12,
		GetClientCertificate: n.Cert.GetClientCertificate,
		InsecureSkipVerify:   true, // verified below against both pools
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyServer(cs, []*x509.CertPool{cas, roots}, n.now())
		},
	}
}

// PeerNode returns the id of the node that made a request, if the request
// came over TLS with a node certificate of the cluster CA.
func (n *Node) PeerNode(cs *tls.ConnectionState) (string, bool) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return "", false
	}
	id, err := VerifyNode(cs.PeerCertificates, n.CAs, n.now())
	return id, err == nil
}

func verifyServer(cs tls.ConnectionState, pools []*x509.CertPool, now time.Time) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("certs: the server sent no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	var first error
	for _, p := range pools {
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
			Roots: p, Intermediates: inter, DNSName: cs.ServerName, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		})
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	return fmt.Errorf("certs: server certificate: %w", first)
}

// HTTPServer is the TLS configuration of the HTTP API. cert serves the
// API; node, if set, lets other nodes present their node certificates
// (forwarding, join); clientCAs, if set, requires every client to present a
// certificate from it (or a node certificate).
func HTTPServer(cert *Reloader, node *Node, clientCAs *x509.CertPool) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: cert.GetCertificate}
	switch {
	case clientCAs != nil:
		cfg.ClientAuth = tls.RequireAnyClientCert
	case node != nil:
		cfg.ClientAuth = tls.RequestClientCert
	}
	if clientCAs == nil && node == nil {
		return cfg
	}
	var now func() time.Time = time.Now
	if node != nil {
		now = node.now
	}
	// The chain is verified here rather than by ClientCAs so that a client
	// certificate may come from either CA, and so that a client without one
	// is still served when only nodes present certificates.
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			if clientCAs != nil {
				return errors.New("certs: a client certificate is required (--tls-client-ca)")
			}
			return nil
		}
		if node != nil {
			if _, err := VerifyNode(cs.PeerCertificates, node.CAs, now()); err == nil {
				return nil
			}
		}
		if clientCAs == nil {
			return errors.New("certs: this node accepts client certificates only from nodes of its cluster")
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
			Roots: clientCAs, Intermediates: inter, CurrentTime: now(),
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}); err != nil {
			return fmt.Errorf("certs: client certificate: %w", err)
		}
		return nil
	}
	return cfg
}
