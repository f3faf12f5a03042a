//go:build !windows

package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hyperpool/hyperpool/test/bench"
)

// LeaseName is the manager's leader-election Lease (its LeaderElectionID).
const LeaseName = "hyperpool-manager.agents.hyperpool.io"

// leaderMetric is controller-runtime's gauge: 1 while this process leads.
const leaderMetric = "leader_election_master_status"

// replicaStartTimeout bounds one attempt to start a manager replica (until /readyz).
const replicaStartTimeout = 60 * time.Second

// replica is one slot of the manager deployment: a process, restarted in place when it dies.
type replica struct {
	name        string // "a", "b"
	incarnation int
	mgr         *bench.Manager
	identity    string // its Lease holderIdentity, once seen leading
}

// replicaSet runs the manager binary as two processes with leader election, like a
// Deployment of two, and restarts any that dies.
type replicaSet struct {
	binary, kubeconfig, logDir string
	leaseNamespace             string
	extraFlags                 []string
	client                     client.Client
	http                       *http.Client
	logf                       func(string, ...any)

	mu       sync.Mutex
	replicas []*replica
	// restarts counts replicas started again after a SIGKILL (planned) or after they
	// exited on their own (unplanned: a leader that lost its Lease exits, by design).
	plannedRestarts, unplannedExits int
}

func (rs *replicaSet) managerFlags() []string {
	return append([]string{"--leader-elect", "--leader-election-namespace=" + rs.leaseNamespace}, rs.extraFlags...)
}

// start brings up both replicas.
func (rs *replicaSet) start(ctx context.Context, names ...string) error {
	for _, n := range names {
		r := &replica{name: n}
		if err := rs.launch(ctx, r); err != nil {
			return err
		}
		rs.mu.Lock()
		rs.replicas = append(rs.replicas, r)
		rs.mu.Unlock()
	}
	return nil
}

// launch starts a new incarnation of r, retrying while the API server is away (a manager
// that cannot reach it exits at once).
func (rs *replicaSet) launch(ctx context.Context, r *replica) error {
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, replicaStartTimeout, true, func(ctx context.Context) (bool, error) {
		r.incarnation++
		logPath := filepath.Join(rs.logDir, fmt.Sprintf("manager-%s-%d.log", r.name, r.incarnation))
		m, err := bench.StartManager(ctx, rs.binary, rs.kubeconfig, logPath, 200, 400, rs.managerFlags()...)
		if err != nil {
			lastErr = err
			return false, nil
		}
		r.mgr, r.identity = m, ""
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("start manager replica %s: %w (last error: %w)", r.name, err, lastErr)
	}
	return nil
}

// exited reports whether the replica's process is gone (reaped by bench.Manager's waiter).
func (r *replica) exited() bool {
	return errors.Is(syscall.Kill(r.mgr.PID(), 0), syscall.ESRCH)
}

// supervise restarts replicas that exited on their own until ctx ends, as a Deployment
// would. It polls: bench.Manager does not publish its exit.
func (rs *replicaSet) supervise(ctx context.Context) {
	_ = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, false, func(ctx context.Context) (bool, error) {
		rs.mu.Lock()
		defer rs.mu.Unlock()
		for _, r := range rs.replicas {
			if !r.exited() {
				continue
			}
			rs.unplannedExits++
			rs.logf("replica %s (pid %d) exited on its own; restarting it", r.name, r.mgr.PID())
			if err := rs.launch(ctx, r); err != nil && ctx.Err() == nil {
				rs.logf("%v", err)
			}
		}
		return false, nil
	})
}

// leader returns the replica that holds the Lease, or nil when none does now: the Lease's
// holderIdentity names a process (hostname_uuid), learned the first time exactly one live
// replica reports leader_election_master_status 1 while the Lease names that identity.
func (rs *replicaSet) leader(ctx context.Context) (*replica, error) {
	holder, err := rs.leaseHolder(ctx)
	if err != nil || holder == "" {
		return nil, err
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for _, r := range rs.replicas {
		if r.identity == holder {
			if r.exited() {
				return nil, nil // a dead leader's Lease, not yet taken over
			}
			return r, nil
		}
	}
	var leading []*replica
	for _, r := range rs.replicas {
		if r.exited() {
			continue
		}
		if lead, err := rs.reportsLeading(ctx, r); err == nil && lead {
			leading = append(leading, r)
		}
	}
	if len(leading) != 1 || leading[0].identity != "" {
		return nil, nil
	}
	// A replica that reports leading has written the Lease before the scrape: if the
	// Lease still names the same holder now, that holder is this replica.
	if again, err := rs.leaseHolder(ctx); err != nil || again != holder {
		return nil, err
	}
	leading[0].identity = holder
	return leading[0], nil
}

// leaseHolder reads the Lease's holderIdentity from the API server ("" if none).
func (rs *replicaSet) leaseHolder(ctx context.Context) (string, error) {
	lease := &coordinationv1.Lease{}
	if err := rs.client.Get(ctx, client.ObjectKey{Namespace: rs.leaseNamespace, Name: LeaseName}, lease); err != nil {
		return "", client.IgnoreNotFound(err)
	}
	if lease.Spec.HolderIdentity == nil {
		return "", nil
	}
	return *lease.Spec.HolderIdentity, nil
}

// waitForLeader waits until a live replica other than not holds the Lease.
func (rs *replicaSet) waitForLeader(ctx context.Context, not *replica, notIncarnation int, timeout time.Duration) (*replica, error) {
	var found *replica
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		r, err := rs.leader(ctx)
		if err != nil {
			lastErr = err
			return false, nil
		}
		if r == nil || (r == not && r.incarnation == notIncarnation) {
			return false, nil
		}
		found = r
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("no new leader within %s (last error: %w)", timeout, lastErr)
	}
	return found, nil
}

// reportsLeading scrapes the replica's leader-election gauge.
func (rs *replicaSet) reportsLeading(ctx context.Context, r *replica) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.mgr.MetricsURL, nil)
	if err != nil {
		return false, err
	}
	resp, err := rs.http.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<22)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, leaderMetric+"{") || !strings.Contains(line, `name="`+LeaseName+`"`) {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		return err == nil && v == 1, err
	}
	return false, sc.Err()
}

// killAndRestart SIGKILLs r and starts it again; it returns the killed incarnation.
func (rs *replicaSet) killAndRestart(ctx context.Context, r *replica) (int, error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	killed := r.incarnation
	if err := r.mgr.Kill(); err != nil {
		return killed, err
	}
	rs.plannedRestarts++
	return killed, rs.launch(ctx, r)
}

// stop stops every replica (SIGTERM, then SIGKILL).
func (rs *replicaSet) stop() {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for _, r := range rs.replicas {
		if r.mgr != nil {
			_ = r.mgr.Stop()
		}
	}
}

// counts returns the restart figures.
func (rs *replicaSet) counts() (planned, unplanned int) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.plannedRestarts, rs.unplannedExits
}
