package controllers

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

// A session bound by an earlier leader, whose pod this manager's cache does not show yet
// (its pod watch behind its session watch, as after a kube-apiserver restart), keeps its
// pod: the API server is asked before the pod is called deleted. Found by the chaos test:
// a few sessions ended Failed/PodDeleted, their pods alive, after a restart.
func TestBoundPodAsksTheAPIServerWhenTheCacheLags(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := agentsv1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	s := &agentsv1alpha1.AgentSession{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "alice", UID: "session-uid"},
		Spec: agentsv1alpha1.AgentSessionSpec{SandboxName: "pool"}}
	s.Status.PodName = "pool-abcde"
	s.Status.Phase = agentsv1alpha1.SessionReady
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "pool-abcde",
		Labels:          map[string]string{agentsv1alpha1.SessionLabel: "alice", agentsv1alpha1.SandboxLabel: "pool"},
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(s, agentsv1alpha1.GroupVersion.WithKind("AgentSession"))}}}

	laggingCache := fake.NewClientBuilder().WithScheme(scheme).
		WithIndex(&corev1.Pod{}, podSessionIndex, labelIndex(agentsv1alpha1.SessionLabel)).Build()
	for _, tc := range []struct {
		name    string
		api     []client.Object
		wantPod bool
	}{
		{"pod on the API server", []client.Object{pod}, true},
		{"pod gone", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &AgentSessionReconciler{Client: laggingCache, claims: newClaimTracker(),
				APIReader: fake.NewClientBuilder().WithScheme(scheme).WithObjects(tc.api...).Build()}
			got, waitForCache, err := r.boundPod(context.Background(), s)
			if err != nil || waitForCache {
				t.Fatalf("boundPod: err %v, waitForCache %v", err, waitForCache)
			}
			if (got != nil) != tc.wantPod || (got != nil && got.Name != pod.Name) {
				t.Errorf("boundPod = %v, want the pod: %v", got, tc.wantPod)
			}
		})
	}
}

// The pods of a session that this manager's cache does not show (its session watch behind
// its pod watch, as after a kube-apiserver restart) are not destroyed as orphans while the
// API server still has the session; they are once it is really gone.
func TestOrphanedPodsAreCheckedAgainstTheAPIServer(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := agentsv1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	s := &agentsv1alpha1.AgentSession{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "bob", UID: "session-uid"},
		Spec: agentsv1alpha1.AgentSessionSpec{SandboxName: "pool"}}
	for _, tc := range []struct {
		name     string
		api      []client.Object
		wantKept bool
	}{
		{"session on the API server", []client.Object{s}, true},
		{"session gone", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "pool-fghij",
				Labels:          map[string]string{agentsv1alpha1.SessionLabel: "bob", agentsv1alpha1.SandboxLabel: "pool"},
				OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(s, agentsv1alpha1.GroupVersion.WithKind("AgentSession"))}}}
			laggingCache := fake.NewClientBuilder().WithScheme(scheme).WithObjects(pod).
				WithIndex(&corev1.Pod{}, podSessionIndex, labelIndex(agentsv1alpha1.SessionLabel)).Build()
			r := &AgentSessionReconciler{Client: laggingCache, claims: newClaimTracker(),
				APIReader: fake.NewClientBuilder().WithScheme(scheme).WithObjects(tc.api...).Build()}
			if err := r.destroyOrphanedPods(context.Background(), client.ObjectKeyFromObject(s)); err != nil {
				t.Fatal(err)
			}
			err := laggingCache.Get(context.Background(), client.ObjectKeyFromObject(pod), &corev1.Pod{})
			if kept := err == nil; kept != tc.wantKept {
				t.Errorf("pod kept: %v, want %v (get: %v)", kept, tc.wantKept, err)
			}
		})
	}
}
