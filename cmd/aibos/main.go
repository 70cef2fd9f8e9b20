// Command aibos is the AI-BOS Kernel: `aibos serve` runs a node; the other
// subcommands work on policy bundles locally or talk to a running cluster.
package main

import (
	"fmt"
	"io"
	"os"
)

// Exit codes, the same for every subcommand.
const (
	exitOK      = 0 // success
	exitFailed  = 1 // bundle tests failed, or a decision was not allow where --fail-on-deny asked
	exitInvalid = 2 // invalid input: bad flags, unreadable or invalid bundle or request, server refused
)

const usage = `aibos — the AI-BOS Kernel, a governance kernel for AI agents.

Usage:
  aibos serve [flags]                     run a kernel node (single node in ./data by default)
  aibos policy lint PATH                  parse and compile a bundle (file or directory)
  aibos policy test PATH                  run the bundle's Test documents
  aibos policy eval PATH --request FILE   decide one request locally and explain it
  aibos policy publish PATH               publish a bundle to a cluster
  aibos policy versions                   list a cluster's bundle versions
  aibos policy rollback --to V            publish version V's content as a new version
  aibos policy diff A B                   semantic changes between two bundles (paths or versions)
  aibos policy simulate PATH --since 1h   replay a node's logged decisions against a candidate bundle
  aibos rollout start|status|abort|promote  canary a bundle version to a cohort (see -h of each)
  aibos check [flags]                     ask a cluster for a decision
  aibos search subject|resource|action    who may, on what, or which actions (AuthZEN search; see -h)
  aibos entities put FILE                 upsert entities ({"entities": [...]}) in a cluster
  aibos agent register|list|get|retire|rotate  the agent registry (register FILE prints the token once)
  aibos agent import-card CARD.json      register an agent from its A2A Agent Card (--capabilities ...)
  aibos agent stats ID                    a node's invocation counters for an agent
  aibos orchestra put|list|get|delete     the action catalog (put FILE: an orchestra and its actions)
  aibos action list                       the actions agents can invoke
  aibos invoke ACTION --input JSON        invoke an action as an agent (--token, --idempotency-key, --wait)
  aibos approval list|get|approve|deny    held invocations waiting for a person
  aibos kill set|lift|list                kill switches: stop an agent, tenant, action or everything
  aibos audit verify|query|export         check or read a node's audit log (see aibos audit -h)
  aibos token create|list|revoke          operator tokens (create --principal NAME --role ROLE prints the secret once)
  aibos whoami                            the principal your credential stands for
  aibos system-policy publish|get         the system bundle that authorizes the kernel's API (admin)
  aibos cluster status                    show a cluster's members
  aibos region list|add|promote|failover|status  multi-region: the region registry, promotion, replication
  aibos tenant add|list                   multi-region: the tenant directory (add ID --home REGION)
  aibos tls ca create|cert create         a cluster CA, node and operator certificates (see aibos tls -h)
  aibos bench [flags]                     drive a node with decisions and report throughput/latency
  aibos failover-bench [flags]            measure leader failover on a local 3-node cluster

  aibos version                           print the version (also --version)

Run "aibos COMMAND -h" (or "aibos help COMMAND") for the flags of a command.
Commands that talk to a cluster send the operator token of --token-file,
else $AIBOS_TOKEN, else ./data/root-token (what "aibos serve" writes on a
new cluster's first start).

Exit codes: 0 ok; 1 failed bundle tests, a decision other than allow
with --fail-on-deny, lint warnings with --strict, an invocation that did not
complete (held, denied, failed, cancelled), audit verify finding problems, or
cluster status finding no leader; 2 invalid input (flags, bundle, request), an error
answer from the server, or a server that cannot be reached.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitInvalid
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return cmdServe(rest, stdout, stderr)
	case "policy":
		return cmdPolicy(rest, stdin, stdout, stderr)
	case "rollout":
		return cmdRollout(rest, stdout, stderr)
	case "check":
		return cmdCheck(rest, stdin, stdout, stderr)
	case "search":
		return cmdSearch(rest, stdout, stderr)
	case "entities":
		return cmdEntities(rest, stdin, stdout, stderr)
	case "agent":
		return cmdAgent(rest, stdin, stdout, stderr)
	case "orchestra":
		return cmdOrchestra(rest, stdin, stdout, stderr)
	case "action":
		return cmdAction(rest, stdout, stderr)
	case "invoke":
		return cmdInvoke(rest, stdin, stdout, stderr)
	case "approval":
		return cmdApproval(rest, stdout, stderr)
	case "kill":
		return cmdKill(rest, stdout, stderr)
	case "audit":
		return cmdAudit(rest, stdout, stderr)
	case "cluster":
		return cmdCluster(rest, stdout, stderr)
	case "region":
		return cmdRegion(rest, stdout, stderr)
	case "tenant":
		return cmdTenant(rest, stdout, stderr)
	case "token":
		return cmdToken(rest, stdout, stderr)
	case "whoami":
		return cmdWhoAmI(rest, stdout, stderr)
	case "system-policy":
		return cmdSystemPolicy(rest, stdout, stderr)
	case "tls":
		return cmdTLS(rest, stdout, stderr)
	case "bench":
		return cmdBench(rest, stdout, stderr)
	case "failover-bench":
		return cmdFailoverBench(rest, stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, version())
		return exitOK
	case "help", "-h", "-help", "--help":
		if cmd == "help" && len(rest) > 0 {
			// aibos help COMMAND [SUB]: the command's own help.
			return run(append(rest, "--help"), stdin, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "aibos: unknown command %q\n\n%s", cmd, usage)
		return exitInvalid
	}
}
