package controllers

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/builders"
)

// A session past its deadline whose pod is gone was ended by a manager that deleted the
// pod and died (or lost its Lease) before writing the status: the next leader records it
// Expired, not Failed/PodDeleted. Found by the chaos test: sessions ended "Failed/PodDeleted:
// deleted by someone else" while kube-apiserver's audit log showed hyperpool-manager
// deleting their pods right before it was killed. A pod gone before the deadline is still
// PodDeleted.
func TestPodGoneAfterTheDeadlineIsAnExpiry(t *testing.T) {
	scheme := unitScheme(t)
	sb := builders.AgentSandbox("team", "pool").Replicas(1).Obj()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name       string
		boundAgo   time.Duration
		wantPhase  agentsv1alpha1.SessionPhase
		wantReason string
	}{
		{"pod gone after the max lifetime", 10 * time.Second, agentsv1alpha1.SessionExpired, agentsv1alpha1.ReasonMaxLifetime},
		{"pod gone before it", time.Second, agentsv1alpha1.SessionFailed, agentsv1alpha1.ReasonPodDeleted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := builders.AgentSession("team", "carol", "pool").UID("session-uid").MaxLifetime(3*time.Second).
				Phase(agentsv1alpha1.SessionReady).BoundTo("pool-klmno", now.Add(-tc.boundAgo)).Obj()
			c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(sb).
				WithIndex(&corev1.Pod{}, podSessionIndex, labelIndex(agentsv1alpha1.SessionLabel)).Build()
			r := newAgentSessionReconciler(unitDeps(c, clocktesting.NewFakePassiveClock(now)), &sharedState{})
			if _, err := r.reconcileSession(context.Background(), s); err != nil {
				t.Fatal(err)
			}
			if s.Status.Phase != tc.wantPhase || s.Status.EndReason != tc.wantReason {
				t.Errorf("ended %s/%s, want %s/%s", s.Status.Phase, s.Status.EndReason, tc.wantPhase, tc.wantReason)
			}
		})
	}
}
