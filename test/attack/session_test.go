//go:build !windows

package attack

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/builders"
)

// Deadlines hold whatever the tenant does with the session object.

// sessionPods lists, as admin, the live pods labelled for the session.
func sessionPods(t testing.TB, ns, session string) []corev1.Pod {
	t.Helper()
	return livePods(t, ns, client.MatchingLabels{agentsv1alpha1.SessionLabel: session})
}

// waitNoSessionPods waits until no live pod is labelled for the session.
func waitNoSessionPods(t testing.TB, ns, session string, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, func(context.Context) (bool, string) {
		pods := sessionPods(t, ns, session)
		return len(pods) == 0, fmt.Sprintf("%d live pod(s) of session %s remain: %v", len(pods), session, podNames(pods))
	})
}

func podNames(pods []corev1.Pod) []string {
	var names []string
	for _, p := range pods {
		names = append(names, p.Name)
	}
	return names
}

// readySession opens a session as c in a namespace with a warm pool, and waits for Ready.
func readySession(t testing.TB, c client.Client, ns, name, class string) *agentsv1alpha1.AgentSession {
	t.Helper()
	mustCreate(t, c, builders.AgentSession(ns, name, class).Obj())
	return waitSession(t, ns, name, waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
}

// TestFinalizerDoesNotKeepTheSandbox: a tenant puts its own finalizer on a session and
// deletes it. The object stays for as long as the finalizer does; the sandbox must not.
func TestFinalizerDoesNotKeepTheSandbox(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	mustCreate(t, admin, builders.AgentSandbox(ns, "pool").Replicas(1).Obj())
	alice := tenant(t, ns, "hyperpool-session-user", "edit")
	ctx := context.Background()

	s := builders.AgentSession(ns, "kept", "pool").Finalizer("tenant.example.com/keep").Obj()
	mustCreate(t, alice, s)
	waitSession(t, ns, "kept", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
	t.Cleanup(func() {
		_ = admin.Patch(ctx, s, client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"finalizers":null}}`)))
	})

	if err := alice.Delete(ctx, s); err != nil {
		t.Fatal(err)
	}
	waitNoSessionPods(t, ns, "kept", waitTimeout)
	got := waitSession(t, ns, "kept", waitTimeout, "Terminated by its deletion", func(s *agentsv1alpha1.AgentSession) bool {
		return s.Status.Phase == agentsv1alpha1.SessionTerminated && s.Status.EndReason == agentsv1alpha1.ReasonSessionDeleted
	})
	if got.DeletionTimestamp.IsZero() || len(got.Finalizers) == 0 {
		t.Fatalf("the session should still exist, held by the tenant's finalizer: %+v", got.ObjectMeta)
	}
}

// TestStartTimeoutIsCappedByTheClass: a tenant cannot hold its place waiting for a sandbox
// longer than the class allows by asking for a longer startTimeout of its own: the class's
// 2s caps the session's 168h, and the session ends Failed (StartTimeout) on the class's time.
func TestStartTimeoutIsCappedByTheClass(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	mustCreate(t, admin, builders.AgentSandbox(ns, "empty").Replicas(0).StartTimeout(2*time.Second).Obj())
	alice := tenant(t, ns, "hyperpool-session-user", "edit")

	mustCreate(t, alice, builders.AgentSession(ns, "patient", "empty").
		StartPolicy(agentsv1alpha1.RequireWarm).StartTimeout(168*time.Hour).Obj())
	got := waitSession(t, ns, "patient", waitTimeout, "Failed with StartTimeout on the class's 2s", func(s *agentsv1alpha1.AgentSession) bool {
		return s.Status.Phase == agentsv1alpha1.SessionFailed && s.Status.EndReason == agentsv1alpha1.ReasonStartTimeout
	})
	if waited := got.Status.EndTime.Sub(got.CreationTimestamp.Time); waited < time.Second {
		t.Fatalf("ended %v after its creation, before the class's 2s startTimeout", waited)
	}
}

// TestQueuedSessionWithFinalizerFreesTheQueue: a session deleted while it waits, kept by a
// finalizer, must not hold the head of the namespace's FIFO queue for ever.
func TestQueuedSessionWithFinalizerFreesTheQueue(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	mustCreate(t, admin, builders.AgentSandbox(ns, "pool").Replicas(1).Obj())
	mustCreate(t, admin, builders.AgentQuota(ns, "quota").Sessions(1).Obj())
	alice := tenant(t, ns, "hyperpool-session-user", "edit")
	ctx := context.Background()

	readySession(t, alice, ns, "first", "pool")
	// Named to sort first: sessions created in the same second queue by name, and this one
	// must be ahead of "behind" for the test to mean anything.
	stuck := builders.AgentSession(ns, "a-stuck", "pool").Finalizer("tenant.example.com/keep").Obj()
	mustCreate(t, alice, stuck)
	t.Cleanup(func() {
		_ = admin.Patch(ctx, stuck, client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"finalizers":null}}`)))
	})
	waitSession(t, ns, "a-stuck", waitTimeout, "Queued", inPhase(agentsv1alpha1.SessionQueued))
	mustCreate(t, alice, builders.AgentSession(ns, "behind", "pool").Obj())
	waitSession(t, ns, "behind", waitTimeout, "Queued", inPhase(agentsv1alpha1.SessionQueued))

	if err := alice.Delete(ctx, stuck); err != nil {
		t.Fatal(err)
	}
	if err := alice.Delete(ctx, builders.AgentSession(ns, "first", "pool").Obj()); err != nil {
		t.Fatal(err)
	}
	waitSession(t, ns, "behind", waitTimeout, "Ready once the slot freed", inPhase(agentsv1alpha1.SessionReady))
}

// TestOrphanDeleteOfSessionDestroysItsPod: `kubectl delete agentsession --cascade=orphan`
// leaves the pod without an owner; the garbage collector would never delete it.
func TestOrphanDeleteOfSessionDestroysItsPod(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	mustCreate(t, admin, builders.AgentSandbox(ns, "pool").Replicas(1).Obj())
	alice := tenant(t, ns, "hyperpool-session-user", "edit")

	s := readySession(t, alice, ns, "orphan", "pool")
	if err := alice.Delete(context.Background(), s, client.PropagationPolicy(metav1.DeletePropagationOrphan)); err != nil {
		t.Fatal(err)
	}
	waitNoSessionPods(t, ns, "orphan", waitTimeout)
}

// TestOrphanDeleteOfClassDestroysWarmPods: the class author deletes a class with
// --cascade=orphan; its warm pods, left without an owner, are destroyed all the same.
func TestOrphanDeleteOfClassDestroysWarmPods(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	author := classAuthor(t, ns)
	mustCreate(t, author, builders.AgentSandbox(ns, "pool").Replicas(2).Obj())
	eventually(t, waitTimeout, func(context.Context) (bool, string) {
		n := len(sandboxPods(t, ns, "pool"))
		return n == 2, fmt.Sprintf("%d warm pods, want 2", n)
	})
	sb := &agentsv1alpha1.AgentSandbox{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pool"}}
	if err := author.Delete(context.Background(), sb, client.PropagationPolicy(metav1.DeletePropagationOrphan)); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitTimeout, func(context.Context) (bool, string) {
		pods := sandboxPods(t, ns, "pool")
		return len(pods) == 0, fmt.Sprintf("%d warm pod(s) of the deleted class remain: %v", len(pods), podNames(pods))
	})
}

// TestFutureHeartbeatDoesNotExtendTheSession: a heartbeat stamped an hour ahead must not
// keep an idle session alive.
func TestFutureHeartbeatDoesNotExtendTheSession(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	mustCreate(t, admin, builders.AgentSandbox(ns, "pool").Replicas(1).IdleTimeout(4*time.Second).Obj())
	alice := tenant(t, ns, "hyperpool-session-user", "edit")

	s := readySession(t, alice, ns, "idle", "pool")
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, agentsv1alpha1.LastActivityAnnotation, future)
	if err := alice.Patch(context.Background(), s, client.RawPatch("application/merge-patch+json", []byte(patch))); err != nil {
		t.Fatal(err)
	}
	got := waitSession(t, ns, "idle", waitTimeout, "Expired by IdleTimeout", func(s *agentsv1alpha1.AgentSession) bool {
		return s.Status.Phase == agentsv1alpha1.SessionExpired
	})
	if got.Status.EndReason != agentsv1alpha1.ReasonIdleTimeout {
		t.Errorf("end reason %q, want IdleTimeout", got.Status.EndReason)
	}
	if lived := got.Status.EndTime.Sub(got.Status.BoundTime.Time); lived > 4*time.Second+3*time.Second {
		t.Errorf("the session lived %s after its bind with a 4s idle timeout: the future heartbeat extended it", lived)
	}
	waitNoSessionPods(t, ns, "idle", waitTimeout)
}

// TestExpiryFollowsALoweredLifetime: the platform shortens a class's maxLifetime; its bound
// sessions' status.expiryTime follows, and they end by the new deadline.
func TestExpiryFollowsALoweredLifetime(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	author := classAuthor(t, ns)
	mustCreate(t, author, builders.AgentSandbox(ns, "pool").Replicas(1).Obj())
	alice := tenant(t, ns, "hyperpool-session-user", "edit")

	s := readySession(t, alice, ns, "long", "pool")
	if left := time.Until(s.Status.ExpiryTime.Time); left < 30*time.Minute {
		t.Fatalf("expiryTime %s is %s away, want the class's default hour", s.Status.ExpiryTime, left)
	}
	lower := client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"lifetime":{"maxLifetime":"5s","idleTimeout":"5s"}}}`))
	if err := author.Patch(context.Background(), &agentsv1alpha1.AgentSandbox{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pool"}}, lower); err != nil {
		t.Fatal(err)
	}
	got := waitSession(t, ns, "long", waitTimeout, "Expired by the lowered MaxLifetime", inPhase(agentsv1alpha1.SessionExpired))
	if want := got.Status.BoundTime.Add(5 * time.Second); got.Status.ExpiryTime.After(want.Add(time.Second)) {
		t.Errorf("expiryTime %s, want the bind plus the lowered 5s (%s)", got.Status.ExpiryTime, want)
	}
	waitNoSessionPods(t, ns, "long", waitTimeout)
}

// TestEgressPolicyRefusedNothingBinds: when the class's NetworkPolicy cannot be created
// (here a ResourceQuota allows none), egress fails closed: the class says so, creates no
// pod, and no session binds. Once the policy can be created, the session binds.
func TestEgressPolicyRefusedNothingBinds(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	ctx := context.Background()
	rq := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "no-policies"},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{"count/networkpolicies.networking.k8s.io": resource.MustParse("0")}}}
	mustCreate(t, admin, rq)
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		err := admin.Get(ctx, client.ObjectKeyFromObject(rq), rq)
		return err == nil && rq.Status.Hard != nil, "the ResourceQuota's status is not computed yet"
	})
	sb := builders.AgentSandbox(ns, "pool").Replicas(2).Egress(agentsv1alpha1.EgressNone).Obj()
	mustCreate(t, admin, sb)
	alice := tenant(t, ns, "hyperpool-session-user", "edit")
	mustCreate(t, alice, builders.AgentSession(ns, "s", "pool").Obj())

	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		if err := admin.Get(ctx, client.ObjectKeyFromObject(sb), sb); err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(sb.Status.Conditions, agentsv1alpha1.SandboxDegraded)
		return c != nil && c.Reason == agentsv1alpha1.ReasonEgressPolicyNotReady && strings.Contains(c.Message, "pool-egress"),
			fmt.Sprintf("class conditions %+v, want Degraded EgressPolicyNotReady naming pool-egress", sb.Status.Conditions)
	})
	waitSession(t, ns, "s", waitTimeout, "Pending for EgressPolicyNotReady", func(s *agentsv1alpha1.AgentSession) bool {
		c := meta.FindStatusCondition(s.Status.Conditions, agentsv1alpha1.SessionReadyCondition)
		return s.Status.Phase == agentsv1alpha1.SessionPending && c != nil && c.Reason == agentsv1alpha1.ReasonEgressPolicyNotReady
	})
	if pods := sandboxPods(t, ns, "pool"); len(pods) != 0 {
		t.Fatalf("%d pod(s) of the class exist without its egress policy: %v", len(pods), podNames(pods))
	}

	if err := admin.Delete(ctx, rq); err != nil {
		t.Fatal(err)
	}
	waitSession(t, ns, "s", waitTimeout, "Ready once the policy exists", inPhase(agentsv1alpha1.SessionReady))
	np := &networkingv1.NetworkPolicy{}
	if err := admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "pool-egress"}, np); err != nil {
		t.Fatal(err)
	}
	if len(np.Spec.Egress) != 0 {
		t.Errorf("egress None: policy allows %+v", np.Spec.Egress)
	}
}

// TestTenantPolicyUnderTheClassNameIsTakenOver: a tenant makes a NetworkPolicy under the
// name the class's policy will have, before the class exists. The manager takes it over and
// makes it say what the class says; it is never left to the tenant.
func TestTenantPolicyUnderTheClassNameIsTakenOver(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	alice := tenant(t, ns, "hyperpool-session-user", "edit")
	ingressOnly := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pool-egress"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: agentsv1alpha1.ClassLabel, Operator: metav1.LabelSelectorOpDoesNotExist}}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
	}
	mustCreate(t, alice, ingressOnly)
	mustCreate(t, admin, builders.AgentSandbox(ns, "pool").Replicas(1).Egress(agentsv1alpha1.EgressNone).Obj())

	np := &networkingv1.NetworkPolicy{}
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		if err := admin.Get(ctx, client.ObjectKeyFromObject(ingressOnly), np); err != nil {
			return false, err.Error()
		}
		owner := metav1.GetControllerOf(np)
		selects := np.Spec.PodSelector.MatchLabels[agentsv1alpha1.ClassLabel] == "pool" && len(np.Spec.PodSelector.MatchExpressions) == 0
		return owner != nil && owner.Kind == "AgentSandbox" && owner.Name == "pool" && selects &&
				len(np.Spec.PolicyTypes) == 2 && np.Spec.PolicyTypes[0] == networkingv1.PolicyTypeIngress &&
				np.Spec.PolicyTypes[1] == networkingv1.PolicyTypeEgress && len(np.Spec.Egress) == 0 && len(np.Spec.Ingress) == 0,
			fmt.Sprintf("policy %s: owner %v, spec %+v; want the class's egress None, ingress None policy", np.Name, owner, np.Spec)
	})
	readySession(t, alice, ns, "s", "pool")
}

// TestOverflowingDurationsAreRefused: a duration that passes a pattern but overflows Go's
// time.Duration once stopped the manager for every namespace. Every duration field refuses
// it at the API, and another namespace keeps binding meanwhile.
func TestOverflowingDurationsAreRefused(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	other := env.CreateNamespace(t)
	mustCreate(t, admin, builders.AgentSandbox(other, "pool").Replicas(1).Obj())
	mustCreate(t, admin, builders.AgentSandbox(ns, "pool").Replicas(0).Obj())
	alice := tenant(t, ns, "hyperpool-session-user", "edit")
	author := classAuthor(t, ns)
	ctx := context.Background()

	for _, field := range []string{"maxLifetime", "idleTimeout", "ttlAfterFinished"} {
		s := fmt.Sprintf(`{"apiVersion":"agents.hyperpool.io/v1alpha1","kind":"AgentSession","metadata":{"name":"s-%s"},"spec":{"sandboxName":"pool","%s":"3000000h"}}`,
			strings.ToLower(field), field)
		wantRefused(t, "session spec."+field+": 3000000h", createRaw(ctx, alice, ns, s), "spec."+field)
	}
	for _, field := range []string{"lifetime.maxLifetime", "lifetime.idleTimeout", "lifetime.ttlAfterFinished", "replenish.quietPeriod"} {
		parent, leaf, _ := strings.Cut(field, ".")
		c := fmt.Sprintf(`{"apiVersion":"agents.hyperpool.io/v1alpha1","kind":"AgentSandbox","metadata":{"name":"c-%s"},"spec":{"windows":{"imageBuild":20348},"template":{"spec":{"containers":[{"name":"c","image":"i"}]}},%q:{%q:"3000000h"}}}`,
			strings.ToLower(leaf), parent, leaf)
		wantRefused(t, "class spec."+field+": 3000000h", createRaw(ctx, author, ns, c), "spec."+field)
	}
	readySession(t, admin, other, "unaffected", "pool")
}

// TestNamesThatCannotBeLabelsAreRefused: session and class names end up in pod labels,
// which hold 63 characters.
func TestNamesThatCannotBeLabelsAreRefused(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	alice := tenant(t, ns, "hyperpool-session-user", "edit")
	author := classAuthor(t, ns)
	long := strings.Repeat("a", 64)
	ctx := context.Background()
	wantRefused(t, "a 64-character session name", alice.Create(ctx, builders.AgentSession(ns, long, "pool").Obj()), "63")
	wantRefused(t, "a 64-character class name", author.Create(ctx, builders.AgentSandbox(ns, long).Replicas(0).Obj()), "63")
	if err := alice.Create(ctx, builders.AgentSession(ns, long[:63], "pool").Obj()); err != nil {
		t.Errorf("a 63-character session name: %v, want accepted", err)
	}
}

// TestReservedTemplateLabelsAreRefused: a template label agents.hyperpool.io/session made a
// pool count its own warm pods as bound and create pods without end.
func TestReservedTemplateLabelsAreRefused(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	author := classAuthor(t, ns)
	ctx := context.Background()
	for _, key := range []string{agentsv1alpha1.SessionLabel, agentsv1alpha1.ClassLabel, agentsv1alpha1.TemplateHashLabel} {
		wantRefused(t, "template label "+key, author.Create(ctx, builders.AgentSandbox(ns, "pool").Replicas(2).TemplateLabel(key, "x").Obj()), "agents.hyperpool.io/")
		wantRefused(t, "template annotation "+key, author.Create(ctx, builders.AgentSandbox(ns, "pool").Replicas(2).TemplateAnnotation(key, "x").Obj()), "agents.hyperpool.io/")
	}
	if pods := sandboxPods(t, ns, "pool"); len(pods) != 0 {
		t.Errorf("%d pods created for a refused class", len(pods))
	}
}

// createRaw creates a JSON manifest in ns as c, so that values the Go types could not hold
// reach the API server.
func createRaw(ctx context.Context, c client.Client, ns, manifest string) error {
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON([]byte(manifest)); err != nil {
		return err
	}
	u.SetNamespace(ns)
	err := c.Create(ctx, u)
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// TestNoCompatibleNodesWakesWhenANodeAppears: a session blocked because no node can run its
// class's image binds as soon as a node of a new enough build joins.
func TestNoCompatibleNodesWakesWhenANodeAppears(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	// Built for 26100: newer than every node of the test bed.
	mustCreate(t, admin, builders.AgentSandbox(ns, "ltsc2025").Replicas(0).ImageBuild(26100).Obj())
	alice := tenant(t, ns, "hyperpool-session-user", "edit")
	mustCreate(t, alice, builders.AgentSession(ns, "s", "ltsc2025").Obj())
	waitSession(t, ns, "s", waitTimeout, "Pending for NoCompatibleNodes", func(s *agentsv1alpha1.AgentSession) bool {
		c := meta.FindStatusCondition(s.Status.Conditions, agentsv1alpha1.SessionReadyCondition)
		return s.Status.Phase == agentsv1alpha1.SessionPending && c != nil && c.Reason == agentsv1alpha1.ReasonNoCompatibleNodes
	})
	if _, err := env.CreateWindowsNodes(context.Background(), "win2025", 1, "10.0.26100"); err != nil {
		t.Fatal(err)
	}
	got := waitSession(t, ns, "s", waitTimeout, "Ready on the new node", inPhase(agentsv1alpha1.SessionReady))
	if got.Status.StartType != agentsv1alpha1.StartCold {
		t.Errorf("start type %q, want Cold", got.Status.StartType)
	}
}
