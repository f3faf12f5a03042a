//go:build !windows

package chaos

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/hyperpool/hyperpool/test/testbed"
)

// schedule orders the faults: the kills with etcd paused first (early in the creation
// window, while binds are surely in flight), then the kube-apiserver restarts spread among
// the leader kills.
func schedule(kills, restarts, slowKills int) []string {
	out := make([]string, 0, kills+restarts+slowKills)
	for range kills {
		out = append(out, FaultKillLeader)
	}
	for j := range restarts {
		pos := min((j+1)*(kills+restarts)/(restarts+1), len(out))
		out = append(out[:pos], append([]string{FaultRestartAPIServer}, out[pos:]...)...)
	}
	slow := make([]string, 0, slowKills+len(out))
	for range slowKills {
		slow = append(slow, FaultKillLeaderSlowAPI)
	}
	return append(slow, out...)
}

// injectFaults injects the faults spread over the creation window: fault i at
// (i+1)/(n+1) of it, but never before the previous one is over and a leader has led again
// for cfg.LeadBetweenFaults.
func injectFaults(ctx context.Context, env *testbed.Env, rs *replicaSet, cfg Config, loadStart time.Time,
	window time.Duration, logf func(string, ...any)) ([]Fault, error) {
	kinds := schedule(cfg.LeaderKills, cfg.APIServerRestarts, cfg.SlowAPIKills)
	failover := 2*cfg.LeaseDuration + 60*time.Second
	var faults []Fault
	for i, kind := range kinds {
		due := loadStart.Add(time.Duration(i+1) * window / time.Duration(len(kinds)+1))
		if len(faults) > 0 {
			if led := faults[len(faults)-1].recovered.Add(cfg.LeadBetweenFaults); led.After(due) {
				due = led
			}
		}
		timer := time.NewTimer(time.Until(due))
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return faults, ctx.Err()
		}
		f, err := injectFault(ctx, env, rs, kind, failover)
		if err != nil {
			return faults, fmt.Errorf("fault %d: %w", i+1, err)
		}
		f.At = f.injected.Sub(loadStart)
		logf("fault %d/%d at t=%s: %s %s; a leader (%s) again after %s", i+1, len(kinds), f.At.Round(time.Millisecond),
			f.Kind, f.Detail, f.NewLeaderName, f.NewLeader.Round(time.Millisecond))
		faults = append(faults, f)
	}
	return faults, nil
}

// injectFault injects one fault of kind and waits until a leader leads again after it.
func injectFault(ctx context.Context, env *testbed.Env, rs *replicaSet, kind string, failover time.Duration) (Fault, error) {
	f := Fault{Kind: kind}
	var killed *replica
	var killedIncarnation int
	switch kind {
	case FaultKillLeader:
		leader, err := rs.waitForLeader(ctx, nil, 0, failover)
		if err != nil {
			return f, fmt.Errorf("before it: %w", err)
		}
		pid := leader.mgr.PID()
		f.injected = time.Now()
		if killedIncarnation, err = rs.killAndRestart(ctx, leader); err != nil {
			return f, fmt.Errorf("kill leader %s: %w", leader.name, err)
		}
		f.over, killed = f.injected, leader
		f.Detail = fmt.Sprintf("leader %s#%d (pid %d)", leader.name, killedIncarnation, pid)
	case FaultKillLeaderSlowAPI:
		leader, err := rs.waitForLeader(ctx, nil, 0, failover)
		if err != nil {
			return f, fmt.Errorf("before it: %w", err)
		}
		pid := leader.mgr.PID()
		f.injected = time.Now()
		killedIncarnation, f.APIDown, err = killWithEtcdPaused(ctx, env, rs, leader)
		if err != nil {
			return f, fmt.Errorf("kill leader %s with etcd paused: %w", leader.name, err)
		}
		f.over, killed = f.injected.Add(f.APIDown), leader
		f.Detail = fmt.Sprintf("leader %s#%d (pid %d)", leader.name, killedIncarnation, pid)
	case FaultRestartAPIServer:
		f.injected = time.Now()
		if err := env.RestartAPIServer(ctx); err != nil {
			return f, err
		}
		f.over = time.Now()
		f.APIDown = f.over.Sub(f.injected)
		f.Detail = "kube-apiserver (etcd kept)"
	default:
		return f, fmt.Errorf("unknown fault %q", kind)
	}
	next, err := rs.waitForLeader(ctx, killed, killedIncarnation, failover)
	if err != nil {
		return f, fmt.Errorf("after it (%s): %w", f.Detail, err)
	}
	f.recovered = time.Now()
	f.NewLeader, f.NewLeaderName = f.recovered.Sub(f.injected), fmt.Sprintf("%s#%d", next.name, next.incarnation)
	return f, nil
}

// killWithEtcdPaused pauses etcd (SIGSTOP), SIGKILLs leader while kube-apiserver cannot
// answer, and resumes etcd (SIGCONT) EtcdPause after the pause began, whatever happens
// meanwhile: the killed replica's restart may wait for the API server, and etcd must not
// stay stopped. It returns the killed incarnation and how long etcd was paused.
func killWithEtcdPaused(ctx context.Context, env *testbed.Env, rs *replicaSet, leader *replica) (int, time.Duration, error) {
	pid := env.PIDs()["etcd"]
	if pid == 0 {
		return 0, 0, fmt.Errorf("the test bed does not report etcd's PID")
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return 0, 0, fmt.Errorf("pause etcd (pid %d): %w", pid, err)
	}
	paused := time.Now()
	var once sync.Once
	var pausedFor time.Duration
	resumed := make(chan struct{})
	resume := func() {
		once.Do(func() {
			_ = syscall.Kill(pid, syscall.SIGCONT)
			pausedFor = time.Since(paused)
			close(resumed)
		})
	}
	defer resume()
	// The pause is the fault itself (the API server is slow for that long), not a wait for
	// a condition.
	timer := time.AfterFunc(EtcdPause, resume)
	defer timer.Stop()
	// In the middle of the pause: the leader's writes of the burst are stuck in flight.
	select {
	case <-time.After(EtcdPause / 2):
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
	killed, err := rs.killAndRestart(ctx, leader)
	<-resumed // the timer's, unless the restart outlasted the pause
	return killed, pausedFor, err
}
