package controllers

// A session's status: the conditions it shows and its one write per reconcile.

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

// markReady records the first time the session's pod is Ready: phase Ready, readyTime, and
// the bind latency metric.
func (r *AgentSessionReconciler) markReady(s *agentsv1alpha1.AgentSession, now time.Time) {
	t := metav1.NewTime(now)
	s.Status.Phase = agentsv1alpha1.SessionReady
	s.Status.ReadyTime = &t
	// No Event here: a bind is the normal path, recorded by this condition and the
	// hyperpool_bind_duration_seconds metric; an Event per bind would be one more API write
	// on every bind. Events are kept for what needs a look: queueing, failures, expiry.
	meta.SetStatusCondition(&s.Status.Conditions, readyCondition(s))
	bindDuration.WithLabelValues(s.Namespace, s.Spec.SandboxName, string(s.Status.StartType)).Observe(now.Sub(s.CreationTimestamp.Time).Seconds())
}

// readyCondition is the Ready condition of a session whose bound pod is Ready.
func readyCondition(s *agentsv1alpha1.AgentSession) metav1.Condition {
	return metav1.Condition{Type: agentsv1alpha1.SessionReadyCondition,
		Status: metav1.ConditionTrue, Reason: agentsv1alpha1.ReasonBound,
		Message: fmt.Sprintf("%s start: sandbox pod %s on node %s is Ready", s.Status.StartType, s.Status.PodName, s.Status.NodeName)}
}

func setPending(s *agentsv1alpha1.AgentSession, reason, message string) {
	s.Status.Phase = agentsv1alpha1.SessionPending
	meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{Type: agentsv1alpha1.SessionReadyCondition,
		Status: metav1.ConditionFalse, Reason: reason, Message: message})
}

// writeStatus writes the session's status once, when the reconcile changed it. A merge
// patch without a resourceVersion: the manager is the status's only writer, and a heartbeat
// annotation landing meanwhile must not make the write fail.
func (r *AgentSessionReconciler) writeStatus(ctx context.Context, s *agentsv1alpha1.AgentSession, before *agentsv1alpha1.AgentSessionStatus) error {
	for i := range s.Status.Conditions {
		s.Status.Conditions[i].ObservedGeneration = s.Generation
	}
	if sameStatus(before, &s.Status) {
		return nil
	}
	orig := s.DeepCopy()
	orig.Status = *before
	if err := r.Status().Patch(ctx, s, client.MergeFrom(orig)); err != nil {
		return client.IgnoreNotFound(err)
	}
	r.written.remember(s)
	return nil
}
