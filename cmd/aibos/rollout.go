package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/aibos/kernel/api"
	"github.com/aibos/kernel/internal/policy"
)

const rolloutUsage = `Usage:
  aibos rollout start --candidate V | --bundle PATH  --percent P | --selector k=v  [--max-flip-rate R] [--max-error-rate R] [--min-samples N]
  aibos rollout status                 the latest rollout and the answering node's shadow counters
  aibos rollout abort [--reason R]     everyone back on the current version
  aibos rollout promote [--reason R]   the candidate becomes current (a new version)

Every subcommand takes --server URL; start, abort and promote take --author NAME.
Run "aibos rollout SUBCOMMAND -h" for its flags.`

// rolloutSynopsis is the usage of one rollout subcommand.
func rolloutSynopsis(sub string) string {
	switch sub {
	case "start":
		return "Usage: aibos rollout start --candidate V | --bundle PATH  --percent P | --selector k=v [flags]\n\nCanary a bundle to a cohort of subjects, with automatic abort."
	case "status":
		return "Usage: aibos rollout status [--server URL]\n\nThe latest rollout and the answering node's shadow counters."
	case "abort":
		return "Usage: aibos rollout abort [--id N] [--reason R] [--author A] [--server URL]\n\nAbort the active rollout: everyone back on the current version."
	case "promote":
		return "Usage: aibos rollout promote [--id N] [--reason R] [--author A] [--server URL]\n\nPromote the active rollout's candidate: it becomes current as a new version."
	}
	return ""
}

// cmdRollout runs `aibos rollout start|status|abort|promote`.
func cmdRollout(args []string, stdout, stderr io.Writer) int {
	if code, ok := groupHelp(args, rolloutUsage, stdout, stderr); !ok {
		return code
	}
	sub, rest := args[0], args[1:]
	fs := newFlags("rollout "+sub, rolloutSynopsis(sub), stdout, stderr)
	server := serverFlag(fs)
	var author *string
	if sub != "status" {
		author = fs.String("author", "", "who does it: recorded from your token's principal; if given, must be it")
	}
	var (
		candidate              *uint64
		percent, maxFlip, maxE *float64
		minSamples             *uint64
		selector, reason       *string
		bundle                 *string
		id                     *uint64
	)
	switch sub {
	case "start":
		candidate = fs.Uint64("candidate", 0, "the existing version to canary (or --bundle)")
		bundle = fs.String("bundle", "", "a new bundle (file or directory) to canary, staged as the next version until promoted (or --candidate)")
		percent = fs.Float64("percent", 0, "percent of subjects (by a stable hash of their id) served the candidate")
		selector = fs.String("selector", "", "serve subjects whose properties match instead: key=value,key=value")
		maxFlip = fs.Float64("max-flip-rate", -1, "abort when more than this fraction of shadow decisions flip (0-1; -1: no limit)")
		maxE = fs.Float64("max-error-rate", -1, "abort when more than this fraction of candidate evaluations err (0-1; -1: no limit)")
		minSamples = fs.Uint64("min-samples", 0, "shadow decisions a node needs before it checks the rates (default 100)")
	case "abort", "promote":
		reason = fs.String("reason", "", "why (recorded with the rollout)")
		id = fs.Uint64("id", 0, "end only this rollout (default: the active one)")
	case "status":
	default:
		return unknownSub("rollout", sub, rolloutUsage, stderr)
	}
	if code, ok := fs.parse(rest); !ok {
		return code
	}
	c, err := newClient(fs, *server)
	if err != nil {
		return apiFail(stderr, "rollout "+sub, err)
	}
	ctx := context.Background()
	var st api.RolloutStatus
	switch sub {
	case "start":
		if (*candidate == 0) == (*bundle == "") {
			fmt.Fprintln(stderr, "aibos rollout start: give exactly one of --candidate V (an existing version) or --bundle PATH (a new bundle)")
			return exitInvalid
		}
		req := api.RolloutRequest{Candidate: *candidate, Percent: *percent,
			Abort: api.RolloutAbortPolicy{MinSamples: *minSamples}}
		if *bundle != "" {
			if req.Files, err = policy.ReadPath(*bundle); err != nil {
				fmt.Fprintf(stderr, "aibos rollout start: %v\n", err)
				return exitInvalid
			}
		}
		if *maxFlip >= 0 {
			req.Abort.MaxFlipRate = maxFlip
		}
		if *maxE >= 0 {
			req.Abort.MaxErrorRate = maxE
		}
		if *selector != "" {
			req.Selector = map[string]any{}
			for _, kv := range strings.Split(*selector, ",") {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					fmt.Fprintf(stderr, "aibos rollout start: --selector %q: want key=value pairs separated by commas\n", *selector)
					return exitInvalid
				}
				req.Selector[k] = v
			}
		}
		st, err = c.StartRollout(ctx, req, *author)
	case "status":
		st, err = c.Rollout(ctx)
	case "abort":
		st, err = c.AbortRollout(ctx, *id, *reason, *author)
	case "promote":
		st, err = c.PromoteRollout(ctx, *id, *reason, *author)
	}
	if err != nil {
		return apiFail(stderr, "rollout "+sub, err)
	}
	printRollout(stdout, st)
	return exitOK
}

func printRollout(w io.Writer, st api.RolloutStatus) {
	r := st.Rollout
	if r == nil {
		fmt.Fprintln(w, "no rollout has been started")
		return
	}
	cohort := fmt.Sprintf("%g%% of subjects", r.Cohort.Percent)
	if len(r.Cohort.Selector) > 0 {
		sel, _ := json.Marshal(r.Cohort.Selector)
		cohort = "subjects matching " + string(sel)
	}
	staged := ""
	if r.Staged {
		staged = ", staged"
	}
	fmt.Fprintf(w, "rollout %d: %s — candidate version %d (hash %s%s; base %d) for %s, started by %s at %s\n",
		r.ID, r.State, r.Candidate, r.CandidateHash, staged, r.Base, cohort, r.StartedBy, r.StartedAt.Format("2006-01-02 15:04:05Z07:00"))
	if r.State != api.RolloutActive {
		fmt.Fprintf(w, "ended by %s at %s", r.EndedBy, r.EndedAt.Format("2006-01-02 15:04:05Z07:00"))
		if r.Reason != "" {
			fmt.Fprintf(w, ": %s", r.Reason)
		}
		fmt.Fprintln(w)
		if r.Promoted != 0 {
			fmt.Fprintf(w, "the candidate is now current as version %d\n", r.Promoted)
		}
	}
	if c := st.Counters; c != nil {
		fmt.Fprintf(w, "node %s: %d shadow decisions, %d flips, %d candidate errors, %d served by the candidate\n",
			c.Node, c.Samples, c.Flips, c.Errors, c.Cohort)
		for _, f := range c.ByRule {
			fmt.Fprintf(w, "  %6d  %s → %s  %s  (%s)\n", f.Count, f.From, f.To, f.Action, f.Rule)
		}
	}
}
