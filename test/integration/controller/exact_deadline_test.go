//go:build !windows

package controller

import (
	"context"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/builders"
)

// expiryLagBound is how long after bind+maxLifetime a session may be seen ended here: the
// manager's requeue firing, one reconcile and its status write, and this test's poll, on
// a loaded 2-core machine with the race detector. It stays below the error of the old
// deadline, whose bind time and expiry were each rounded up to the second: for a bind a
// tenth of a second past a whole second and a max lifetime of 3.5 s, 1.4 s late.
const expiryLagBound = 900 * time.Millisecond

// TestExpiryIsExact: a session bound at a fraction of a second ends at its stored precise
// bind time plus its max lifetime, and within expiryLagBound of it. The stored bind time
// is honest: no earlier than the create call, no later than this test first saw the bind.
func TestExpiryIsExact(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	create(t, builders.AgentSandbox(ns, "pool").Replicas(1).Obj())
	waitPoolReady(t, ns, "pool", 1, waitTimeout)

	const lifetime = 3500 * time.Millisecond
	// Start just after a whole second, so the bind lands early in its second, where the
	// old rounding cost the most. A schedule, not a synchronisation: the checks below hold
	// wherever in its second the bind lands.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 10*time.Millisecond)))
	createdAt := time.Now()
	create(t, builders.AgentSession(ns, "exact", "pool").MaxLifetime(lifetime).Obj())

	var boundSeenAt, endSeenAt time.Time
	s := &agentsv1alpha1.AgentSession{}
	// Poll often: what this test sees late counts against the bound.
	err := wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, waitTimeout+lifetime, true, func(ctx context.Context) (bool, error) {
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "exact"}, s); err != nil {
			return false, nil
		}
		now := time.Now()
		if boundSeenAt.IsZero() && s.Status.PodName != "" && s.Status.BoundTime != nil {
			boundSeenAt = now
		}
		if s.Status.Phase.IsFinished() {
			endSeenAt = now
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("session not ended within %s of its creation: phase %q, pod %q, preciseBoundTime %v, preciseExpiryTime %v",
			waitTimeout+lifetime, s.Status.Phase, s.Status.PodName, s.Status.PreciseBoundTime, s.Status.PreciseExpiryTime)
	}
	if s.Status.Phase != agentsv1alpha1.SessionExpired || s.Status.EndReason != agentsv1alpha1.ReasonMaxLifetime {
		t.Fatalf("ended %s (%s), want Expired by MaxLifetime; conditions %+v", s.Status.Phase, s.Status.EndReason, s.Status.Conditions)
	}
	if s.Status.PreciseBoundTime == nil || s.Status.PreciseExpiryTime == nil {
		t.Fatalf("status.preciseBoundTime %v, preciseExpiryTime %v: want both set", s.Status.PreciseBoundTime, s.Status.PreciseExpiryTime)
	}

	bound := s.Status.PreciseBoundTime.Time
	if bound.Before(createdAt.Truncate(time.Microsecond)) || (!boundSeenAt.IsZero() && bound.After(boundSeenAt)) {
		t.Errorf("status.preciseBoundTime %s is outside [the create call %s, the bind first seen %s]",
			rfc3339Nano(bound), rfc3339Nano(createdAt), rfc3339Nano(boundSeenAt))
	}
	deadline := bound.Add(lifetime)
	if got := s.Status.PreciseExpiryTime.Time; !got.Equal(deadline) {
		t.Errorf("status.preciseExpiryTime %s, want preciseBoundTime + %s = %s", rfc3339Nano(got), lifetime, rfc3339Nano(deadline))
	}
	if got, want := s.Status.ExpiryTime.Time, deadline.Truncate(time.Second); !got.Equal(want) {
		t.Errorf("status.expiryTime %s, want the precise one rounded down to the second, %s", rfc3339Nano(got), rfc3339Nano(want))
	}
	switch lag := endSeenAt.Sub(deadline); {
	case lag < 0:
		t.Errorf("session seen ended at %s, %s before bind+maxLifetime %s", rfc3339Nano(endSeenAt), -lag, rfc3339Nano(deadline))
	case lag > expiryLagBound:
		t.Errorf("session seen ended at %s, %s after bind+maxLifetime %s (bind %s): more than %s late",
			rfc3339Nano(endSeenAt), lag, rfc3339Nano(deadline), rfc3339Nano(bound), expiryLagBound)
	default:
		t.Logf("bind %s, seen ended %s after bind+maxLifetime", rfc3339Nano(bound), lag)
	}
}

func rfc3339Nano(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
