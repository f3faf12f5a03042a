//go:build !windows

package controller

import (
	"context"
	"fmt"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/builders"
)

// TestReadySessionShowsItsPodNotReady: a Ready session whose pod stops being Ready (a
// failing probe, node pressure) says so in its Ready condition, keeps the pod, and says
// Ready again when the pod recovers.
func TestReadySessionShowsItsPodNotReady(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	create(t, builders.AgentSandbox(ns, "pool").Replicas(1).Obj())
	create(t, builders.AgentSession(ns, "s", "pool").Obj())
	s := waitSession(t, ns, "s", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))

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
	got := waitSession(t, ns, "s", waitTimeout, "Ready=False PodNotReady", readyIs(metav1.ConditionFalse, agentsv1alpha1.ReasonPodNotReady))
	if got.Status.PodName != s.Status.PodName || got.Status.Phase.IsFinished() {
		t.Errorf("the session gave up its pod: phase %q, pod %q (had %q)", got.Status.Phase, got.Status.PodName, s.Status.PodName)
	}
	setPodReady(corev1.ConditionTrue)
	got = waitSession(t, ns, "s", waitTimeout, "Ready=True again", readyIs(metav1.ConditionTrue, agentsv1alpha1.ReasonBound))
	if !got.Status.ReadyTime.Equal(s.Status.ReadyTime) {
		t.Errorf("readyTime moved from %s to %s: it is when the session first became Ready", s.Status.ReadyTime, got.Status.ReadyTime)
	}
}

// TestStrayWarmPodIsDestroyed: a warm pod that lost its owner reference (an edit by an
// identity the admission policy exempts, an orphaning delete of an earlier class of that
// name) is destroyed and replaced, as a ReplicaSet deletes pods it does not control.
func TestStrayWarmPodIsDestroyed(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	create(t, builders.AgentSandbox(ns, "pool").Replicas(1).Obj())
	waitPoolReady(t, ns, "pool", 1, waitTimeout)
	stray := warmPods(t, ns, "pool")[0]
	strip := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"ownerReferences":null}}`))
	if err := k8s.Patch(context.Background(), &stray, strip); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		p := &corev1.Pod{}
		err := k8s.Get(ctx, client.ObjectKeyFromObject(&stray), p)
		gone := apierrors.IsNotFound(err) || (err == nil && !p.DeletionTimestamp.IsZero())
		return gone, fmt.Sprintf("stray pod %s still there (%v)", stray.Name, err)
	})
	waitPoolReady(t, ns, "pool", 1, waitTimeout)
}

// TestFailedPodDeleteIsRetriedWithinSeconds: when the API server refuses to delete an ended
// session's pod, the delete is retried with backoff, not only at the session's
// ttlAfterFinished (10 minutes by default).
func TestFailedPodDeleteIsRetriedWithinSeconds(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	ctx := context.Background()
	create(t, builders.AgentSandbox(ns, "pool").Replicas(1).MaxLifetime(3*time.Second).Obj())
	waitPoolReady(t, ns, "pool", 1, waitTimeout)

	// A policy refusing every pod delete in this namespace stands for whatever makes a
	// delete fail (an API server restart, a webhook timing out).
	name := "refuse-pod-deletes-" + ns
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Delete},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
				}}}},
			Validations: []admissionregistrationv1.Validation{{Expression: "false", Message: "pod deletes refused by the test"}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			MatchResources: &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}}},
	}
	create(t, policy)
	create(t, binding)
	removePolicy := func() {
		_ = k8s.Delete(ctx, binding)
		_ = k8s.Delete(ctx, policy)
	}
	t.Cleanup(removePolicy)
	probe := warmPods(t, ns, "pool")[0]
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		err := k8s.Delete(ctx, &probe, client.DryRunAll)
		return apierrors.IsForbidden(err) || apierrors.IsInvalid(err), fmt.Sprintf("the policy is not in force yet: dry-run delete: %v", err)
	})

	create(t, builders.AgentSession(ns, "s", "pool").Obj())
	s := waitSession(t, ns, "s", waitTimeout, "Expired", inPhase(agentsv1alpha1.SessionExpired))
	pod := &corev1.Pod{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: s.Status.PodName}, pod); err != nil || !pod.DeletionTimestamp.IsZero() {
		t.Fatalf("the pod of the expired session should still be there while deletes are refused: %v", err)
	}
	removePolicy()
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		err := k8s.Get(ctx, client.ObjectKeyFromObject(pod), pod)
		return apierrors.IsNotFound(err) || (err == nil && !pod.DeletionTimestamp.IsZero()),
			fmt.Sprintf("pod %s of the expired session not deleted once deletes were allowed again (%v)", pod.Name, err)
	})
}
