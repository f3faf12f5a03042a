//go:build !windows

// Command chaos runs hyperpool's chaos test at full size (`make chaos`): it starts the test
// bed, builds the manager, runs two replicas with leader election, creates 1,000 sessions
// at 50/s while it kills the leader once while etcd is paused, three times more and
// restarts kube-apiserver once, checks the invariants throughout, prints the figures,
// writes them to a result file (-out, test/results' envelope) and exits non-zero on any
// violation.
//
//	go run ./test/chaos/cmd/chaos -sessions=1000 -rate=50 -slow-api-kills=1 -leader-kills=3 -apiserver-restarts=1
//
// On a violation (or with -keep-logs) the component and manager logs are kept, and their
// directory is printed.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/hyperpool/hyperpool/test/bench"
	"github.com/hyperpool/hyperpool/test/chaos"
	"github.com/hyperpool/hyperpool/test/results"
	"github.com/hyperpool/hyperpool/test/testbed"
)

func main() {
	violations, err := run()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(2)
	}
	if violations > 0 {
		os.Exit(1)
	}
}

func run() (int, error) {
	cfg := chaos.FullConfig()
	flag.IntVar(&cfg.Sessions, "sessions", cfg.Sessions, "sessions to create")
	flag.Float64Var(&cfg.Rate, "rate", cfg.Rate, "sessions created per second")
	flag.IntVar(&cfg.LeaderKills, "leader-kills", cfg.LeaderKills, "times the leading manager replica gets SIGKILL")
	flag.IntVar(&cfg.APIServerRestarts, "apiserver-restarts", cfg.APIServerRestarts, "kube-apiserver restarts (etcd kept)")
	flag.IntVar(&cfg.SlowAPIKills, "slow-api-kills", cfg.SlowAPIKills, "times the leading manager replica gets SIGKILL while etcd is paused for 2 s")
	flag.IntVar(&cfg.Pool, "pool", cfg.Pool, "warm pool target")
	flag.IntVar(&cfg.QuotaSessions, "quota-sessions", cfg.QuotaSessions, "AgentQuota hard.sessions")
	flag.DurationVar(&cfg.SessionLifetime, "session-lifetime", cfg.SessionLifetime, "each session's maxLifetime")
	flag.IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "simulated Windows nodes")
	flag.DurationVar(&cfg.LeaseDuration, "lease-duration", cfg.LeaseDuration, "manager --leader-elect-lease-duration")
	flag.DurationVar(&cfg.RenewDeadline, "renew-deadline", cfg.RenewDeadline, "manager --leader-elect-renew-deadline")
	flag.DurationVar(&cfg.RetryPeriod, "retry-period", cfg.RetryPeriod, "manager --leader-elect-retry-period")
	flag.DurationVar(&cfg.PoolRecoveryLimit, "pool-recovery-limit", cfg.PoolRecoveryLimit, "how soon after the last fault the pool must be back at target")
	flag.DurationVar(&cfg.LeadBetweenFaults, "lead-between-faults", cfg.LeadBetweenFaults, "how long a new leader leads before the next fault")
	keepLogs := flag.Bool("keep-logs", false, "keep the component and manager logs even when nothing was violated")
	auditDeletes := flag.Bool("audit-pod-deletes", false, "have kube-apiserver audit every pod deletion (who, by user agent) into audit.log next to the policy; implies -keep-logs")
	out := flag.String("out", filepath.Join("bin", "chaos-results", "chaos.json"), "the result file (test/results envelope) this run writes; docs/chaos.md renders from a kept one under docs/results")
	flag.Parse()
	record := results.Begin("chaos")
	// The watches' reconnects during the kube-apiserver restart would drown the figures.
	ctrllog.SetLogger(logr.Discard())
	klog.SetLogger(logr.Discard())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s chaos: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
	}
	cfg.Logf = logf

	opts := testbed.Options{}
	if *auditDeletes {
		*keepLogs = true
		dir, err := os.MkdirTemp("", "hyperpool-chaos-audit-")
		if err != nil {
			return 0, err
		}
		policy := filepath.Join(dir, "policy.yaml")
		if err := os.WriteFile(policy, []byte(auditPolicy), 0o644); err != nil {
			return 0, err
		}
		opts.APIServerFlags = map[string][]string{"audit-policy-file": {policy}, "audit-log-path": {filepath.Join(dir, "audit.log")}}
		logf("auditing pod deletions into %s", filepath.Join(dir, "audit.log"))
	}
	logf("starting the test bed")
	env, err := testbed.Start(ctx, opts)
	if err != nil {
		return 0, err
	}
	violations := 0
	defer func() {
		if violations > 0 || *keepLogs {
			env.KeepDir()
		}
		if err := env.Stop(); err != nil {
			logf("stop test bed: %v", err)
		}
	}()
	logf("test bed up in %s; building the manager", env.StartDuration.Round(time.Millisecond))
	cfg.ManagerBinary = filepath.Join(env.Dir, "manager")
	if err := bench.BuildManager(ctx, env.RepoRoot, cfg.ManagerBinary); err != nil {
		return 0, err
	}
	res, err := chaos.Run(ctx, env, cfg)
	if err != nil {
		env.KeepDir()
		return 0, err
	}
	res.Print(os.Stdout)
	violations = res.ViolationCount()
	// Kept whatever the verdict: a failing run's file is the evidence.
	if err := record.Write(*out, res); err != nil {
		return violations, fmt.Errorf("write the result file: %w", err)
	}
	logf("result written to %s", *out)
	if violations > 0 {
		fmt.Printf("FAIL: %s\n", res.Summary())
	} else {
		fmt.Printf("PASS: %s\n", res.Summary())
	}
	return violations, nil
}

// auditPolicy records every pod deletion, with its user agent (which names the
// kube-controller-manager controller, or hyperpool-manager), and nothing else.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [delete, deletecollection]
  resources:
  - group: ""
    resources: [pods]
- level: None
`
