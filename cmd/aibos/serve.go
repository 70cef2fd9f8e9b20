package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/aibos/kernel/internal/node"
)

func cmdServe(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg node.Config
	fs.StringVar(&cfg.NodeID, "node-id", "node1", "this node's id, unique in the cluster")
	fs.StringVar(&cfg.HTTPAddr, "http", "127.0.0.1:8181", "address of the HTTP API")
	fs.StringVar(&cfg.RaftAddr, "raft", "127.0.0.1:8300", "address of Raft traffic between nodes (advertised to peers)")
	fs.StringVar(&cfg.DataDir, "data", "data", "directory of this node's state")
	fs.StringVar(&cfg.Join, "join", "", "HTTP address of any member of a cluster to join (empty: bootstrap a new cluster)")
	fs.BoolVar(&cfg.NonVoter, "nonvoter", false, "join as a non-voting read replica")
	fs.StringVar(&cfg.Region, "region", "default", "name of this node's region")
	sample := fs.Float64("decision-log-sample", 0.1, "fraction of decisions logged in DATA/decisions for `aibos policy simulate` (1: all, 0: none)")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&cfg.RedisAddr, "redis", os.Getenv("AIBOS_REDIS"), "Redis address (host:port) for the gateway's rate limits, budgets and idempotency keys, shared by the cluster (env AIBOS_REDIS; empty: kept per node in DATA)")
	cfg.RedisPassword = os.Getenv("AIBOS_REDIS_PASSWORD")
	fs.Func("audit-redact", "field path redacted from every audit record's arguments and results, e.g. ssn or customer.email (repeatable)", func(v string) error {
		cfg.AuditRedact = append(cfg.AuditRedact, v)
		return nil
	})
	auditDecisions := fs.Bool("audit-decisions", true, "record every decision of /v1/check, batches and AuthZEN in the audit log (invocations are always recorded)")
	fs.DurationVar(&cfg.AuditRetention, "audit-retention", 30*24*time.Hour, "how long audit records are kept")
	tokenFile := fs.String("token-file", "", "with --join: file holding the operator token this node joins with (a token with the node role; else $AIBOS_TOKEN)")
	fs.DurationVar(&cfg.Gateway.ApprovalTTL, "approval-ttl", 15*time.Minute, "how long a held invocation can be approved and redeemed")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: aibos serve [flags]\n\nWith no flags: a single-node cluster with its data in ./data, HTTP on 127.0.0.1:8181.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitInvalid
	}
	if *sample < 0 || *sample > 1 {
		fmt.Fprintf(stderr, "aibos serve: -decision-log-sample %v: want a fraction from 0 (no log) to 1 (every decision)\n", *sample)
		return exitInvalid
	}
	if cfg.Join != "" {
		cfg.Token = strings.TrimSpace(os.Getenv("AIBOS_TOKEN"))
		if *tokenFile != "" {
			tok, err := readTokenFile(*tokenFile)
			if err != nil {
				fmt.Fprintf(stderr, "aibos serve: --token-file: %v\n", err)
				return exitInvalid
			}
			cfg.Token = tok
		}
	}
	cfg.DecisionLogSample = *sample
	cfg.NoDecisionAudit = !*auditDecisions
	if *sample == 0 {
		cfg.DecisionLogSample = -1 // node.Config: negative is no log, zero the default
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "aibos serve: invalid -log-level %q: want debug, info, warn or error\n", *level)
		return exitInvalid
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lv}))
	cfg.Logger = log
	if os.Getenv("GOGC") == "" {
		// The decision path allocates a few KiB per request against a small
		// live heap; collecting at 4x the live heap instead of 2x halves the
		// GC work and its latency tail. GOGC in the environment overrides it.
		debug.SetGCPercent(400)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := node.Start(ctx, cfg)
	if err != nil {
		log.Error("cannot start", "err", err)
		return exitInvalid
	}
	log.Info("serving", "url", n.URL())
	<-ctx.Done()
	stop()
	log.Info("shutting down: transferring leadership, draining requests, closing the store")
	done := make(chan error, 1)
	go func() { done <- n.Close() }()
	select {
	case err := <-done:
		if err != nil {
			log.Error("shutdown", "err", err)
			return exitFailed
		}
	case <-time.After(30 * time.Second):
		log.Error("shutdown took longer than 30s; exiting")
		return exitFailed
	}
	return exitOK
}
