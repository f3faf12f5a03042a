//go:build !windows

package controller

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/podstate"
	"github.com/hyperpool/hyperpool/test/builders"
)

// countsInterval is the manager's poolCountsInterval: the least time between two status
// writes of one pool that only move its counts.
const countsInterval = time.Second

// TestPoolStatusWritesPerBindAreThrottled binds sessions one at a time, each after the
// previous take's refill is Ready, so every take turns the pool's Ready condition from
// PoolReady to PoolFilling and every refill turns it back. Those flips say no more than the
// counts, so the pool's status is written at most once per countsInterval however many
// binds there are (written at once, they were about two writes per bind). The final state
// is still written: the pool ends Ready with its counts right.
func TestPoolStatusWritesPerBindAreThrottled(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	const pool, replicas, binds = "writes", 3, 8
	create(t, builders.AgentSandbox(ns, pool).Replicas(replicas).Obj())
	waitPoolReady(t, ns, pool, replicas, waitTimeout)

	writes := watchStatusWrites(t, ns, pool)
	start := time.Now()
	for i := range binds {
		name := fmt.Sprintf("s-%d", i)
		create(t, builders.AgentSession(ns, name, pool).Obj())
		waitSession(t, ns, name, waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
		// The refill, read from the pods, not from the pool's status, which may lag by design.
		eventually(t, waitTimeout, func(context.Context) (bool, string) {
			ready := 0
			for _, p := range warmPods(t, ns, pool) {
				if podstate.Ready(&p) {
					ready++
				}
			}
			return ready == replicas, fmt.Sprintf("bind %d: %d of %d warm pods Ready", i, ready, replicas)
		})
	}
	elapsed := time.Since(start)
	n := writes()

	// One write may come at once (none in the interval before), then one per interval.
	if most := int(elapsed/countsInterval) + 2; n > most {
		t.Errorf("the pool's status was written %d times over %d binds in %s (%.1f per bind), want at most %d (one per %s): a take or a refill flipping Ready is written at once",
			n, binds, elapsed.Round(time.Millisecond), float64(n)/binds, most, countsInterval)
	}
	t.Logf("%d status writes over %d binds in %s", n, binds, elapsed.Round(time.Millisecond))

	// Held back, not lost: the counts and the Ready condition of the end are written.
	sb := &agentsv1alpha1.AgentSandbox{}
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: pool}, sb); err != nil {
			return false, err.Error()
		}
		c := condition(sb.Status.Conditions, agentsv1alpha1.SandboxReady)
		return sb.Status.ReadyReplicas == replicas && sb.Status.ActiveSessions == binds && c != nil &&
				c.Status == metav1.ConditionTrue && c.Reason == agentsv1alpha1.ReasonPoolReady,
			fmt.Sprintf("pool status: ready %d, sessions %d, Ready %+v; want %d, %d, True PoolReady", sb.Status.ReadyReplicas, sb.Status.ActiveSessions, c, replicas, binds)
	})
}

// watchStatusWrites watches one pool from the API server and returns a function that says
// how many times its status changed so far (writes that change nothing are not stored).
func watchStatusWrites(t *testing.T, ns, name string) func() int {
	t.Helper()
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: k8s.Scheme()})
	if err != nil {
		t.Fatalf("watch client: %v", err)
	}
	sb := &agentsv1alpha1.AgentSandbox{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, sb); err != nil {
		t.Fatalf("getting pool %s: %v", name, err)
	}
	// From the version read, so no write after it is missed.
	w, err := wc.Watch(context.Background(), &agentsv1alpha1.AgentSandboxList{}, client.InNamespace(ns),
		client.MatchingFields{"metadata.name": name}, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: sb.ResourceVersion}})
	if err != nil {
		t.Fatalf("watching pool %s: %v", name, err)
	}
	t.Cleanup(w.Stop)
	var mu sync.Mutex
	count, last := 0, sb.Status
	go func() {
		for e := range w.ResultChan() {
			got, ok := e.Object.(*agentsv1alpha1.AgentSandbox)
			if e.Type != watch.Modified || !ok {
				continue
			}
			mu.Lock()
			if !apiequality.Semantic.DeepEqual(last, got.Status) {
				count++
				last = got.Status
			}
			mu.Unlock()
		}
	}()
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return count
	}
}
