// Package certs owns the cluster's certificates: making a CA and the
// certificates it issues (node and operator client certificates) with the
// standard library, loading them, reloading them when their files change,
// telling a node certificate from any other, and the TLS configurations of
// the HTTP API and of node-to-node traffic (Raft, forwarding, join).
//
// A node certificate carries both the serverAuth and clientAuth extended key
// usages and exactly one URI SAN aibos://node/ID. An operator client
// certificate from the same CA has clientAuth only and a URI SAN
// aibos://operator/NAME, so it is never taken for a node. See DESIGN.md.
package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
)

// URI SAN prefixes of the certificates this package issues.
const (
	NodeURIPrefix     = "aibos://node/"
	OperatorURIPrefix = "aibos://operator/"
)

// Default validities.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	CertValidity = 365 * 24 * time.Hour
)

// ErrNotNode: a certificate is valid but is not a node certificate of the
// cluster (no node marker, or not both server and client usage).
var ErrNotNode = errors.New("certs: not a node certificate")

// CA is a certificate authority able to issue certificates.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// NewCA makes a self-signed ECDSA P-256 CA named name, valid from now for
// validity (CAValidity if zero). It returns the certificate and the key in
// PEM.
func NewCA(name string, now time.Time, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if validity == 0 {
		validity = CAValidity
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"AI-BOS Kernel"}},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: create CA certificate: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// Request describes a certificate to issue: a node certificate (NodeID
// set) or an operator client certificate (Operator set), exactly one.
type Request struct {
	NodeID   string
	Operator string
	IPs      []net.IP
	DNSNames []string
	// NotBefore defaults to now − 5 min (clock skew); Validity to
	// CertValidity.
	NotBefore time.Time
	Validity  time.Duration
}

// Issue signs a new ECDSA P-256 key pair for r. A node certificate has
// serverAuth and clientAuth and the URI SAN aibos://node/ID; an operator
// certificate has clientAuth and aibos://operator/NAME.
func (ca *CA) Issue(r Request, now time.Time) (certPEM, keyPEM []byte, err error) {
	if (r.NodeID == "") == (r.Operator == "") {
		return nil, nil, errors.New("certs: a certificate is for a node (--node ID) or an operator (--operator NAME), exactly one")
	}
	name, prefix, usage := r.NodeID, NodeURIPrefix, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	if r.Operator != "" {
		name, prefix, usage = r.Operator, OperatorURIPrefix, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	if strings.ContainsAny(name, "/?#% ") {
		return nil, nil, fmt.Errorf("certs: name %q: letters, digits, '-', '_' and '.' only", name)
	}
	uri, err := url.Parse(prefix + name)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: name %q: %w", name, err)
	}
	if r.NotBefore.IsZero() {
		r.NotBefore = now.Add(-5 * time.Minute)
	}
	if r.Validity == 0 {
		r.Validity = CertValidity
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name, Organization: []string{"AI-BOS Kernel"}},
		NotBefore:    r.NotBefore,
		NotAfter:     r.NotBefore.Add(r.Validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usage,
		URIs:         []*url.URL{uri},
		IPAddresses:  r.IPs,
		DNSNames:     r.DNSNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: sign certificate: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// LoadCA reads a CA certificate and its key (PEM files).
func LoadCA(certFile, keyFile string) (*CA, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("certs: read CA certificate: %w (create one with `aibos tls ca create`)", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("certs: read CA key: %w", err)
	}
	cert, err := parseCert(certPEM, certFile)
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("certs: %s is not a CA certificate", certFile)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, fmt.Errorf("certs: %s: no PEM key", keyFile)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certs: %s: %w", keyFile, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("certs: %s: the key cannot sign", keyFile)
	}
	return &CA{Cert: cert, Key: signer}, nil
}

// LoadPool reads a PEM file of one or more CA certificates.
func LoadPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("certs: read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("certs: %s holds no PEM certificate", file)
	}
	return pool, nil
}

// NodeID returns the node id of a node certificate's marker: a URI SAN
// aibos://node/ID and both serverAuth and clientAuth usages. It does not
// verify the chain (VerifyNode does).
func NodeID(c *x509.Certificate) (string, bool) {
	var server, client bool
	for _, u := range c.ExtKeyUsage {
		server = server || u == x509.ExtKeyUsageServerAuth
		client = client || u == x509.ExtKeyUsageClientAuth
	}
	if !server || !client {
		return "", false
	}
	id := ""
	for _, u := range c.URIs {
		if s := u.String(); strings.HasPrefix(s, NodeURIPrefix) {
			if id != "" {
				return "", false // two node markers: refuse rather than pick
			}
			id = strings.TrimPrefix(s, NodeURIPrefix)
		}
	}
	return id, id != ""
}

// VerifyNode checks that chain (leaf first, as a TLS peer sends it) is a
// node certificate issued by roots and valid at now, and returns its id.
func VerifyNode(chain []*x509.Certificate, roots *x509.CertPool, now time.Time) (string, error) {
	if len(chain) == 0 {
		return "", fmt.Errorf("%w: the peer sent no certificate", ErrNotNode)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return "", fmt.Errorf("certs: peer certificate %q: %w", chain[0].Subject.CommonName, err)
	}
	id, ok := NodeID(chain[0])
	if !ok {
		return "", fmt.Errorf("%w: %q has no %sID marker with server and client usage (an operator's certificate is not a node's; issue one with `aibos tls cert create --node ID`)",
			ErrNotNode, chain[0].Subject.CommonName, NodeURIPrefix)
	}
	return id, nil
}

func parseCert(b []byte, file string) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("certs: %s: no PEM certificate", file)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certs: %s: %w", file, err)
	}
	return c, nil
}

func encodeKey(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("certs: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certs: serial number: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}
