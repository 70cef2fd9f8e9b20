package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aibos/kernel/internal/policy"
)

const tokenUsage = `Usage: aibos token create --principal NAME --role ROLE [--role ROLE...] [--tenant T...] [--ttl D]
       aibos token list
       aibos token revoke ACCESSOR
  [--server URL] [--token-file F]
Roles: admin, policy-author, approver, operator, auditor, registrar, pep, node, region.`

// cmdToken runs `aibos token create|list|revoke`.
func cmdToken(args []string, stdout, stderr io.Writer) int {
	if code, ok := groupHelp(args, tokenUsage, stdout, stderr); !ok {
		return code
	}
	sub, rest := args[0], args[1:]
	fs := newFlags("token "+sub, tokenUsage, stdout, stderr)
	server := serverFlag(fs)
	principal := fs.String("principal", "", "create: who the token is for")
	var roles, tenants []string
	fs.Func("role", "create: a role (repeatable)", func(v string) error { roles = append(roles, v); return nil })
	fs.Func("tenant", "create: limit the token to this tenant (repeatable)", func(v string) error { tenants = append(tenants, v); return nil })
	ttl := fs.Duration("ttl", 0, "create: the token expires after this long (0: never)")
	var accessor string
	switch sub {
	case "create", "list":
		if code, ok := fs.parse(rest); !ok {
			return code
		}
	case "revoke":
		var err error
		if accessor, err = parseWithPath(fs, rest); err != nil {
			if errors.Is(err, errMissingArg) {
				err = errors.New("give the token's ACCESSOR (aibos token list shows them)")
			}
			return fs.fail(err)
		}
	default:
		return unknownSub("token", sub, tokenUsage, stderr)
	}
	c, err := newClient(fs, *server)
	if err != nil {
		return apiFail(stderr, "token "+sub, err)
	}
	ctx := context.Background()
	switch sub {
	case "create":
		if strings.TrimSpace(*principal) == "" || len(roles) == 0 {
			fmt.Fprintf(stderr, "aibos token create: give --principal NAME and at least one --role\n%s\n", tokenUsage)
			return exitInvalid
		}
		tc, err := c.CreateToken(ctx, *principal, roles, tenants, *ttl)
		if err != nil {
			return apiFail(stderr, "token create", err)
		}
		exp := "never expires"
		if !tc.Token.ExpiresAt.IsZero() {
			exp = "expires " + tc.Token.ExpiresAt.Format(time.RFC3339)
		}
		fmt.Fprintf(stdout, "token %s for %s (%s; %s)\n", tc.Token.Accessor, tc.Token.Principal, strings.Join(tc.Token.Roles, ", "), exp)
		fmt.Fprintf(stdout, "secret (shown once, store it now): %s\n", tc.Secret)
	case "list":
		list, err := c.Tokens(ctx)
		if err != nil {
			return apiFail(stderr, "token list", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ACCESSOR\tPRINCIPAL\tROLES\tTENANTS\tEXPIRES\tSTATE")
		for _, t := range list {
			exp, state := "-", "live"
			if !t.ExpiresAt.IsZero() {
				exp = t.ExpiresAt.Format(time.RFC3339)
				if !time.Now().Before(t.ExpiresAt) {
					state = "expired"
				}
			}
			if !t.RevokedAt.IsZero() {
				state = "revoked by " + t.RevokedBy
			}
			if t.Root {
				state += " (root)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.Accessor, t.Principal, strings.Join(t.Roles, ","), strings.Join(t.Tenants, ","), exp, state)
		}
		_ = tw.Flush()
	case "revoke":
		t, err := c.RevokeToken(ctx, accessor)
		if err != nil {
			return apiFail(stderr, "token revoke", err)
		}
		fmt.Fprintf(stdout, "token %s of %s revoked at revision %d: it no longer authenticates on any node\n", t.Accessor, t.Principal, t.Revision)
	}
	return exitOK
}

// cmdWhoAmI runs `aibos whoami`.
func cmdWhoAmI(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("whoami", "Usage: aibos whoami [--server URL] [--token-file F]\n\nThe principal your credential stands for: name, kind, token, roles, tenants.", stdout, stderr)
	server := serverFlag(fs)
	if code, ok := fs.parse(args); !ok {
		return code
	}
	c, err := newClient(fs, *server)
	if err != nil {
		return apiFail(stderr, "whoami", err)
	}
	w, err := c.WhoAmI(context.Background())
	if err != nil {
		return apiFail(stderr, "whoami", err)
	}
	fmt.Fprintf(stdout, "%s (%s, token %s) roles: %s", w.Principal, w.Kind, w.Accessor, strings.Join(w.Roles, ", "))
	if len(w.Tenants) > 0 {
		fmt.Fprintf(stdout, "; tenants: %s", strings.Join(w.Tenants, ", "))
	}
	if !w.ExpiresAt.IsZero() {
		fmt.Fprintf(stdout, "; expires %s", w.ExpiresAt.Format(time.RFC3339))
	}
	fmt.Fprintln(stdout)
	return exitOK
}

const systemPolicyUsage = `Usage: aibos system-policy publish PATH [--message M]   replace the system bundle (admin)
       aibos system-policy get                        the system bundle in force, as YAML
  [--server URL] [--token-file F]`

// cmdSystemPolicy runs `aibos system-policy publish|get`.
func cmdSystemPolicy(args []string, stdout, stderr io.Writer) int {
	if code, ok := groupHelp(args, systemPolicyUsage, stdout, stderr); !ok {
		return code
	}
	sub, rest := args[0], args[1:]
	fs := newFlags("system-policy "+sub, systemPolicyUsage, stdout, stderr)
	server := serverFlag(fs)
	msg := fs.String("message", "", "publish: why (recorded)")
	var path string
	switch sub {
	case "publish":
		var err error
		if path, err = parseWithPath(fs, rest); err != nil {
			if errors.Is(err, errMissingArg) {
				err = errors.New("give the system bundle's PATH")
			}
			return fs.fail(err)
		}
	case "get":
		if code, ok := fs.parse(rest); !ok {
			return code
		}
	default:
		return unknownSub("system-policy", sub, systemPolicyUsage, stderr)
	}
	c, err := newClient(fs, *server)
	if err != nil {
		return apiFail(stderr, "system-policy "+sub, err)
	}
	ctx := context.Background()
	if sub == "get" {
		v, err := c.SystemPolicy(ctx)
		if err != nil {
			return apiFail(stderr, "system-policy get", err)
		}
		for i, f := range v.Files {
			if i > 0 {
				fmt.Fprintln(stdout, "---")
			}
			fmt.Fprintf(stdout, "# %s (system bundle version %d)\n%s", f.Name, v.Version, f.Data)
		}
		return exitOK
	}
	files, err := policy.ReadPath(path)
	if err != nil {
		fmt.Fprintf(stderr, "aibos system-policy publish: %v\n", err)
		return exitInvalid
	}
	resp, err := c.PublishSystem(ctx, files, *msg)
	if err != nil {
		return apiFail(stderr, "system-policy publish", err)
	}
	fmt.Fprintf(stdout, "system bundle version %d in force at revision %d (hash %s)\n", resp.Version, resp.Revision, resp.Hash)
	return exitOK
}
