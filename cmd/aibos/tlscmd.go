package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aibos/kernel/internal/certs"
)

const tlsUsage = `Usage:
  aibos tls ca create [--dir DIR] [--name NAME] [--days N]
      a new cluster CA: DIR/ca.crt (give it to nodes and clients) and DIR/ca.key (keep it offline)
  aibos tls cert create --node ID | --operator NAME [--dir DIR] [--ca FILE --ca-key FILE]
                        [--ip IP]... [--dns NAME]... [--days N] [--out DIR]
      a certificate signed by the CA: OUT/ID.crt and OUT/ID.key. A node certificate
      (server and client, URI aibos://node/ID) lets a node serve HTTPS, speak Raft and
      join; an operator certificate (client only) is never taken for a node's.
      A node certificate without --ip and --dns is for 127.0.0.1, ::1 and localhost.

DIR defaults to ./tls; OUT to DIR. Existing files are never overwritten.`

func cmdTLS(args []string, stdout, stderr io.Writer) int {
	if code, ok := groupHelp(args, tlsUsage, stdout, stderr); !ok {
		return code
	}
	if args[0] != "ca" && args[0] != "cert" {
		return unknownSub("tls", args[0], tlsUsage, stderr)
	}
	if len(args) < 2 || isHelp(args[1]) {
		fmt.Fprintln(stdout, tlsUsage)
		return exitOK
	}
	if args[1] != "create" {
		return unknownSub("tls "+args[0], args[1], tlsUsage, stderr)
	}
	if args[0] == "ca" {
		return tlsCACreate(args[2:], stdout, stderr)
	}
	return tlsCertCreate(args[2:], stdout, stderr)
}

func tlsCACreate(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("tls ca create", tlsUsage, stdout, stderr)
	dir := fs.String("dir", "tls", "directory to write ca.crt and ca.key to")
	name := fs.String("name", "AI-BOS Kernel cluster CA", "the CA's common name")
	days := fs.Int("days", int(certs.CAValidity/(24*time.Hour)), "validity in days")
	if code, ok := fs.parse(args); !ok {
		return code
	}
	if *days <= 0 {
		fmt.Fprintln(stderr, "aibos tls ca create: --days must be positive")
		return exitInvalid
	}
	certPEM, keyPEM, err := certs.NewCA(*name, time.Now(), time.Duration(*days)*24*time.Hour)
	if err == nil {
		err = writePair(*dir, "ca", certPEM, keyPEM)
	}
	if err != nil {
		fmt.Fprintf(stderr, "aibos tls ca create: %v\n", err)
		return exitInvalid
	}
	fmt.Fprintf(stdout, "wrote %s and %s (keep the key offline; nodes and clients need only ca.crt)\n",
		filepath.Join(*dir, "ca.crt"), filepath.Join(*dir, "ca.key"))
	return exitOK
}

func tlsCertCreate(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("tls cert create", tlsUsage, stdout, stderr)
	var req certs.Request
	fs.StringVar(&req.NodeID, "node", "", "issue a node certificate for this node id (its --node-id)")
	fs.StringVar(&req.Operator, "operator", "", "issue an operator client certificate for this name")
	dir := fs.String("dir", "tls", "directory of the CA (ca.crt, ca.key)")
	caFile := fs.String("ca", "", "CA certificate (default DIR/ca.crt)")
	caKey := fs.String("ca-key", "", "CA key (default DIR/ca.key)")
	out := fs.String("out", "", "directory to write NAME.crt and NAME.key to (default DIR)")
	days := fs.Int("days", int(certs.CertValidity/(24*time.Hour)), "validity in days")
	fs.Func("ip", "an IP address the certificate is valid for (repeatable)", func(v string) error {
		ip := net.ParseIP(v)
		if ip == nil {
			return fmt.Errorf("%q is not an IP address", v)
		}
		req.IPs = append(req.IPs, ip)
		return nil
	})
	fs.Func("dns", "a host name the certificate is valid for (repeatable)", func(v string) error {
		req.DNSNames = append(req.DNSNames, v)
		return nil
	})
	if code, ok := fs.parse(args); !ok {
		return code
	}
	if *days <= 0 {
		fmt.Fprintln(stderr, "aibos tls cert create: --days must be positive")
		return exitInvalid
	}
	if *caFile == "" {
		*caFile = filepath.Join(*dir, "ca.crt")
	}
	if *caKey == "" {
		*caKey = filepath.Join(*dir, "ca.key")
	}
	if *out == "" {
		*out = *dir
	}
	if req.NodeID != "" && len(req.IPs) == 0 && len(req.DNSNames) == 0 {
		req.IPs = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
		req.DNSNames = []string{"localhost"}
	}
	req.Validity = time.Duration(*days) * 24 * time.Hour
	ca, err := certs.LoadCA(*caFile, *caKey)
	if err != nil {
		fmt.Fprintf(stderr, "aibos tls cert create: %v\n", err)
		return exitInvalid
	}
	certPEM, keyPEM, err := ca.Issue(req, time.Now())
	name := req.NodeID + req.Operator
	if err == nil {
		err = writePair(*out, name, certPEM, keyPEM)
	}
	if err != nil {
		fmt.Fprintf(stderr, "aibos tls cert create: %v\n", err)
		return exitInvalid
	}
	var sans []string
	for _, ip := range req.IPs {
		sans = append(sans, ip.String())
	}
	sans = append(sans, req.DNSNames...)
	kind := "node"
	if req.Operator != "" {
		kind = "operator"
	}
	where := ""
	if len(sans) > 0 {
		where = ", for " + strings.Join(sans, ", ")
	}
	fmt.Fprintf(stdout, "wrote %s and %s: %s certificate for %s%s, valid until %s\n",
		filepath.Join(*out, name+".crt"), filepath.Join(*out, name+".key"), kind, name,
		where, time.Now().Add(req.Validity).UTC().Format("2006-01-02"))
	return exitOK
}

// writePair writes DIR/NAME.crt (0644) and DIR/NAME.key (0600), refusing
// to overwrite either.
func writePair(dir, name string, certPEM, keyPEM []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	crt, key := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	for _, f := range []string{crt, key} {
		if _, err := os.Stat(f); err == nil {
			return fmt.Errorf("%s exists; remove it or choose another --dir/--out (nothing was written)", f)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := os.WriteFile(key, keyPEM, 0o600); err != nil {
		return err
	}
	return os.WriteFile(crt, certPEM, 0o644)
}
