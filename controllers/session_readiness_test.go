//go:build !windows

package controllers_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

// TestReadySessionShowsItsPodNotReady: a Ready session whose pod stops being Ready (a
// failing probe, node pressure) says so in its Ready condition, keeps the pod, and says
// Ready again when the pod recovers.
func TestReadySessionShowsItsPodNotReady(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	create(t, newSandbox(ns, "pool", 1, 20348))
	create(t, newSession(ns, "s", "pool"))
	s := waitSession(t, ns, "s", 30*time.Second, "Ready", inPhase(agentsv1alpha1.SessionReady))

	setPodReady := func(status corev1.ConditionStatus) {
		t.Helper()
		pod := &corev1.Pod{}
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: s.Status.PodName}, pod); err != nil {
			t.Fatal(err)
		}
		for i := range pod.Status.Conditions {
			if c := &pod.Status.Conditions[i]; c.Type == corev1.PodReady || c.Type == corev1.ContainersReady {
				c.Status, c.LastTransitionTime = status, metav1.Now()
			}
		}
		if err := k8s.Status().Update(context.Background(), pod); err != nil {
			t.Fatal(err)
		}
	}
	readyIs := func(status metav1.ConditionStatus, reason string) func(*agentsv1alpha1.AgentSession) bool {
		return func(s *agentsv1alpha1.AgentSession) bool {
			c := condition(s.Status.Conditions, agentsv1alpha1.SessionReadyCondition)
			return c != nil && c.Status == status && c.Reason == reason
		}
	}

	setPodReady(corev1.ConditionFalse)
	got := waitSession(t, ns, "s", 30*time.Second, "Ready=False PodNotReady", readyIs(metav1.ConditionFalse, agentsv1alpha1.ReasonPodNotReady))
	if got.Status.PodName != s.Status.PodName || got.Status.Phase.IsFinished() {
		t.Errorf("the session gave up its pod: phase %q, pod %q (had %q)", got.Status.Phase, got.Status.PodName, s.Status.PodName)
	}
	setPodReady(corev1.ConditionTrue)
	got = waitSession(t, ns, "s", 30*time.Second, "Ready=True again", readyIs(metav1.ConditionTrue, agentsv1alpha1.ReasonBound))
	if !got.Status.ReadyTime.Equal(s.Status.ReadyTime) {
		t.Errorf("readyTime moved from %s to %s: it is when the session first became Ready", s.Status.ReadyTime, got.Status.ReadyTime)
	}
}
