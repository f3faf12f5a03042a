//go:build !windows

// Package chaos is hyperpool's chaos test: sessions are created at a steady rate against
// a warm pool and a quota while the manager's leader is killed with SIGKILL and the
// kube-apiserver is restarted, and an independent watch checks, on every event and at the
// end, what must hold through it all: no pod bound to two sessions, no session holding two
// pods, every session Ready, Queued or ended with a reason, the quota never exceeded, the
// pool never over its target nor over-created and back at target soon after the last
// fault, and no pod left behind once the sessions are deleted.
//
// The manager runs as the real binary, two replicas with leader election, as in a
// Deployment; the test bed (package testbed) provides etcd, kube-apiserver,
// kube-scheduler, kube-controller-manager and kwok's simulated Windows nodes. Run builds
// nothing and starts no test bed: cmd/chaos does both for `make chaos` at full size, and
// chaos_test.go runs a small version inside `make test`.
package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/podstate"
	"github.com/hyperpool/hyperpool/test/builders"
	"github.com/hyperpool/hyperpool/test/testbed"
)

// WindowsBuild is the build of the simulated nodes and of the pool's image.
const WindowsBuild = "10.0.20348"

// poolName is the AgentSandbox whose warm pool the sessions use.
const poolName = "pool"

// Fault kinds.
const (
	FaultKillLeader       = "kill-leader"
	FaultRestartAPIServer = "restart-apiserver"
	// FaultKillLeaderSlowAPI kills the leader in the middle of the bind burst while etcd is
	// paused (SIGSTOP) for EtcdPause, so that kube-apiserver answers slowly or not at all:
	// writes the leader had in flight land, or not, while it dies.
	FaultKillLeaderSlowAPI = "kill-leader-etcd-paused"
)

// EtcdPause is how long etcd stays paused around a FaultKillLeaderSlowAPI.
const EtcdPause = 2 * time.Second

// Config sizes one chaos run. It is kept in the run's result file; durations are in
// nanoseconds there.
type Config struct {
	// Sessions are created at Rate per second, open loop (the schedule does not wait).
	Sessions int     `json:"sessions"`
	Rate     float64 `json:"rate"`
	// LeaderKills is how many times the leading replica gets SIGKILL (and is restarted);
	// APIServerRestarts how many times kube-apiserver restarts with etcd kept.
	LeaderKills       int `json:"leaderKills"`
	APIServerRestarts int `json:"apiServerRestarts"`
	// SlowAPIKills is how many times the leader gets SIGKILL while etcd is paused.
	SlowAPIKills int `json:"slowAPIKills"`
	// Pool is the warm pool's target (AgentSandbox spec.replicas).
	Pool int `json:"pool"`
	// QuotaSessions is the namespace's AgentQuota hard.sessions; lower than the sessions
	// alive at once, so sessions queue and are admitted as others end.
	QuotaSessions int `json:"quotaSessions"`
	// SessionLifetime is each session's maxLifetime.
	SessionLifetime time.Duration `json:"sessionLifetime"`
	// Nodes is how many simulated Windows nodes to create.
	Nodes int `json:"nodes"`
	// Leader election timings passed to both replicas.
	LeaseDuration time.Duration `json:"leaseDuration"`
	RenewDeadline time.Duration `json:"renewDeadline"`
	RetryPeriod   time.Duration `json:"retryPeriod"`
	// PoolRecoveryLimit is how soon after the last fault the pool must be back at target.
	PoolRecoveryLimit time.Duration `json:"poolRecoveryLimit"`
	// LeadBetweenFaults is how long the leader after a fault leads before the next fault,
	// so that each kill hits a leader that has been acting: back to back (each failover
	// takes about a Lease duration, more than the creation window leaves between five
	// faults), the faults would be one long outage in which no manager acts.
	LeadBetweenFaults time.Duration `json:"leadBetweenFaults"`
	// ManagerBinary is the built cmd/manager.
	ManagerBinary string `json:"-"`
	// Logf reports progress; nil is silent.
	Logf func(format string, args ...any) `json:"-"`
}

// FullConfig is the size of issue 8 with the fault of issue 25: 1,000 sessions at 50/s, a
// leader kill while etcd is paused, three more leader kills, one kube-apiserver restart.
func FullConfig() Config {
	return Config{Sessions: 1000, Rate: 50, LeaderKills: 3, APIServerRestarts: 1, SlowAPIKills: 1, Pool: 20, QuotaSessions: 100,
		SessionLifetime: 3 * time.Second, Nodes: 6, LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second,
		RetryPeriod: 500 * time.Millisecond, PoolRecoveryLimit: 10 * time.Second, LeadBetweenFaults: 5 * time.Second}
}

// ShortConfig fits `make test`: one plain leader kill and the kube-apiserver restart, 150
// sessions; the kill with etcd paused is left to `make chaos`. Inside `make test` other
// packages share the machine, so the pool's recovery limit is loose there: the short run
// checks correctness, the full one also the timing.
func ShortConfig() Config {
	c := FullConfig()
	c.Sessions, c.Rate, c.LeaderKills, c.SlowAPIKills, c.Pool, c.QuotaSessions, c.Nodes = 150, 15, 1, 0, 10, 25, 2
	c.PoolRecoveryLimit = 30 * time.Second
	return c
}

// Fault is one injected fault and how the system came back.
type Fault struct {
	Kind string `json:"kind"`
	// At is when it was injected, from the start of the load.
	At time.Duration `json:"at"`
	// Detail names what was hit: the replica and PID, or kube-apiserver.
	Detail string `json:"detail"`
	// APIDown is how long kube-apiserver was away (restarts only), or etcd paused (kills
	// with etcd paused).
	APIDown time.Duration `json:"apiDown,omitempty"`
	// NewLeader is how long after injection a live replica held the Lease again, and
	// which one.
	NewLeader     time.Duration `json:"newLeader"`
	NewLeaderName string        `json:"newLeaderName"`
	// injected is when it was injected; over is when the fault itself was over: the kill
	// (instant), etcd resumed, or kube-apiserver ready again; recovered is when a leader led
	// again after it.
	injected, over, recovered time.Time
}

// Result is what a run measured and found; cmd/chaos keeps it in a result file
// (test/results), from which RenderDoc renders docs/chaos.md's tables. Durations are in
// nanoseconds there.
type Result struct {
	Config        Config  `json:"config"`
	Faults        []Fault `json:"faults"`
	Created       int     `json:"created"`
	CreateRetries int     `json:"createRetries"`
	// Outcomes counts sessions by final phase and end reason ("Expired/MaxLifetime").
	Outcomes map[string]int `json:"outcomes"`
	// UnusualEnds describe (the first few) sessions that did not end by their max lifetime
	// (each also a SessionNotExpired violation).
	UnusualEnds []string `json:"unusualEnds,omitempty"`
	// MaxEndLag is the longest time from a session's true deadline (its stored precise bind
	// plus its maxLifetime; not the whole-second status.expiryTime) to the watch seeing it
	// ended; LivenessBound is the most it may be.
	MaxEndLag     time.Duration `json:"maxEndLag"`
	LivenessBound time.Duration `json:"livenessBound"`
	// SuspicionsResolved counts the counts over a limit that were checked against a List at
	// their revision; Unconfirmed counts, by kind, those the List did not show over the
	// limit (the watch's passing view while relisting).
	SuspicionsResolved int            `json:"suspicionsResolved"`
	Unconfirmed        map[string]int `json:"unconfirmed,omitempty"`
	WarmBinds          int            `json:"warmBinds"`
	ColdPods           int            `json:"coldPods"`
	// PoolCreated are the pods the pool created; PoolAllowed the most it needed (its
	// target plus one replacement per warm bind); WarmReplaced those it deleted unbound.
	PoolCreated     int `json:"poolCreated"`
	PoolAllowed     int `json:"poolAllowed"`
	WarmReplaced    int `json:"warmReplaced"`
	PeakWarm        int `json:"peakWarm"`
	PeakActive      int `json:"peakActive"`
	PlannedRestarts int `json:"plannedRestarts"`
	UnplannedExits  int `json:"unplannedExits"`
	// Checks counts every check made; InvariantsChecked names, in order, every kind of
	// violation the run checked for, so a table can show the kinds with none.
	Checks            int64               `json:"checks"`
	InvariantsChecked []string            `json:"invariantsChecked"`
	Violations        map[string]int      `json:"violations"`
	Examples          map[string][]string `json:"examples,omitempty"`
	// PoolAtTargetAfterLastFault is -1 if the pool never got back to its target.
	PoolAtTargetAfterLastFault time.Duration `json:"poolAtTargetAfterLastFault"`
	ReadyAfterLoad             time.Duration `json:"readyAfterLoad"`
	OrphansGoneAfterDrop       time.Duration `json:"orphansGoneAfterDrop"`
	Duration                   time.Duration `json:"duration"`
}

// ViolationCount is the number of broken invariants, all kinds together.
func (r *Result) ViolationCount() int {
	n := 0
	for _, v := range r.Violations {
		n += v
	}
	return n
}

// Run runs one chaos scenario on env in a new namespace and returns what it found. An
// error means the run itself could not be carried out; broken invariants are in Result.
func Run(ctx context.Context, env *testbed.Env, cfg Config) (*Result, error) {
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	begin := time.Now()
	c, err := driverClient(env)
	if err != nil {
		return nil, err
	}
	ns, err := setup(ctx, env, c, cfg)
	if err != nil {
		return nil, err
	}
	logf("namespace %s: %d nodes, pool %d, quota %d sessions", ns, cfg.Nodes, cfg.Pool, cfg.QuotaSessions)

	obsCtx, stopObserver := context.WithCancel(context.Background())
	defer stopObserver()
	obs := newObserver(ns, poolName, cfg.Pool, cfg.QuotaSessions)
	if err := obs.start(obsCtx, env.Config, c); err != nil {
		return nil, err
	}

	httpClient := &http.Client{Timeout: 2 * time.Second}
	rs := &replicaSet{binary: cfg.ManagerBinary, kubeconfig: env.KubeconfigPath, logDir: env.LogDir,
		leaseNamespace: ns, client: c, http: httpClient, logf: logf, extraFlags: []string{
			"--leader-elect-lease-duration=" + cfg.LeaseDuration.String(),
			"--leader-elect-renew-deadline=" + cfg.RenewDeadline.String(),
			"--leader-elect-retry-period=" + cfg.RetryPeriod.String(),
			"--pool-book-audit-interval=" + bookAuditInterval.String(),
		}}
	// The replicas must stop before the test bed does, whatever happens here.
	defer rs.stop()
	if err := rs.start(ctx, "a", "b"); err != nil {
		return nil, err
	}
	superviseCtx, stopSupervising := context.WithCancel(ctx)
	supervised := make(chan struct{})
	go func() { defer close(supervised); rs.supervise(superviseCtx) }()
	defer func() { stopSupervising(); <-supervised }()

	leader, err := rs.waitForLeader(ctx, nil, 0, 2*cfg.LeaseDuration+30*time.Second)
	if err != nil {
		return nil, err
	}
	logf("replica %s leads; waiting for a Ready pool of %d", leader.name, cfg.Pool)
	if err := waitCtx(ctx, 90*time.Second, func(ctx context.Context) error {
		return obs.WaitUntil(ctx, func() bool { return obs.readyWarm == cfg.Pool })
	}); err != nil {
		return nil, fmt.Errorf("pool of %d not Ready before the load: %w", cfg.Pool, err)
	}

	res := &Result{Config: cfg}
	loadStart := time.Now()
	names := make([]string, cfg.Sessions)
	for i := range names {
		names[i] = fmt.Sprintf("s-%04d", i)
	}
	var retries atomic.Int64
	var created atomic.Int64
	creating := make(chan struct{})
	go func() {
		defer close(creating)
		createPaced(ctx, c, ns, names, cfg, &created, &retries)
	}()

	window := time.Duration(float64(cfg.Sessions) / cfg.Rate * float64(time.Second))
	faults, faultErr := injectFaults(ctx, env, rs, cfg, loadStart, window, logf)
	res.Faults = faults
	<-creating
	res.Created, res.CreateRetries = int(created.Load()), int(retries.Load())
	logf("created %d sessions (%d create retries) in %s", res.Created, res.CreateRetries, time.Since(loadStart).Round(time.Millisecond))
	if faultErr != nil {
		return nil, faultErr
	}

	// Pools back at target after the last fault: from the end of the fault (the kill, or
	// kube-apiserver ready again) to the first moment the pool is at target once a leader
	// leads again (before that, nothing refills it). Failover is part of that time.
	res.PoolAtTargetAfterLastFault = -1
	if len(faults) > 0 {
		last := faults[len(faults)-1]
		limit := cfg.PoolRecoveryLimit
		_ = waitCtx(ctx, limit+20*time.Second, func(ctx context.Context) error {
			return obs.WaitUntil(ctx, func() bool { _, ok := obs.poolAtTargetAfterLocked(last.recovered); return ok })
		})
		if at, ok := obs.poolAtTargetAfter(last.recovered); ok {
			res.PoolAtTargetAfterLastFault = at.Sub(last.over)
		}
		obs.countCheck(1)
		if res.PoolAtTargetAfterLastFault < 0 || res.PoolAtTargetAfterLastFault > limit {
			obs.record(PoolNotRecovered, "pool back at target %s after the last fault, limit %s", describeDuration(res.PoolAtTargetAfterLastFault), limit)
		}
	}

	// Every session ends: the queue drains as sessions reach their max lifetime.
	settleTimeout := 2*time.Minute + 3*time.Duration(float64(cfg.Sessions)/float64(cfg.QuotaSessions)*float64(cfg.SessionLifetime+time.Second))
	logf("waiting up to %s for every session to end", settleTimeout.Round(time.Second))
	stopProgress := reportProgress(obs, logf)
	if err := waitCtx(ctx, settleTimeout, func(ctx context.Context) error {
		return obs.WaitUntil(ctx, func() bool { return len(obs.unsettledLocked(names)) == 0 })
	}); err != nil {
		obs.recordUnsettled(names, settleTimeout)
	}
	stopProgress()
	res.ReadyAfterLoad = time.Since(loadStart)
	obs.checkLiveness(names)
	if err := finalChecks(ctx, c, ns, names, obs); err != nil {
		return nil, err
	}
	obs.checkOverCreation()

	logf("deleting every session; no pod may outlive its session")
	dropStart := time.Now()
	if err := dropSessions(ctx, c, ns, obs); err != nil {
		return nil, err
	}
	res.OrphansGoneAfterDrop = time.Since(dropStart)
	if err := checkPoolAtEnd(ctx, c, ns, cfg.Pool, obs); err != nil {
		return nil, err
	}
	if err := checkPoolBookAudits(ctx, c, ns, env.LogDir, obs); err != nil {
		return nil, err
	}

	obs.drainSuspicions(ctx, suspicionDrainTimeout)
	f := obs.figures()
	res.Checks, res.Violations, res.Examples, res.Outcomes = f.checks, f.counts, f.examples, f.outcomes
	res.MaxEndLag, res.LivenessBound, res.SuspicionsResolved = f.maxEndLag, livenessBound, f.suspicionsResolved
	res.UnusualEnds, res.Unconfirmed = f.unusualEnds, f.unconfirmed
	res.WarmBinds, res.ColdPods, res.PoolCreated, res.WarmReplaced = f.warmBinds, f.coldPods, f.poolCreated, f.warmReplaced
	res.PoolAllowed, res.InvariantsChecked = cfg.Pool+f.warmBinds, slices.Clone(Invariants)
	res.PeakWarm, res.PeakActive = f.peakWarm, f.peakActive
	res.PlannedRestarts, res.UnplannedExits = rs.counts()
	res.Duration = time.Since(begin)
	return res, nil
}

// suspicionDrainTimeout bounds the wait, at the end, for the suspicions still queued to be
// resolved; kube-apiserver is up by then, so each takes one List.
const suspicionDrainTimeout = 60 * time.Second

// progressInterval is how often a long wait reports the sessions' phases.
const progressInterval = 10 * time.Second

// reportProgress logs the sessions' phases every progressInterval until the returned
// function is called.
func reportProgress(obs *observer, logf func(string, ...any)) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		ticker := time.NewTicker(progressInterval)
		defer ticker.Stop()
		for {
			select {
			case <-done:
				return
			case <-ticker.C:
				logf("sessions: %s", obs.phases())
			}
		}
	}()
	return func() { close(done); <-finished }
}

// driverClient is the chaos driver's own uncached client, with rate limits that never
// throttle it.
func driverClient(env *testbed.Env) (client.Client, error) {
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = 5000, 10000
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		return nil, fmt.Errorf("chaos client: %w", err)
	}
	return c, nil
}

// setup creates the namespace, the nodes, the RuntimeClass, the quota and the pool.
func setup(ctx context.Context, env *testbed.Env, c client.Client, cfg Config) (string, error) {
	ns := fmt.Sprintf("chaos-%05d", rand.IntN(100000))
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return "", fmt.Errorf("create namespace %s: %w", ns, err)
	}
	if err := waitCtx(ctx, 30*time.Second, func(ctx context.Context) error {
		return wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			return c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "default"}, &corev1.ServiceAccount{}) == nil, nil
		})
	}); err != nil {
		return "", fmt.Errorf("namespace %s: no default ServiceAccount: %w", ns, err)
	}
	if _, err := env.CreateWindowsNodes(ctx, ns, cfg.Nodes, WindowsBuild); err != nil {
		return "", err
	}
	rc := &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "hyperv"}, Handler: "runhcs-wcow-hypervisor"}
	if err := c.Create(ctx, rc); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create RuntimeClass hyperv: %w", err)
	}
	if err := c.Create(ctx, builders.AgentQuota(ns, "chaos").Sessions(int32(cfg.QuotaSessions)).Obj()); err != nil {
		return "", fmt.Errorf("create AgentQuota: %w", err)
	}
	// No memory limit: each VM takes hcsshim's default size.
	if err := c.Create(ctx, builders.AgentSandbox(ns, poolName).Replicas(int32(cfg.Pool)).NoMemoryLimit().Obj()); err != nil {
		return "", fmt.Errorf("create AgentSandbox: %w", err)
	}
	return ns, nil
}

// createPaced creates the sessions at cfg.Rate per second. Each create is retried until it
// succeeds (kube-apiserver may be restarting); AlreadyExists on a retry means an earlier
// attempt got through.
func createPaced(ctx context.Context, c client.Client, ns string, names []string, cfg Config, created, retries *atomic.Int64) {
	ticker := time.NewTicker(time.Duration(float64(time.Second) / cfg.Rate))
	defer ticker.Stop()
	var wg sync.WaitGroup
	for i, name := range names {
		if i > 0 {
			select {
			case <-ticker.C:
			case <-ctx.Done():
				wg.Wait()
				return
			}
		}
		wg.Go(func() {
			s := builders.AgentSession(ns, name, poolName).MaxLifetime(cfg.SessionLifetime).Obj()
			attempt := 0
			_ = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
				if attempt > 0 {
					retries.Add(1)
				}
				attempt++
				err := c.Create(ctx, s.DeepCopy())
				if err == nil || (attempt > 1 && apierrors.IsAlreadyExists(err)) {
					created.Add(1)
					return true, nil
				}
				return false, nil
			})
		})
	}
	wg.Wait()
}

// finalChecks reads every session from the API server once the run waited for them all
// to end: each must have ended, with a reason. Ready or Queued is a violation here: the
// session outlived the wait.
func finalChecks(ctx context.Context, c client.Reader, ns string, names []string, obs *observer) error {
	list := &agentsv1alpha1.AgentSessionList{}
	if err := listWithRetry(ctx, c, list, client.InNamespace(ns)); err != nil {
		return fmt.Errorf("list sessions for the final check: %w", err)
	}
	byName := map[string]*agentsv1alpha1.AgentSession{}
	for i := range list.Items {
		byName[list.Items[i].Name] = &list.Items[i]
	}
	for _, n := range names {
		obs.countCheck(1)
		s := byName[n]
		switch {
		case s == nil:
			obs.record(SessionUnsettled, "session %s does not exist", n)
		case s.Status.Phase.IsFinished() && s.Status.EndReason != "":
		default:
			obs.record(SessionUnsettled, "session %s: phase %q, endReason %q", n, s.Status.Phase, s.Status.EndReason)
		}
	}
	return nil
}

// dropSessions deletes every session and waits until no pod bound to a session is left;
// those still there after the wait are orphans.
func dropSessions(ctx context.Context, c client.Client, ns string, obs *observer) error {
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		return c.DeleteAllOf(ctx, &agentsv1alpha1.AgentSession{}, client.InNamespace(ns)) == nil, nil
	})
	if err != nil {
		return fmt.Errorf("delete the sessions: %w", err)
	}
	var leftover []corev1.Pod
	_ = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		pods := &corev1.PodList{}
		if err := c.List(ctx, pods, client.InNamespace(ns)); err != nil {
			return false, nil
		}
		leftover = leftover[:0]
		for _, p := range pods.Items {
			if !isPoolPod(&p) {
				leftover = append(leftover, p)
			}
		}
		return len(leftover) == 0, nil
	})
	for _, p := range leftover {
		obs.record(OrphanPod, "pod %s (session label %q, owner %v) still there 60 s after the sessions were deleted",
			p.Name, p.Labels[agentsv1alpha1.SessionLabel], ownerNames(&p))
	}
	obs.countCheck(1)
	return nil
}

// isPoolPod reports whether p is a warm pod of the pool: owned by the AgentSandbox, bound
// to no session.
func isPoolPod(p *corev1.Pod) bool {
	owner := metav1.GetControllerOf(p)
	return p.Labels[agentsv1alpha1.SessionLabel] == "" && owner != nil && owner.Kind == "AgentSandbox" && owner.Name == poolName
}

func ownerNames(p *corev1.Pod) []string {
	var out []string
	for _, o := range p.OwnerReferences {
		out = append(out, o.Kind+"/"+o.Name)
	}
	return out
}

// checkPoolAtEnd waits until the API server shows exactly the target number of live,
// Ready warm pods.
func checkPoolAtEnd(ctx context.Context, c client.Client, ns string, target int, obs *observer) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		pods := &corev1.PodList{}
		if err := c.List(ctx, pods, client.InNamespace(ns)); err != nil {
			return false, nil
		}
		live, ready := 0, 0
		for i := range pods.Items {
			p := &pods.Items[i]
			if isPoolPod(p) && p.DeletionTimestamp.IsZero() {
				live++
				if podstate.Ready(p) {
					ready++
				}
			}
		}
		last = fmt.Sprintf("%d live warm pods, %d Ready; target %d", live, ready, target)
		return live == target && ready == target, nil
	})
	obs.countCheck(1)
	if err != nil {
		obs.record(PoolNotAtTargetEnd, "%s", last)
	}
	return nil
}

func listWithRetry(ctx context.Context, c client.Reader, list client.ObjectList, opts ...client.ListOption) error {
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		lastErr = c.List(ctx, list, opts...)
		return lastErr == nil, nil
	})
	if err != nil {
		return errors.Join(err, lastErr)
	}
	return nil
}

// waitCtx runs f with a context that ends after timeout.
func waitCtx(ctx context.Context, timeout time.Duration, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return f(ctx)
}

func describeDuration(d time.Duration) string {
	if d < 0 {
		return "never"
	}
	return d.Round(time.Millisecond).String()
}

// Print writes the run's figures.
func (r *Result) Print(w io.Writer) {
	c := r.Config
	fmt.Fprintf(w, "chaos: %d sessions at %g/s (maxLifetime %s), pool %d, quota %d sessions, %d nodes; 2 manager replicas, lease %s/%s/%s\n",
		c.Sessions, c.Rate, c.SessionLifetime, c.Pool, c.QuotaSessions, c.Nodes, c.LeaseDuration, c.RenewDeadline, c.RetryPeriod)
	fmt.Fprintf(w, "faults injected: %d\n", len(r.Faults))
	for _, f := range r.Faults {
		extra := ""
		switch f.Kind {
		case FaultRestartAPIServer:
			extra = fmt.Sprintf(", API down %s", f.APIDown.Round(time.Millisecond))
		case FaultKillLeaderSlowAPI:
			extra = fmt.Sprintf(", etcd paused %s", f.APIDown.Round(time.Millisecond))
		}
		fmt.Fprintf(w, "  t=%-8s %-23s %s%s; leader %s after %s\n", f.At.Round(time.Millisecond), f.Kind, f.Detail, extra,
			f.NewLeaderName, f.NewLeader.Round(time.Millisecond))
	}
	fmt.Fprintf(w, "replicas: %d restarted after SIGKILL, %d exited on their own and were restarted\n", r.PlannedRestarts, r.UnplannedExits)
	fmt.Fprintf(w, "sessions: %d created (%d create retries); outcomes: %s\n", r.Created, r.CreateRetries, joinOutcomes(r.Outcomes))
	fmt.Fprintf(w, "longest from a deadline to the session seen ended: %s (bound %s)\n", r.MaxEndLag.Round(time.Millisecond), r.LivenessBound)
	fmt.Fprintf(w, "binds: %d warm, %d cold pods; peak active sessions %d (quota %d)\n", r.WarmBinds, r.ColdPods, r.PeakActive, c.QuotaSessions)
	fmt.Fprintf(w, "pool: created %d pods, allowed %d (target %d + %d warm binds), deleted %d unbound; peak live warm %d (target %d)\n",
		r.PoolCreated, r.PoolAllowed, c.Pool, r.WarmBinds, r.WarmReplaced, r.PeakWarm, c.Pool)
	fmt.Fprintf(w, "pool at target %s after the last fault ended (limit %s)\n", describeDuration(r.PoolAtTargetAfterLastFault), c.PoolRecoveryLimit)
	fmt.Fprintf(w, "all sessions ended %s after the load began; bound pods gone %s after the sessions were deleted\n",
		r.ReadyAfterLoad.Round(time.Millisecond), r.OrphansGoneAfterDrop.Round(time.Millisecond))
	fmt.Fprintf(w, "checks performed: %d\n", r.Checks)
	fmt.Fprintf(w, "over-limit counts checked against a List at their revision: %d", r.SuspicionsResolved)
	if len(r.Unconfirmed) > 0 {
		fmt.Fprintf(w, "; not over the limit there (the watch's passing view while relisting): %s", joinOutcomes(r.Unconfirmed))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "violations: %d\n", r.ViolationCount())
	for _, kind := range sortedKeys(r.Violations) {
		fmt.Fprintf(w, "  %s: %d\n", kind, r.Violations[kind])
		for _, ex := range r.Examples[kind] {
			fmt.Fprintf(w, "    %s\n", ex)
		}
	}
	fmt.Fprintf(w, "duration: %s\n", r.Duration.Round(time.Millisecond))
}

// Summary is the run's one-line verdict.
func (r *Result) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d faults, %d sessions, %d checks, %d violations", len(r.Faults), r.Created, r.Checks, r.ViolationCount())
	return b.String()
}

// bookAuditInterval is how often the chaos run's managers compare their pool book with
// their cache (--pool-book-audit-interval): every few seconds, through every fault.
const bookAuditInterval = 3 * time.Second

// checkPoolBookAudits fails the run on any drift a manager's audit found: a PoolBookDrift
// Event in the namespace, or the audit's error in any manager's log. The audits must have
// run, or the check would pass on nothing.
func checkPoolBookAudits(ctx context.Context, c client.Reader, ns, logDir string, obs *observer) error {
	obs.countCheck(1)
	events := &eventsv1.EventList{}
	if err := listWithRetry(ctx, c, events, client.InNamespace(ns)); err != nil {
		return fmt.Errorf("list events for the pool book check: %w", err)
	}
	for _, e := range events.Items {
		if e.Reason == "PoolBookDrift" {
			obs.record(PoolBookDrift, "Event on %s: %s", e.Regarding.Name, e.Note)
		}
	}
	logs, err := filepath.Glob(filepath.Join(logDir, "manager-*.log"))
	if err != nil {
		return err
	}
	audits := 0
	for _, path := range logs {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		audits += bytes.Count(b, []byte("audited the pool book"))
		for _, line := range bytes.Split(b, []byte("\n")) {
			if bytes.Contains(line, []byte("the pool book differs from the cache")) {
				obs.record(PoolBookDrift, "%s: %s", filepath.Base(path), line)
			}
		}
	}
	if audits == 0 {
		obs.record(PoolBookDrift, "no manager log shows a pool book audit (every %s): the check ran on nothing", bookAuditInterval)
	}
	return nil
}
