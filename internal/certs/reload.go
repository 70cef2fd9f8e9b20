package certs

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Reloader serves a certificate and key from two PEM files and picks up
// new files without a restart: every handshake stats both files (a stat is
// about a microsecond; handshakes are rare next to requests on kept-alive
// connections), and if either changed (size, modification time or the file
// itself, as after a rename over it) it loads the pair again. A pair that
// does not load — a certificate written before its key — is logged and the
// previous one kept, until the files change again. Reload forces a reload
// (the server calls it on SIGHUP). Safe for concurrent use.
type Reloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu       sync.Mutex
	cert     *tls.Certificate // guarded by mu
	certSeen os.FileInfo      // guarded by mu: the files as last tried
	keySeen  os.FileInfo      // guarded by mu
}

// NewReloader loads the pair once; it fails if that does not work.
func NewReloader(certFile, keyFile string, log *slog.Logger) (*Reloader, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload loads the pair now. On failure the previous pair stays in use.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.loadLocked()
}

func (r *Reloader) loadLocked() error {
	ci, _ := os.Stat(r.certFile)
	ki, _ := os.Stat(r.keyFile)
	r.certSeen, r.keySeen = ci, ki
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("certs: load certificate %s and key %s: %w", r.certFile, r.keyFile, err)
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return fmt.Errorf("certs: %s: %w", r.certFile, err)
		}
	}
	r.cert = &c
	return nil
}

// Current returns the pair in use, reloading it first if its files changed.
func (r *Reloader) Current() *tls.Certificate {
	r.mu.Lock()
	defer r.mu.Unlock()
	ci, _ := os.Stat(r.certFile)
	ki, _ := os.Stat(r.keyFile)
	if changed(r.certSeen, ci) || changed(r.keySeen, ki) {
		old := r.cert
		if err := r.loadLocked(); err != nil {
			r.log.Warn("certificate files changed but do not load; still serving the previous certificate",
				"cert", r.certFile, "key", r.keyFile, "err", err)
		} else if old != nil && old.Leaf != nil {
			r.log.Info("certificate reloaded", "cert", r.certFile,
				"old_serial", old.Leaf.SerialNumber.Text(16), "new_serial", r.cert.Leaf.SerialNumber.Text(16),
				"not_after", r.cert.Leaf.NotAfter.Format(time.RFC3339))
		}
	}
	return r.cert
}

// GetCertificate is for tls.Config.GetCertificate.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.Current(), nil
}

// GetClientCertificate is for tls.Config.GetClientCertificate.
func (r *Reloader) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return r.Current(), nil
}

func changed(seen, now os.FileInfo) bool {
	if seen == nil || now == nil {
		return seen != now
	}
	return !os.SameFile(seen, now) || seen.Size() != now.Size() || !seen.ModTime().Equal(now.ModTime())
}
