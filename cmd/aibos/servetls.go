package main

import (
	"errors"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/aibos/kernel/internal/certs"
	"github.com/aibos/kernel/internal/node"
)

// tlsFlags are serve's TLS flags.
type tlsFlags struct {
	cert, key, clientCA       string
	nodeCert, nodeKey, nodeCA string
	insecure                  bool
}

func (t *tlsFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&t.cert, "tls-cert", "", "PEM certificate of the HTTP API (with --tls-key; reloaded when the file changes or on SIGHUP; default with --node-cert: the node certificate)")
	fs.StringVar(&t.key, "tls-key", "", "PEM key of --tls-cert")
	fs.StringVar(&t.clientCA, "tls-client-ca", "", "require HTTP clients to present a certificate from this CA (nodes present their node certificates)")
	fs.StringVar(&t.nodeCert, "node-cert", "", "this node's certificate (aibos tls cert create --node ID): Raft over mutual TLS, forwarding and join over HTTPS; needs --node-key and --node-ca")
	fs.StringVar(&t.nodeKey, "node-key", "", "PEM key of --node-cert")
	fs.StringVar(&t.nodeCA, "node-ca", "", "the cluster CA (ca.crt): every peer must present a node certificate from it")
	fs.BoolVar(&t.insecure, "insecure-no-tls", false, "allow HTTP or Raft on a non-loopback address without TLS (anyone who reaches the port can change the cluster)")
}

func (t *tlsFlags) load(log *slog.Logger) (node.Security, error) {
	var sec node.Security
	if (t.cert == "") != (t.key == "") {
		return sec, errors.New("--tls-cert and --tls-key go together: give both or neither")
	}
	n := 0
	for _, f := range []string{t.nodeCert, t.nodeKey, t.nodeCA} {
		if f != "" {
			n++
		}
	}
	if n != 0 && n != 3 {
		return sec, errors.New("--node-cert, --node-key and --node-ca go together: give all three or none (aibos tls cert create --node ID makes the pair)")
	}
	var err error
	if t.cert != "" {
		if sec.HTTPCert, err = certs.NewReloader(t.cert, t.key, log); err != nil {
			return sec, err
		}
	}
	if t.clientCA != "" {
		if !(t.cert != "" || n == 3) {
			return sec, errors.New("--tls-client-ca needs TLS: give --tls-cert and --tls-key, or the --node-* flags")
		}
		if sec.ClientCAs, err = certs.LoadPool(t.clientCA); err != nil {
			return sec, err
		}
	}
	if n == 3 {
		if sec.Node, err = certs.LoadNode(t.nodeCert, t.nodeKey, t.nodeCA, log); err != nil {
			return sec, err
		}
	}
	return sec, nil
}

// reloadOnHUP reloads the certificates on SIGHUP (they are also reloaded
// when their files change); the returned func stops it.
func reloadOnHUP(sec node.Security, log *slog.Logger) func() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-ch:
				for _, r := range []*certs.Reloader{sec.HTTPCert, nodeCert(sec)} {
					if r == nil {
						continue
					}
					if err := r.Reload(); err != nil {
						log.Warn("SIGHUP: certificate reload failed; the previous one stays in use", "err", err)
					} else {
						log.Info("SIGHUP: certificates reloaded")
					}
				}
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}

func nodeCert(sec node.Security) *certs.Reloader {
	if sec.Node == nil {
		return nil
	}
	return sec.Node.Cert
}
