//go:build !windows

package controller

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/builders"
)

// holding reports whether a session holds (or is starting) a sandbox: what a quota counts.
func holding(s *agentsv1alpha1.AgentSession) bool {
	return !s.Status.Phase.IsFinished() && (s.Status.PodName != "" || meta.IsStatusConditionTrue(s.Status.Conditions, agentsv1alpha1.QuotaReserved))
}

func listSessions(t testing.TB, ns string) []agentsv1alpha1.AgentSession {
	t.Helper()
	list := &agentsv1alpha1.AgentSessionList{}
	if err := k8s.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		t.Fatalf("listing sessions: %v", err)
	}
	return list.Items
}

func deleteSession(t testing.TB, ns, name string) {
	t.Helper()
	s := &agentsv1alpha1.AgentSession{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := k8s.Delete(context.Background(), s); client.IgnoreNotFound(err) != nil {
		t.Fatalf("deleting session %s: %v", name, err)
	}
}

// watchActive checks, every few milliseconds until stopped, that no more than limit
// sessions of ns hold a sandbox at once; it returns the highest count it saw.
func watchActive(t *testing.T, ns string, limit int) (stop func() int) {
	ctx, cancel := context.WithCancel(context.Background())
	var peak atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			list := &agentsv1alpha1.AgentSessionList{}
			if err := k8s.List(ctx, list, client.InNamespace(ns)); err != nil {
				continue
			}
			n := 0
			for i := range list.Items {
				if holding(&list.Items[i]) {
					n++
				}
			}
			if int64(n) > peak.Load() {
				peak.Store(int64(n))
			}
			if n > limit {
				t.Errorf("%d sessions hold a sandbox at once, over the limit of %d", n, limit)
			}
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Millisecond):
			}
		}
	})
	return func() int { cancel(); wg.Wait(); return int(peak.Load()) }
}

// TestQuotaAdmitsInFIFOOrder: 100 sessions wait behind a quota of 1 and are released one by
// one; each is admitted only after every session created before it.
func TestQuotaAdmitsInFIFOOrder(t *testing.T) {
	t.Parallel()
	const n = 100
	ns := env.CreateNamespace(t)
	create(t, builders.AgentQuota(ns, "quota").Sessions(1).Obj())
	create(t, builders.AgentSandbox(ns, "pool").Replicas(1).Obj())
	for i := range n {
		create(t, builders.AgentSession(ns, fmt.Sprintf("q-%03d", i), "pool").Obj())
	}
	stop := watchActive(t, ns, 1)
	defer stop()

	// The second waits with the arithmetic in its condition.
	s := waitSession(t, ns, "q-001", waitTimeout, "Queued", inPhase(agentsv1alpha1.SessionQueued))
	c := meta.FindStatusCondition(s.Status.Conditions, agentsv1alpha1.QuotaReserved)
	if c == nil || c.Reason != agentsv1alpha1.ReasonWaitingForQuota || !strings.Contains(c.Message, "sessions: 1 requested + 1 in use > 1 allowed by AgentQuota quota") {
		t.Errorf("QuotaReserved = %+v, want WaitingForQuota with the arithmetic", c)
	}
	q := &agentsv1alpha1.AgentQuota{}
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		_ = k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "quota"}, q)
		return q.Status.Queued == n-1 && q.Status.QueueHead == "q-001" && ptr.Deref(q.Status.Used.Sessions, -1) == 1,
			fmt.Sprintf("quota status: queued %d head %q used %v; want %d, q-001, 1", q.Status.Queued, q.Status.QueueHead, q.Status.Used.Sessions, n-1)
	})

	for i := range n {
		name := fmt.Sprintf("q-%03d", i)
		waitSession(t, ns, name, waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
		for _, other := range listSessions(t, ns) {
			if other.Name > name && holding(&other) {
				t.Fatalf("%s was admitted before %s", other.Name, name)
			}
		}
		deleteSession(t, ns, name)
	}
	if peak := stop(); peak != 1 {
		t.Errorf("peak active sessions = %d, want 1", peak)
	}
}

// TestQuotaNoOvershoot: 50 sessions at once against a limit of 10, checked continuously.
func TestQuotaNoOvershoot(t *testing.T) {
	t.Parallel()
	const n, limit = 50, 10
	ns := env.CreateNamespace(t)
	create(t, builders.AgentQuota(ns, "quota").Sessions(limit).Obj())
	create(t, builders.AgentSandbox(ns, "pool").Replicas(5).Obj())
	waitPoolReady(t, ns, "pool", 5, waitTimeout)
	stop := watchActive(t, ns, limit)

	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { create(t, builders.AgentSession(ns, fmt.Sprintf("o-%02d", i), "pool").Obj()) })
	}
	wg.Wait()

	// The quota fills to its limit exactly; the rest wait.
	eventually(t, 2*waitTimeout, func(context.Context) (bool, string) {
		active, queued := 0, 0
		for _, s := range listSessions(t, ns) {
			if holding(&s) {
				active++
			} else if s.Status.Phase == agentsv1alpha1.SessionQueued {
				queued++
			}
		}
		return active == limit && queued == n-limit, fmt.Sprintf("%d active, %d queued; want %d and %d", active, queued, limit, n-limit)
	})

	// Serve everyone: end the Ready sessions, batch after batch.
	served := map[string]bool{}
	eventually(t, 4*waitTimeout, func(context.Context) (bool, string) {
		for _, s := range listSessions(t, ns) {
			if s.Status.Phase == agentsv1alpha1.SessionReady {
				served[s.Name] = true
				deleteSession(t, ns, s.Name)
			}
		}
		return len(served) == n, fmt.Sprintf("%d of %d sessions served", len(served), n)
	})
	if peak := stop(); peak != limit {
		t.Errorf("peak active sessions = %d, want exactly the limit %d", peak, limit)
	}
}

func TestQuotaRaiseAndLower(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	create(t, builders.AgentQuota(ns, "quota").Sessions(1).Obj())
	create(t, builders.AgentSandbox(ns, "pool").Replicas(3).Obj())
	for _, name := range []string{"a", "b", "c"} {
		create(t, builders.AgentSession(ns, name, "pool").Obj())
	}
	waitSession(t, ns, "a", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
	waitSession(t, ns, "c", waitTimeout, "Queued", inPhase(agentsv1alpha1.SessionQueued))

	setSessionLimit(t, ns, 3) // raising admits the waiting sessions at once
	waitSession(t, ns, "b", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
	waitSession(t, ns, "c", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))

	setSessionLimit(t, ns, 1) // lowering stops nothing that runs
	create(t, builders.AgentSession(ns, "d", "pool").Obj())
	waitSession(t, ns, "d", waitTimeout, "Queued", inPhase(agentsv1alpha1.SessionQueued))
	for _, name := range []string{"a", "b", "c"} {
		if s := getSession(t, ns, name); s.Status.Phase != agentsv1alpha1.SessionReady {
			t.Fatalf("lowering the limit changed running session %s to %s", name, s.Status.Phase)
		}
	}
	// d waits until usage falls below the new limit: two of three ending is not enough.
	deleteSession(t, ns, "a")
	deleteSession(t, ns, "b")
	waitQuotaUsed(t, ns, 1)
	if s := getSession(t, ns, "d"); s.Status.Phase != agentsv1alpha1.SessionQueued || s.Status.PodName != "" {
		t.Fatalf("d is %s with pod %q, with 1 session in use and a limit of 1; want Queued", s.Status.Phase, s.Status.PodName)
	}
	deleteSession(t, ns, "c")
	waitSession(t, ns, "d", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
}

func getSession(t *testing.T, ns, name string) *agentsv1alpha1.AgentSession {
	t.Helper()
	s := &agentsv1alpha1.AgentSession{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
		t.Fatalf("getting session %s: %v", name, err)
	}
	return s
}

func setSessionLimit(t *testing.T, ns string, limit int32) {
	t.Helper()
	q := &agentsv1alpha1.AgentQuota{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "quota"}}
	patch := client.RawPatch("application/merge-patch+json", fmt.Appendf(nil, `{"spec":{"hard":{"sessions":%d}}}`, limit))
	if err := k8s.Patch(context.Background(), q, patch); err != nil {
		t.Fatalf("setting the session limit to %d: %v", limit, err)
	}
}

func waitQuotaUsed(t *testing.T, ns string, sessions int32) {
	t.Helper()
	q := &agentsv1alpha1.AgentQuota{}
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		_ = k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "quota"}, q)
		return ptr.Deref(q.Status.Used.Sessions, -1) == sessions, fmt.Sprintf("used sessions %v, want %d", q.Status.Used.Sessions, sessions)
	})
}

func TestDefaultQuota(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	// The test manager's default quota (sessions=2) applies to namespaces with this label.
	nsObj := &corev1.Namespace{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Name: ns}, nsObj); err != nil {
		t.Fatal(err)
	}
	nsObj.Labels = map[string]string{defaultQuotaLabel: "true"}
	if err := k8s.Update(context.Background(), nsObj); err != nil {
		t.Fatal(err)
	}
	create(t, builders.AgentSandbox(ns, "pool").Replicas(1).Obj())
	for _, name := range []string{"a", "b", "c"} {
		create(t, builders.AgentSession(ns, name, "pool").Obj())
	}
	waitSession(t, ns, "a", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
	waitSession(t, ns, "b", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
	s := waitSession(t, ns, "c", waitTimeout, "Queued", inPhase(agentsv1alpha1.SessionQueued))
	if c := meta.FindStatusCondition(s.Status.Conditions, agentsv1alpha1.QuotaReserved); c == nil || !strings.Contains(c.Message, "the manager's default quota") {
		t.Errorf("QuotaReserved = %+v, want a message naming the default quota", c)
	}
	// An AgentQuota of its own replaces the default.
	create(t, builders.AgentQuota(ns, "quota").Sessions(5).Obj())
	waitSession(t, ns, "c", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
}

// TestQuotaMemoryCountsWarmAndBound: memory and cpu cover every live pod, warm and bound; the
// pool is held to what fits, and says which quota holds it back.
func TestQuotaMemoryCountsWarmAndBound(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	// Each sandbox is a 1536Mi, 2-vCPU VM: room for three.
	create(t, builders.AgentQuota(ns, "quota").Memory("4608Mi").CPU("8").Obj())
	create(t, builders.AgentSandbox(ns, "pool").Replicas(5).Obj())
	waitPoolReady(t, ns, "pool", 3, waitTimeout)
	sb := waitDegraded(t, ns, "pool", agentsv1alpha1.ReasonQuotaLimited)
	if msg := condition(sb.Status.Conditions, agentsv1alpha1.SandboxDegraded).Message; !strings.Contains(msg, "memory: 1536Mi requested + 4608Mi in use > 4608Mi allowed by AgentQuota quota") {
		t.Errorf("QuotaLimited message %q lacks the memory arithmetic", msg)
	}

	// A warm bind moves a VM from the pool to the session: usage is unchanged, and the pool
	// cannot refill behind it.
	create(t, builders.AgentSession(ns, "s1", "pool").Obj())
	waitSession(t, ns, "s1", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
	q := &agentsv1alpha1.AgentQuota{}
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		_ = k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "quota"}, q)
		u := q.Status.Used
		return u.Memory != nil && u.Memory.String() == "4608Mi" && u.CPU != nil && u.CPU.Value() == 6 &&
				ptr.Deref(u.Sessions, -1) == 1 && ptr.Deref(u.WarmSandboxes, -1) == 2,
			fmt.Sprintf("used = sessions %v warm %v memory %v cpu %v; want 1, 2, 4608Mi, 6", u.Sessions, u.WarmSandboxes, u.Memory, u.CPU)
	})
	if n := len(warmPods(t, ns, "pool")); n != 2 {
		t.Errorf("%d warm pods, want 2 (the quota is full)", n)
	}
}

func TestPoolsTrimmedByWarmSandboxes(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	create(t, builders.AgentQuota(ns, "quota").WarmSandboxes(4).Obj())
	create(t, builders.AgentSandbox(ns, "a").Replicas(3).Obj())
	create(t, builders.AgentSandbox(ns, "b").Replicas(3).Obj())
	countWarm := func() int { return len(warmPods(t, ns, "a")) + len(warmPods(t, ns, "b")) }
	eventually(t, waitTimeout, func(context.Context) (bool, string) {
		return countWarm() == 4, fmt.Sprintf("%d warm pods across the pools, want 4", countWarm())
	})

	q := &agentsv1alpha1.AgentQuota{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "quota"}}
	if err := k8s.Patch(context.Background(), q, client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"hard":{"warmSandboxes":2}}}`))); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitTimeout, func(context.Context) (bool, string) {
		return countWarm() == 2, fmt.Sprintf("%d warm pods across the pools, want 2 after lowering the quota", countWarm())
	})
}

// TestResourceQuotaForbidsPods: a native ResourceQuota that refuses the sandbox pod makes the
// session wait with reason ResourceQuotaExceeded; raising it lets the session start.
func TestResourceQuotaForbidsPods(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	rq := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pods"},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("1")}}}
	create(t, rq)
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		_ = k8s.Get(ctx, client.ObjectKeyFromObject(rq), rq)
		_, counted := rq.Status.Hard[corev1.ResourcePods]
		return counted, "the ResourceQuota has no status yet"
	})
	create(t, builders.AgentSandbox(ns, "cold").Replicas(0).Obj())
	create(t, builders.AgentSession(ns, "first", "cold").Obj())
	waitSession(t, ns, "first", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))

	create(t, builders.AgentSession(ns, "second", "cold").Obj())
	s := waitSession(t, ns, "second", waitTimeout, "Queued with ResourceQuotaExceeded", func(s *agentsv1alpha1.AgentSession) bool {
		c := meta.FindStatusCondition(s.Status.Conditions, agentsv1alpha1.QuotaReserved)
		return s.Status.Phase == agentsv1alpha1.SessionQueued && c != nil && c.Reason == agentsv1alpha1.ReasonResourceQuotaExceeded
	})
	if c := meta.FindStatusCondition(s.Status.Conditions, agentsv1alpha1.QuotaReserved); !strings.Contains(c.Message, "exceeded quota") {
		t.Errorf("message %q does not carry the API server's words", c.Message)
	}
	if err := k8s.Patch(context.Background(), rq, client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"hard":{"pods":"2"}}}`))); err != nil {
		t.Fatal(err)
	}
	waitSession(t, ns, "second", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
}

func TestSecondQuotaInANamespaceConflicts(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	create(t, builders.AgentQuota(ns, "quota").Sessions(3).Obj())
	waitQuotaUsed(t, ns, 0)
	second := builders.AgentQuota(ns, "second").Sessions(1).Obj()
	create(t, second)
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		_ = k8s.Get(ctx, client.ObjectKeyFromObject(second), second)
		c := meta.FindStatusCondition(second.Status.Conditions, agentsv1alpha1.QuotaActive)
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == agentsv1alpha1.ReasonConflict && strings.Contains(c.Message, "quota"),
			fmt.Sprintf("Active condition of the second quota = %+v, want False/Conflict naming the enforced one", c)
	})
	// The oldest is the one enforced: two sessions fit under its limit of 3.
	create(t, builders.AgentSandbox(ns, "pool").Replicas(2).Obj())
	create(t, builders.AgentSession(ns, "a", "pool").Obj())
	create(t, builders.AgentSession(ns, "b", "pool").Obj())
	waitSession(t, ns, "a", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
	waitSession(t, ns, "b", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
}

func TestQuotaOfZeroHoldsEverySession(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	create(t, builders.AgentQuota(ns, "quota").Sessions(0).Obj())
	create(t, builders.AgentSandbox(ns, "pool").Replicas(1).Obj())
	create(t, builders.AgentSession(ns, "denied", "pool").Obj())
	s := waitSession(t, ns, "denied", waitTimeout, "Queued with ExceedsQuota", func(s *agentsv1alpha1.AgentSession) bool {
		c := meta.FindStatusCondition(s.Status.Conditions, agentsv1alpha1.QuotaReserved)
		return s.Status.Phase == agentsv1alpha1.SessionQueued && c != nil && c.Reason == agentsv1alpha1.ReasonExceedsQuota
	})
	if s.Status.PodName != "" {
		t.Fatalf("a session under a quota of 0 got pod %s", s.Status.PodName)
	}
	assertSettled(t, "agentsession", ns, "denied")
	// The kill switch is lifted: the session is admitted, not lost.
	setSessionLimit(t, ns, 1)
	waitSession(t, ns, "denied", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
}

// TestUnadmittedSessionGivesBackItsSlot: a session admitted by the sessions limit whose cold
// start the memory limit then refuses waits again, and gives back its slot: the quota
// counts it as queued, not as in use.
func TestUnadmittedSessionGivesBackItsSlot(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	// Two sessions fit, one sandbox's VM (1536Mi) does.
	create(t, builders.AgentQuota(ns, "quota").Sessions(2).Memory("1536Mi").Obj())
	create(t, builders.AgentSandbox(ns, "cold").Replicas(0).Obj())
	create(t, builders.AgentSession(ns, "a", "cold").Obj())
	waitSession(t, ns, "a", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
	create(t, builders.AgentSession(ns, "b", "cold").Obj())
	waitSession(t, ns, "b", waitTimeout, "Queued for memory", func(s *agentsv1alpha1.AgentSession) bool {
		c := meta.FindStatusCondition(s.Status.Conditions, agentsv1alpha1.QuotaReserved)
		return s.Status.Phase == agentsv1alpha1.SessionQueued && c != nil && strings.HasPrefix(c.Message, "memory:")
	})
	q := &agentsv1alpha1.AgentQuota{}
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		_ = k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "quota"}, q)
		return ptr.Deref(q.Status.Used.Sessions, -1) == 1 && q.Status.Queued == 1 && q.Status.QueueHead == "b",
			fmt.Sprintf("quota status: used sessions %d, queued %d, head %q; want 1, 1, b", ptr.Deref(q.Status.Used.Sessions, -1), q.Status.Queued, q.Status.QueueHead)
	})
	// The VM frees: b starts.
	deleteSession(t, ns, "a")
	waitSession(t, ns, "b", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
}

// TestLoweringWarmSandboxesTrimsEachPoolByItsShare: two pools over a lowered warmSandboxes
// give up the excess between them, each in proportion to its warm pods, never more.
func TestLoweringWarmSandboxesTrimsEachPoolByItsShare(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	create(t, builders.AgentQuota(ns, "quota").WarmSandboxes(6).Obj())
	create(t, builders.AgentSandbox(ns, "a").Replicas(4).Obj())
	create(t, builders.AgentSandbox(ns, "b").Replicas(2).Obj())
	waitPoolReady(t, ns, "a", 4, waitTimeout)
	waitPoolReady(t, ns, "b", 2, waitTimeout)

	// From now on the namespace never holds fewer warm pods than the new limit: the pools
	// trim 3 between them, not 3 each.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var fewest atomic.Int64
	fewest.Store(6)
	wg.Go(func() {
		for ctx.Err() == nil {
			list := &corev1.PodList{}
			if err := k8s.List(ctx, list, client.InNamespace(ns), client.HasLabels{agentsv1alpha1.ClassLabel}); err == nil {
				n := 0
				for _, p := range list.Items {
					if p.Labels[agentsv1alpha1.SessionLabel] == "" && p.DeletionTimestamp.IsZero() {
						n++
					}
				}
				if int64(n) < fewest.Load() {
					fewest.Store(int64(n))
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Millisecond):
			}
		}
	})
	q := &agentsv1alpha1.AgentQuota{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "quota"}}
	if err := k8s.Patch(context.Background(), q, client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"hard":{"warmSandboxes":3}}}`))); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitTimeout, func(context.Context) (bool, string) {
		a, b := len(warmPods(t, ns, "a")), len(warmPods(t, ns, "b"))
		return a == 2 && b == 1, fmt.Sprintf("warm pods: a %d, b %d; want 2 and 1 (4 and 2 giving up 3 in proportion)", a, b)
	})
	waitDegraded(t, ns, "a", agentsv1alpha1.ReasonQuotaLimited)
	cancel()
	wg.Wait()
	if n := fewest.Load(); n < 3 {
		t.Errorf("the namespace's warm pods fell to %d, below the lowered limit of 3: the pools gave up more than the excess", n)
	}
}

// quotaSeries counts the quota metrics' series of namespace ns.
func quotaSeries(t *testing.T, ns string) int {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range families {
		switch f.GetName() {
		case "hyperpool_quota_used", "hyperpool_quota_hard", "hyperpool_queued_sessions":
		default:
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "namespace" && l.GetValue() == ns {
					n++
				}
			}
		}
	}
	return n
}

// TestDeletedQuotaDropsItsSeries: a deleted AgentQuota leaves no series behind, so quotas
// created and deleted in churning namespaces cannot grow the manager without limit.
func TestDeletedQuotaDropsItsSeries(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	quota := builders.AgentQuota(ns, "quota").Sessions(3).Memory("8Gi").Obj()
	create(t, quota)
	eventually(t, waitTimeout, func(context.Context) (bool, string) {
		n := quotaSeries(t, ns)
		return n > 0, "no quota series for the namespace yet"
	})
	if err := k8s.Delete(context.Background(), quota); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitTimeout, func(context.Context) (bool, string) {
		n := quotaSeries(t, ns)
		return n == 0, fmt.Sprintf("%d quota series of the deleted AgentQuota remain", n)
	})
}
