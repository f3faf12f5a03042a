//go:build !windows

package attack

// The manager's own accounting against a tenant (session-user and edit, impersonated): a
// VM that still runs counts against the quota until its pod is gone, and sessions that the
// quota holds back do not grow an autoscaled pool.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/builders"
	"github.com/hyperpool/hyperpool/test/testbed"
)

// slowShutdownFinalizer holds a deleted sandbox pod, as admin, in place of a VM that takes
// its whole grace period to stop (kwok deletes a pod at once).
const slowShutdownFinalizer = "hyperpool-test/slow-vm-shutdown"

// TestTerminatingSandboxPodStillCountsAgainstTheQuota: a tenant ends its session while the
// VM behind it still shuts down. The VM's memory stays charged to the namespace until the
// pod is gone, so a new session that would not fit beside it waits, and starts once the pod
// is gone.
func TestTerminatingSandboxPodStillCountsAgainstTheQuota(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := env.CreateNamespace(t)
	mustCreate(t, admin, builders.AgentQuota(ns, "quota").Memory("2Gi").Obj()) // one VM of 1536Mi
	mustCreate(t, admin, builders.AgentSandbox(ns, "pool").Replicas(0).Obj())
	user := tenant(t, ns, "hyperpool-session-user", "edit")

	mustCreate(t, user, builders.AgentSession(ns, "first", "pool").Obj())
	first := waitSession(t, ns, "first", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
	pod := &corev1.Pod{}
	if err := admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: first.Status.PodName}, pod); err != nil {
		t.Fatal(err)
	}
	holdPod(t, pod)

	if err := user.Delete(ctx, first); err != nil {
		t.Fatalf("tenant deleting its session: %v", err)
	}
	// The manager destroys the pod; the finalizer keeps it terminating. Once the pool's
	// status no longer counts it as an active session, the manager's cache shows it
	// terminating.
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		if err := admin.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return false, err.Error()
		}
		sb := &agentsv1alpha1.AgentSandbox{}
		if err := admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "pool"}, sb); err != nil {
			return false, err.Error()
		}
		return pod.DeletionTimestamp != nil && sb.Status.ActiveSessions == 0,
			fmt.Sprintf("pod %s deletion %v, pool active sessions %d; want terminating, 0", pod.Name, pod.DeletionTimestamp, sb.Status.ActiveSessions)
	})

	mustCreate(t, user, builders.AgentSession(ns, "second", "pool").Obj())
	var second *agentsv1alpha1.AgentSession
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		second = &agentsv1alpha1.AgentSession{}
		if err := admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "second"}, second); err != nil {
			return false, err.Error()
		}
		if second.Status.PodName != "" {
			t.Fatalf("session second got pod %s while pod %s's VM still runs: the quota's 2Gi hold one VM", second.Status.PodName, pod.Name)
		}
		return second.Status.Phase == agentsv1alpha1.SessionQueued, fmt.Sprintf("session second: phase %q, want Queued", second.Status.Phase)
	})
	c := meta.FindStatusCondition(second.Status.Conditions, agentsv1alpha1.QuotaReserved)
	if c == nil || c.Reason != agentsv1alpha1.ReasonWaitingForQuota || !strings.Contains(c.Message, "memory: 1536Mi requested + 1536Mi in use > 2Gi") {
		t.Errorf("session second's QuotaReserved = %+v, want WaitingForQuota on memory, counting the terminating VM", c)
	}
	waitQuota(t, ns, "the terminating VM's memory in use", func(q *agentsv1alpha1.AgentQuota) bool {
		return q.Status.Used.Memory != nil && q.Status.Used.Memory.Cmp(resource.MustParse("1536Mi")) == 0
	})

	// The VM stops: the pod goes, and the waiting session starts.
	releasePod(t, pod)
	waitSession(t, ns, "second", waitTimeout, "bound", func(s *agentsv1alpha1.AgentSession) bool { return s.Status.PodName != "" })
}

// TestQuotaQueuedSessionsDoNotGrowTheAutoscaledPool is the repro: with sessions: 1
// and maxQueued: 40, a tenant's 41 sessions (1 running, 40 queued) grew an autoscaled pool
// to 41 warm pods. Sessions the quota holds back add nothing to the autoscaler's demand.
func TestQuotaQueuedSessionsDoNotGrowTheAutoscaledPool(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := env.CreateNamespace(t)
	mustCreate(t, admin, builders.AgentQuota(ns, "quota").Sessions(1).MaxQueued(40).Obj())
	mustCreate(t, admin, builders.AgentSandbox(ns, "pool").Autoscaling(1, 50, time.Minute).Obj())
	user := tenant(t, ns, "hyperpool-session-user", "edit")

	for i := range 41 {
		mustCreate(t, user, builders.AgentSession(ns, fmt.Sprintf("s-%02d", i), "pool").Obj())
	}
	waitQuota(t, ns, "1 session running, 40 queued", func(q *agentsv1alpha1.AgentQuota) bool {
		return ptr.Deref(q.Status.Used.Sessions, -1) == 1 && q.Status.Queued == 40
	})

	// The quota's status was measured from the manager's cache with all 41 sessions in it:
	// a pool reconcile of a later generation of the class decides with them too.
	sb := &agentsv1alpha1.AgentSandbox{}
	if err := admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "pool"}, sb); err != nil {
		t.Fatal(err)
	}
	if err := admin.Patch(ctx, sb, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"autoscaling":{"scaleDownDelay":"2m"}}}`))); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		if err := admin.Get(ctx, client.ObjectKeyFromObject(sb), sb); err != nil {
			return false, err.Error()
		}
		return sb.Status.ObservedGeneration == sb.Generation && sb.Status.Autoscaling != nil,
			fmt.Sprintf("pool status generation %d of %d", sb.Status.ObservedGeneration, sb.Generation)
	})
	a := sb.Status.Autoscaling
	if a.RecommendedReplicas > 2 || a.QueuedSessions > 1 {
		t.Errorf("autoscaler: recommendedReplicas %d, queuedSessions %d with 40 sessions queued behind sessions: 1; want at most 2 and 1",
			a.RecommendedReplicas, a.QueuedSessions)
	}
	if n := len(sandboxPods(t, ns, "pool")); n > 3 {
		t.Errorf("%d live pods of the pool (1 bound, the rest warm), want at most 3", n)
	}
}

// holdPod adds slowShutdownFinalizer to pod, as admin, and removes it when the test ends.
func holdPod(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	patch := fmt.Sprintf(`{"metadata":{"finalizers":[%q]}}`, slowShutdownFinalizer)
	if err := admin.Patch(context.Background(), pod, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		t.Fatalf("holding pod %s: %v", pod.Name, err)
	}
	t.Cleanup(func() { releasePod(t, pod) })
}

// releasePod removes slowShutdownFinalizer: the held VM has stopped.
func releasePod(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	err := admin.Patch(context.Background(), pod, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`)))
	if client.IgnoreNotFound(err) != nil {
		t.Errorf("releasing pod %s: %v", pod.Name, err)
	}
}

// TestTenantEvictionWithLongGraceIsCutToTheClassGrace: the sandbox-pod policy refuses a
// delete with a longer grace, but an eviction (pods/eviction, which `edit` grants) carries
// its own delete options and not the pod. A tenant evicting its bound pod with a grace of a
// year gets it deleted again by the manager with the class's grace. The pod runs on a node
// that kwok does not manage: kwok would delete a terminating pod at once.
func TestTenantEvictionWithLongGraceIsCutToTheClassGrace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := env.CreateNamespace(t)
	node := env.CreateUnmanagedWindowsNode(t, build2022)
	const classGrace = int64(20)
	mustCreate(t, admin, builders.AgentSandbox(ns, "pool").Replicas(0).
		NodeSelector(testbed.UnmanagedNodeLabel, node).
		Toleration(corev1.Toleration{Operator: corev1.TolerationOpExists}).
		PodSpec(func(s *corev1.PodSpec) { s.TerminationGracePeriodSeconds = ptr.To(classGrace) }).Obj())
	user := tenant(t, ns, "hyperpool-session-user", "edit")
	mustCreate(t, user, builders.AgentSession(ns, "s", "pool").Obj())
	s := waitSession(t, ns, "s", waitTimeout, "bound", func(s *agentsv1alpha1.AgentSession) bool { return s.Status.PodName != "" })

	pod := &corev1.Pod{}
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		if err := admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: s.Status.PodName}, pod); err != nil {
			return false, err.Error()
		}
		return pod.Spec.NodeName == node, fmt.Sprintf("pod %s on node %q, want %s", pod.Name, pod.Spec.NodeName, node)
	})
	t.Cleanup(func() { _ = admin.Delete(context.Background(), pod.DeepCopy(), client.GracePeriodSeconds(0)) })

	const year = int64(365 * 24 * 3600)
	eviction := &policyv1.Eviction{DeleteOptions: &metav1.DeleteOptions{GracePeriodSeconds: ptr.To(year)}}
	if err := user.SubResource("eviction").Create(ctx, pod.DeepCopy(), eviction); err != nil {
		// A policy that refuses such evictions holds the deadline too.
		wantRefused(t, "evicting a bound pod with a grace of a year", err, "gracePeriodSeconds")
		return
	}
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		if err := admin.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return false, err.Error()
		}
		grace := ptr.Deref(pod.DeletionGracePeriodSeconds, -1)
		return grace == classGrace, fmt.Sprintf("pod %s: deletion grace %ds, want the class's %ds", pod.Name, grace, classGrace)
	})
}
