package main

import (
	"context"
	"fmt"
	"github.com/aibos/kernel/internal/auth"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aibos/kernel/internal/node"
)

const serveSynopsis = `Usage: aibos serve [flags]

Run a kernel node. With no flags: a single-node cluster with its data in
./data, HTTP on 127.0.0.1:8181.`

func cmdServe(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("serve", serveSynopsis, stdout, stderr)
	var cfg node.Config
	fs.StringVar(&cfg.NodeID, "node-id", "node1", "this node's id, unique in the cluster")
	fs.StringVar(&cfg.HTTPAddr, "http", "127.0.0.1:8181", "address of the HTTP API")
	fs.StringVar(&cfg.RaftAddr, "raft", "127.0.0.1:8300", "address of Raft traffic between nodes (advertised to peers)")
	fs.StringVar(&cfg.DataDir, "data", "data", "directory of this node's state")
	fs.StringVar(&cfg.Join, "join", "", "HTTP address of any member of a cluster to join (empty: bootstrap a new cluster)")
	fs.BoolVar(&cfg.NonVoter, "nonvoter", false, "join as a non-voting read replica")
	fs.StringVar(&cfg.Region, "region", "default", "name of this node's region")
	sample := fs.Float64("decision-log-sample", 0.1, "fraction of decisions logged in DATA/decisions for aibos policy simulate (1: all, 0: none)")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&cfg.RedisAddr, "redis", os.Getenv("AIBOS_REDIS"), "Redis address (host:port) for the gateway's rate limits, budgets and idempotency keys, shared by the cluster (env AIBOS_REDIS; empty: kept per node in DATA)")
	cfg.RedisPassword = os.Getenv("AIBOS_REDIS_PASSWORD")
	fs.Func("audit-redact", "field path redacted from every audit record's arguments and results, e.g. ssn or customer.email (repeatable)", func(v string) error {
		cfg.AuditRedact = append(cfg.AuditRedact, v)
		return nil
	})
	auditDecisions := fs.Bool("audit-decisions", true, "record every decision of /v1/check, batches and AuthZEN in the audit log (invocations are always recorded)")
	fs.DurationVar(&cfg.AuditRetention, "audit-retention", 30*24*time.Hour, "how long audit records are kept")
	fs.DurationVar(&cfg.AuditFsyncInterval, "audit-fsync-interval", 10*time.Millisecond, "how long a decision may stay in the audit log unsynced, the window a machine crash can lose; longer means fewer fsyncs (invocations are synced before their answer regardless)")
	tokenFile := fs.String("token-file", "", "with --join: file holding the operator token this node joins with (a token with the node role; else $AIBOS_TOKEN)")
	cfg.AuditMaxBytes = 10 << 30
	fs.Func("audit-max-bytes", "size bound of the audit log, such as 512MiB or 20GiB (default 10GiB; 0: none): past it the oldest segments holding only decisions are deleted, never one with an invocation, approval or kill switch", func(v string) error {
		n, err := parseBytes(v)
		if err != nil {
			return err
		}
		if n > 0 && n < 128<<20 {
			return fmt.Errorf("%s is below 128MiB (two 64 MiB segments)", v)
		}
		cfg.AuditMaxBytes = n
		return nil
	})
	fs.DurationVar(&cfg.Gateway.ApprovalTTL, "approval-ttl", 15*time.Minute, "how long a held invocation can be approved and redeemed")
	fs.DurationVar(&cfg.HTTP.ReadTimeout, "http-read-timeout", 30*time.Second, "a request's line, headers and body must arrive within this, or the connection is closed (0: no bound)")
	fs.DurationVar(&cfg.HTTP.WriteTimeout, "http-write-timeout", 60*time.Second, "a request must be answered within this from the end of its headers; the watch stream, approval waits, exports, publishes, simulations and invocations extend their own (0: no bound)")
	fs.DurationVar(&cfg.HTTP.IdleTimeout, "http-idle-timeout", 60*time.Second, "a keep-alive connection with no next request is closed after this (0: the read timeout)")
	fs.IntVar(&cfg.HTTP.MaxConns, "http-max-conns", 16384, "HTTP connections open at once, watchers included; further ones wait to be accepted until one closes (0: no limit)")
	fs.StringVar(&cfg.OIDC.Issuer, "oidc-issuer", "", "accept operators' ID tokens (JWTs) of this OpenID Connect issuer, its exact iss, and at /mcp its access tokens of agents acting for a user (sub the user, client_id or azp the agent) (empty: kernel tokens only)")
	fs.StringVar(&cfg.OIDC.Audience, "oidc-audience", "", "with --oidc-issuer: the aud the ID and access tokens must hold (the kernel's client id at the issuer)")
	fs.StringVar(&cfg.OIDC.JWKSFile, "oidc-jwks-file", "", "with --oidc-issuer: file of the issuer's public keys (JWKS), to verify without ever calling the issuer (empty: --oidc-jwks-url, else the issuer's discovery document)")
	fs.StringVar(&cfg.OIDC.JWKSURL, "oidc-jwks-url", "", "with --oidc-issuer: URL of the issuer's public keys (JWKS), fetched once and again only for an unknown key")
	fs.StringVar(&cfg.OIDC.PrincipalClaim, "oidc-principal-claim", "sub", "with --oidc-issuer: the claim that names the operator (sub, email, preferred_username…)")
	fs.StringVar(&cfg.OIDC.RoleClaim, "oidc-role-claim", "groups", "with --oidc-issuer: the claim (a string or a list) whose values --oidc-role-map maps to roles")
	fs.StringVar(&cfg.OIDC.TenantClaim, "oidc-tenant-claim", "", "with --oidc-issuer: a claim (a string or a list) of the tenants an operator is limited to (empty: no limit)")
	fs.Func("oidc-role-map", "with --oidc-issuer: group=role[,role…][;group=role…], e.g. 'platform=admin;sre=operator,auditor' (unset: a group named as a built-in role is that role; a group not mapped grants nothing)", func(v string) error {
		m, err := auth.ParseRoleMap(v)
		if err != nil {
			return err
		}
		cfg.OIDC.RoleMap = m
		return nil
	})
	fs.StringVar(&cfg.Regions.Domain, "domain", "", "multi-region mode: the residency domain of this node's --region (us, eu, apac, ...); tenant data of the domain's tenants never leaves it (empty: a single region)")
	fs.Func("region-join", "with --domain: base URL of the primary region (or of any region that follows it) to follow; repeatable (unset: this region is the first primary)", func(v string) error {
		cfg.Regions.Join = append(cfg.Regions.Join, strings.TrimSuffix(v, "/"))
		return nil
	})
	fs.Func("region-endpoint", "with --domain: base URL the region registry lists for this region (its nodes or their load balancer); repeatable (unset: this node's URL)", func(v string) error {
		cfg.Regions.Endpoints = append(cfg.Regions.Endpoints, strings.TrimSuffix(v, "/"))
		return nil
	})
	fs.StringVar(&cfg.Regions.Standby, "standby", "", "with --domain: the region of the same domain this region's tenant data is streamed to, which serves its tenants if this region is lost")
	regionTokenFile := fs.String("region-token-file", "", "with --domain: file holding the token this region calls other regions with (made at the primary: aibos token create --principal region-NAME --role region; else $AIBOS_REGION_TOKEN)")
	fs.DurationVar(&cfg.Regions.Lease, "region-lease", 2*time.Second, "with --domain: how long the primary writes global state after a majority of regions last acknowledged it")
	fs.DurationVar(&cfg.Regions.FailoverAfter, "failover-after", 10*time.Second, "with --domain and as a standby: how long the home region may be silent before its standby asks the primary to fail it over (0: never automatically)")
	var tf tlsFlags
	tf.add(fs.FlagSet)
	if code, ok := fs.parse(args); !ok {
		return code
	}
	if *sample < 0 || *sample > 1 {
		fmt.Fprintf(stderr, "aibos serve: -decision-log-sample %v: want a fraction from 0 (no log) to 1 (every decision)\n", *sample)
		return exitInvalid
	}
	if cfg.OIDC.Enabled() {
		if err := cfg.OIDC.Check(); err != nil {
			fmt.Fprintf(stderr, "aibos serve: %v\n", err)
			return exitInvalid
		}
	} else if cfg.OIDC.Audience != "" || cfg.OIDC.JWKSFile != "" || cfg.OIDC.JWKSURL != "" || cfg.OIDC.RoleMap != nil || cfg.OIDC.TenantClaim != "" {
		fmt.Fprintf(stderr, "aibos serve: the --oidc-* flags need --oidc-issuer, the issuer whose tokens to accept\n")
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
	if cfg.Regions.Domain == "" && (len(cfg.Regions.Join) > 0 || len(cfg.Regions.Endpoints) > 0 || cfg.Regions.Standby != "" || *regionTokenFile != "") {
		fmt.Fprintf(stderr, "aibos serve: --region-join, --region-endpoint, --standby and --region-token-file need --domain (multi-region mode)\n")
		return exitInvalid
	}
	if cfg.Regions.Domain != "" {
		cfg.Regions.Token = strings.TrimSpace(os.Getenv("AIBOS_REGION_TOKEN"))
		if *regionTokenFile != "" {
			tok, err := readTokenFile(*regionTokenFile)
			if err != nil {
				fmt.Fprintf(stderr, "aibos serve: --region-token-file: %v\n", err)
				return exitInvalid
			}
			cfg.Regions.Token = tok
		}
		if cfg.Regions.FailoverAfter == 0 {
			cfg.Regions.FailoverAfter = -1
		}
	}
	// node.Config reads zero as its default and a negative bound as none.
	for _, d := range []*time.Duration{&cfg.HTTP.ReadTimeout, &cfg.HTTP.WriteTimeout, &cfg.HTTP.IdleTimeout} {
		if *d < 0 {
			fmt.Fprintf(stderr, "aibos serve: a negative HTTP timeout (%s): want a duration such as 30s, or 0 for no bound\n", *d)
			return exitInvalid
		}
		if *d == 0 {
			*d = -1
		}
	}
	if cfg.HTTP.MaxConns < 0 {
		fmt.Fprintf(stderr, "aibos serve: -http-max-conns %d: want a number of connections, or 0 for no limit\n", cfg.HTTP.MaxConns)
		return exitInvalid
	}
	if cfg.HTTP.MaxConns == 0 {
		cfg.HTTP.MaxConns = -1
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
	var err error
	if os.Getenv("GOGC") == "" {
		// The decision path allocates a few KiB per request against a small
		// live heap; collecting at 4x the live heap instead of 2x halves the
		// GC work and its latency tail. GOGC in the environment overrides it.
		debug.SetGCPercent(400)
	}

	if cfg.Security, err = tf.load(log); err != nil {
		log.Error("cannot start", "err", err)
		return exitInvalid
	}
	cfg.Security.InsecureNoTLS = tf.insecure
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	stopReload := reloadOnHUP(cfg.Security, log)
	defer stopReload()
	n, err := node.Start(ctx, cfg)
	if err != nil {
		log.Error("cannot start", "err", err)
		fmt.Fprintf(stderr, "aibos serve: cannot start: %v\n", err)
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

// parseBytes reads a size: a whole number of bytes, or one with a unit
// KiB, MiB, GiB, TiB (powers of 1024) or KB, MB, GB, TB (of 1000).
func parseBytes(v string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	num, mult := strings.TrimSpace(v), int64(1)
	for _, u := range units {
		if n, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is not a size: give bytes, or a number with KiB, MiB, GiB or TiB, such as 10GiB", v)
	}
	return n * mult, nil
}
