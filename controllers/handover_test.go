package controllers

import (
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

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
	warm := builders.Pod("team", "pool-abcde").Label(agentsv1alpha1.ClassLabel, "pool").OwnedBy(sb).Node("n1").Ready().Obj()
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

// A warm bind's pod patch that fails without saying whether it landed (the connection to
// kube-apiserver dropped while it restarted, or etcd timed out) may have bound the pod. The
// next reconcile, with a cache that does not show it yet, must ask the API server which
// pods the session holds rather than bind another: without that, the retry binds a second
// warm pod and the session holds two.
func TestBindWriteOfUnknownOutcomeIsNotRepeated(t *testing.T) {
	scheme := unitScheme(t)
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	sb := builders.AgentSandbox("team", "pool").Replicas(2).Obj()
	sb.UID = "class-uid"
	policy := desiredEgressPolicy(sb, DefaultConfig().InternetEgressExcept)
	policy.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(sb, agentsv1alpha1.GroupVersion.WithKind("AgentSandbox"))}
	s := builders.AgentSession("team", "carol", "pool").UID("session-uid").Created(now).MaxLifetime(time.Hour).QuotaReserved().Obj()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}
	warm := func(name string) *corev1.Pod {
		p := builders.Pod("team", name).Label(agentsv1alpha1.ClassLabel, "pool").OwnedBy(sb).Node("n1").Ready().Obj()
		p.Status.Phase = corev1.PodRunning
		return p
	}
	objects := func() []client.Object {
		return []client.Object{sb.DeepCopy(), s.DeepCopy(), policy.DeepCopy(), node.DeepCopy(), warm("pool-aaaaa"), warm("pool-bbbbb")}
	}
	for _, tc := range []struct {
		name     string
		writeErr error // what the first pod patch returns once it has landed on the API server
		wantPods int   // pods bound to the session on the API server after the retry
	}{
		{"the connection dropped after the patch landed", errors.New("http2: client connection lost"), 1},
		{"etcd timed out, and the patch committed anyway", apierrors.NewInternalError(errors.New("etcdserver: request timed out")), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The API server, and a cache that shows none of the writes (it lags).
			apiServer := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objects()...).Build()
			failed := false
			cache := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objects()...).WithStatusSubresource(s).
				WithIndex(&corev1.Pod{}, podSessionIndex, labelIndex(agentsv1alpha1.SessionLabel)).
				WithInterceptorFuncs(interceptor.Funcs{Patch: func(ctx context.Context, _ client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
					if err := apiServer.Patch(ctx, obj, patch, opts...); err != nil {
						return err
					}
					if !failed {
						failed = true
						return tc.writeErr
					}
					return nil
				}}).Build()
			d := unitDeps(cache, clocktesting.NewFakePassiveClock(now))
			d.apiReader = apiServer
			shared := &sharedState{candidates: newWarmCandidates(), takes: newTakeClock(d.clock)}
			for _, name := range []string{"pool-aaaaa", "pool-bbbbb"} {
				shared.candidates.handler().OnAdd(warm(name), false)
			}
			r := newAgentSessionReconciler(d, shared)

			if _, err := r.reconcileSession(context.Background(), s.DeepCopy()); err == nil {
				t.Fatal("the first reconcile's bind write failed, and the reconcile says nothing")
			}
			retried := s.DeepCopy()
			if _, err := r.reconcileSession(context.Background(), retried); err != nil {
				t.Fatalf("the retry: %v", err)
			}
			pods := &corev1.PodList{}
			if err := apiServer.List(context.Background(), pods, client.MatchingLabels{agentsv1alpha1.SessionLabel: s.Name}); err != nil {
				t.Fatal(err)
			}
			if len(pods.Items) != tc.wantPods || retried.Status.PodName != pods.Items[0].Name {
				var names []string
				for _, p := range pods.Items {
					names = append(names, p.Name)
				}
				t.Errorf("the API server shows the session holding %v, its status names %q; want one pod, the one named", names, retried.Status.PodName)
			}
		})
	}
}

func TestWriteMayHaveLanded(t *testing.T) {
	gr := corev1.Resource("pods")
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{errors.New("read tcp: connection reset by peer"), true},
		{context.DeadlineExceeded, true},
		{apierrors.NewInternalError(errors.New("etcdserver: request timed out")), true},
		{apierrors.NewTimeoutError("request did not complete", 0), true},
		{apierrors.NewServerTimeout(gr, "patch", 0), true},
		{apierrors.NewConflict(gr, "p", errors.New("changed")), false},
		{apierrors.NewNotFound(gr, "p"), false},
		{apierrors.NewForbidden(gr, "p", errors.New("quota")), false},
		{apierrors.NewTooManyRequests("slow down", 1), false},
		{apierrors.NewServiceUnavailable("shutting down"), false},
	} {
		if got := writeMayHaveLanded(tc.err); got != tc.want {
			t.Errorf("writeMayHaveLanded(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
