package controllers

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/builders"
)

// A manager that has just taken the Lease, with a cache that lags the API server, must not
// bind a second pod for a session its predecessor bound. The cache shows the state before
// the predecessor's bind (the pod warm and unbound, the session with no pod); the API server
// shows the bind (the pod labelled for the session and owned by it). This is the double
// bind the chaos test's kill with etcd paused found: two leaders one after the other each
// bound a pod for one session. Without the handover, the new leader's reconcile goes on to
// bind (here it stops at the egress policy, as Pending with no pod): the test fails.
//
// A lagging informer cannot be made on demand against a real API server, so the cache and
// the API server are two fake clients holding the two states.
func TestNewLeaderDoesNotBindASessionItsPredecessorBound(t *testing.T) {
	scheme := unitScheme(t)
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	sb := builders.AgentSandbox("team", "pool").Replicas(1).Obj()
	sb.UID = "class-uid"
	// The session as the lagging cache and as the API server show it: admitted, no pod (the
	// predecessor died between its two writes, or the cache lags the status too).
	s := builders.AgentSession("team", "carol", "pool").UID("session-uid").Created(now).MaxLifetime(time.Hour).QuotaReserved().Obj()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}
	warm := builders.Pod("team", "pool-abcde").Label(agentsv1alpha1.SandboxLabel, "pool").OwnedBy(sb).Node("n1").Ready().Obj()
	bound := warm.DeepCopy()
	bound.Labels[agentsv1alpha1.SessionLabel] = s.Name
	bound.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(s, agentsv1alpha1.GroupVersion.WithKind("AgentSession"))}

	for _, tc := range []struct {
		name    string
		cached  *corev1.Pod // the pod in the new leader's cache
		apiPod  *corev1.Pod // and on the API server
		wantPod string      // status.podName after one reconcile
	}{
		{"the cache lags the predecessor's bind: the pod it bound is kept, none is bound", warm, bound, "pool-abcde"},
		{"the cache shows the bind", bound, bound, "pool-abcde"},
		{"nothing was bound: the session goes on to bind (here: waits for its egress policy)", warm, warm, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cache := fake.NewClientBuilder().WithScheme(scheme).WithObjects(sb, s.DeepCopy(), node, tc.cached.DeepCopy()).
				WithIndex(&corev1.Pod{}, podSessionIndex, labelIndex(agentsv1alpha1.SessionLabel)).Build()
			apiServer := &countingReader{Reader: fake.NewClientBuilder().WithScheme(scheme).WithObjects(sb, s.DeepCopy(), node, tc.apiPod.DeepCopy()).Build()}
			d := unitDeps(cache, clocktesting.NewFakePassiveClock(now))
			d.apiReader = apiServer
			r := newAgentSessionReconciler(d, &sharedState{candidates: newWarmCandidates()})

			session := s.DeepCopy()
			if _, err := r.reconcileSession(context.Background(), session); err != nil {
				t.Fatal(err)
			}
			if session.Status.PodName != tc.wantPod {
				t.Errorf("status.podName %q (phase %s, conditions %+v), want %q", session.Status.PodName, session.Status.Phase, session.Status.Conditions, tc.wantPod)
			}
			// No second pod: nothing in the namespace is bound but what the API server shows.
			pods := &corev1.PodList{}
			if err := cache.List(context.Background(), pods, client.InNamespace("team")); err != nil {
				t.Fatal(err)
			}
			if len(pods.Items) != 1 {
				t.Errorf("%d pods after the reconcile, want the one", len(pods.Items))
			}

			// The handover is one List for the process, whatever the reconciles after it.
			if _, err := r.reconcileSession(context.Background(), s.DeepCopy()); err != nil {
				t.Fatal(err)
			}
			if apiServer.lists != 1 {
				t.Errorf("%d Lists from the API server over two reconciles, want 1 (the handover)", apiServer.lists)
			}
		})
	}
}

// countingReader counts the Lists sent to the API server.
type countingReader struct {
	client.Reader
	lists int
}

func (c *countingReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	c.lists++
	return c.Reader.List(ctx, list, opts...)
}
