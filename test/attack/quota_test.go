//go:build !windows

package attack

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/builders"
)

// The quota attacks: a tenant (the session-user role) against its namespace's AgentQuota,
// which the platform team wrote.

// queueFull: the session ended Failed with reason QueueFull.
func queueFull(s *agentsv1alpha1.AgentSession) bool {
	return s.Status.Phase == agentsv1alpha1.SessionFailed && s.Status.EndReason == agentsv1alpha1.ReasonQueueFull
}

// waitQuota waits until the quota's status satisfies cond.
func waitQuota(t testing.TB, ns string, what string, cond func(*agentsv1alpha1.AgentQuota) bool) {
	t.Helper()
	q := &agentsv1alpha1.AgentQuota{}
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		if err := admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "quota"}, q); err != nil {
			return false, err.Error()
		}
		return cond(q), fmt.Sprintf("quota: want %s; used sessions %d, queued %d, head %q",
			what, ptr.Deref(q.Status.Used.Sessions, -1), q.Status.Queued, q.Status.QueueHead)
	})
}

// TestQueueOverMaxQueuedIsRefused: a tenant queueing more sessions than the quota's
// maxQueued gets the extra one refused at once (Failed, QueueFull, a Warning event naming
// the limit and the fix); the queue holds maxQueued, and takes sessions again as it drains.
func TestQueueOverMaxQueuedIsRefused(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	mustCreate(t, admin, builders.AgentQuota(ns, "quota").Sessions(1).MaxQueued(2).Obj())
	mustCreate(t, admin, builders.AgentSandbox(ns, "pool").Replicas(1).Obj())
	user := tenant(t, ns, "hyperpool-session-user")

	mustCreate(t, user, builders.AgentSession(ns, "running", "pool").Obj())
	waitSession(t, ns, "running", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
	for _, name := range []string{"wait-1", "wait-2"} {
		mustCreate(t, user, builders.AgentSession(ns, name, "pool").Obj())
		waitSession(t, ns, name, waitTimeout, "Queued", inPhase(agentsv1alpha1.SessionQueued))
	}
	mustCreate(t, user, builders.AgentSession(ns, "over", "pool").Obj())
	s := waitSession(t, ns, "over", waitTimeout, "Failed with QueueFull", queueFull)
	const want = "sessions: 1 more would make 3 queued > maxQueued 2 of AgentQuota quota; retry later or raise spec.maxQueued"
	if c := meta.FindStatusCondition(s.Status.Conditions, agentsv1alpha1.SessionReadyCondition); c == nil || c.Reason != agentsv1alpha1.ReasonQueueFull || !strings.Contains(c.Message, want) {
		t.Errorf("Ready condition = %+v, want reason QueueFull and a message containing %q", c, want)
	}
	if s.Status.PodName != "" {
		t.Errorf("a refused session holds pod %s", s.Status.PodName)
	}
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		events := &eventsv1.EventList{}
		if err := admin.List(ctx, events, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		for _, e := range events.Items {
			if e.Reason == agentsv1alpha1.ReasonQueueFull && e.Type == "Warning" && e.Regarding.Name == "over" && strings.Contains(e.Note, "maxQueued 2") {
				return true, ""
			}
		}
		return false, fmt.Sprintf("no Warning QueueFull event for session over among %d events", len(events.Items))
	})
	waitQuota(t, ns, "2 queued", func(q *agentsv1alpha1.AgentQuota) bool { return q.Status.Queued == 2 })

	// The queue drains: wait-1 takes the freed slot, and a new session may wait again.
	if err := user.Delete(context.Background(), builders.AgentSession(ns, "running", "pool").Obj()); err != nil {
		t.Fatal(err)
	}
	waitSession(t, ns, "wait-1", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
	mustCreate(t, user, builders.AgentSession(ns, "wait-3", "pool").Obj())
	waitSession(t, ns, "wait-3", waitTimeout, "Queued", inPhase(agentsv1alpha1.SessionQueued))
}

// TestPodlessSessionDeletedBeforeItsAdmissionShows: a tenant creates sessions of a class
// that does not exist (admitted, never holding a pod) and deletes each at once, before the
// manager's cache shows its admission. Each frees its slot then, not claimTTL (30 s) later:
// a session created next binds at once, and the quota shows no slot in use.
func TestPodlessSessionDeletedBeforeItsAdmissionShows(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	mustCreate(t, admin, builders.AgentQuota(ns, "quota").Sessions(1).Obj())
	mustCreate(t, admin, builders.AgentSandbox(ns, "pool").Replicas(1).Obj())
	user := tenant(t, ns, "hyperpool-session-user")
	ctx := context.Background()

	// Several rounds at once, to land deletions between the admission and its status write.
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			ghost := builders.AgentSession(ns, fmt.Sprintf("ghost-%02d", i), "no-such-class").Obj()
			if err := user.Create(ctx, ghost); err != nil {
				t.Errorf("creating %s: %v", ghost.Name, err)
				return
			}
			if err := user.Delete(ctx, ghost); err != nil {
				t.Errorf("deleting %s: %v", ghost.Name, err)
			}
		})
	}
	wg.Wait()
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		list := &agentsv1alpha1.AgentSessionList{}
		if err := admin.List(ctx, list, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		return len(list.Items) == 0, fmt.Sprintf("%d ghost sessions remain", len(list.Items))
	})

	// Well within claimTTL: a leaked grant would hold the only slot for 30 s.
	mustCreate(t, user, builders.AgentSession(ns, "real", "pool").Obj())
	waitSession(t, ns, "real", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
	waitQuota(t, ns, "1 session in use, none queued", func(q *agentsv1alpha1.AgentQuota) bool {
		return ptr.Deref(q.Status.Used.Sessions, -1) == 1 && q.Status.Queued == 0
	})
}

// TestFloodBeyondQuotaKeepsOtherNamespacesBinding: a tenant creates far more sessions than
// its quota and queue hold. The queue stays at maxQueued (the rest are refused), and
// another namespace's sessions keep binding meanwhile.
func TestFloodBeyondQuotaKeepsOtherNamespacesBinding(t *testing.T) {
	t.Parallel()
	const flood, maxQueued = 80, 10
	nsA, nsB := env.CreateNamespace(t), env.CreateNamespace(t)
	mustCreate(t, admin, builders.AgentQuota(nsA, "quota").Sessions(1).MaxQueued(maxQueued).Obj())
	mustCreate(t, admin, builders.AgentSandbox(nsA, "pool").Replicas(1).Obj())
	mustCreate(t, admin, builders.AgentSandbox(nsB, "pool").Replicas(2).Obj())
	attacker, neighbour := tenant(t, nsA, "hyperpool-session-user"), tenant(t, nsB, "hyperpool-session-user")
	ctx := context.Background()

	var wg sync.WaitGroup
	for i := range flood {
		wg.Go(func() {
			if err := attacker.Create(ctx, builders.AgentSession(nsA, fmt.Sprintf("flood-%03d", i), "pool").Obj()); err != nil {
				t.Errorf("creating flood-%03d: %v", i, err)
			}
		})
	}
	// Meanwhile, and after, the neighbour's sessions bind one after the other.
	for i := range 4 {
		name := fmt.Sprintf("neighbour-%d", i)
		mustCreate(t, neighbour, builders.AgentSession(nsB, name, "pool").Obj())
		waitSession(t, nsB, name, waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
		if err := neighbour.Delete(ctx, builders.AgentSession(nsB, name, "pool").Obj()); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()

	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		list := &agentsv1alpha1.AgentSessionList{}
		if err := admin.List(ctx, list, client.InNamespace(nsA)); err != nil {
			return false, err.Error()
		}
		active, queued, refused := 0, 0, 0
		for i := range list.Items {
			s := &list.Items[i]
			switch {
			case queueFull(s):
				refused++
			case s.Status.Phase == agentsv1alpha1.SessionQueued:
				queued++
			case s.Status.PodName != "" && !s.Status.Phase.IsFinished():
				active++
			}
		}
		return active == 1 && queued == maxQueued && refused == flood-1-maxQueued,
			fmt.Sprintf("%d active, %d queued, %d refused with QueueFull; want 1, %d, %d", active, queued, refused, maxQueued, flood-1-maxQueued)
	})
	waitQuota(t, nsA, fmt.Sprintf("%d queued", maxQueued), func(q *agentsv1alpha1.AgentQuota) bool { return q.Status.Queued == maxQueued })
}
