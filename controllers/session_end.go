package controllers

// A session's end: tracking its pod and its deadline, expiry, failure, deletion, and the
// destruction of its pod; finished sessions are collected after ttlAfterFinished.

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/podstate"
)

// reconcileDeletion ends a session being deleted and destroys its pod at once. The garbage
// collector would delete the pod only once the session object is gone, and a finalizer
// (anyone's, e.g. a tenant's) can keep it for ever: the sandbox must not outlive its
// deadline because its session object does.
func (r *AgentSessionReconciler) reconcileDeletion(ctx context.Context, s *agentsv1alpha1.AgentSession) (ctrl.Result, error) {
	ctx, events := withEventQueue(ctx)
	before := s.Status.DeepCopy()
	if !s.Status.Phase.IsFinished() {
		// Ended, bound or not: a session still queued would otherwise hold its place at the
		// head of the namespace's FIFO queue for as long as its finalizer stays.
		r.end(ctx, s, nil, agentsv1alpha1.SessionTerminated, agentsv1alpha1.ReasonSessionDeleted,
			"the session is being deleted; its sandbox is destroyed now")
	}
	statusErr := r.writeStatus(ctx, s, before)
	if statusErr == nil {
		events.emit(r.recorder)
	}
	return ctrl.Result{}, errors.Join(statusErr, r.destroyPods(ctx, s.Namespace, s.Name, s.UID))
}

// track follows a bound session's pod and ends the session when the pod dies or a limit is
// reached. It makes no API write unless something changed.
func (r *AgentSessionReconciler) track(ctx context.Context, s *agentsv1alpha1.AgentSession, sb *agentsv1alpha1.AgentSandbox, pod *corev1.Pod) (ctrl.Result, error) {
	if s.Status.BoundTime == nil { // bound by an earlier manager that died before writing status
		r.markBound(s, shapeOf(sb), pod, startTypeOf(pod))
	}
	s.Status.PodName, s.Status.NodeName, s.Status.PodIP = pod.Name, pod.Spec.NodeName, pod.Status.PodIP

	if reason, msg, failed, err := r.podFailure(ctx, pod); err != nil {
		return ctrl.Result{}, err
	} else if failed {
		r.end(ctx, s, pod, agentsv1alpha1.SessionFailed, reason, msg)
		return r.deleteAfterTTL(ctx, s) // the held pod is gone, or goes once the end is written
	}

	now := r.clock.Now()
	if _, err := parseHeartbeat(s.Annotations); err != nil && r.heartbeats.firstReport(client.ObjectKeyFromObject(s), s.UID, s.Annotations[agentsv1alpha1.LastActivityAnnotation]) {
		r.event(ctx, s, nil, corev1.EventTypeWarning, "MalformedHeartbeat", "Heartbeat", err.Error())
	}
	dl := r.deadlineOf(s, sb, s.Annotations)
	if !now.Before(dl.end) && dl.reason == agentsv1alpha1.ReasonIdleTimeout {
		// A heartbeat triggers no reconcile, so the cached session can predate the newest
		// one: ask the API server before ending a session that may still be in use.
		fresh := &agentsv1alpha1.AgentSession{}
		if err := r.apiReader.Get(ctx, client.ObjectKeyFromObject(s), fresh); client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, err
		} else if err == nil {
			dl = r.deadlineOf(s, sb, fresh.Annotations)
		}
	}
	if !now.Before(dl.end) {
		return r.expire(ctx, s, sb, pod, dl.reason)
	}
	// The class's lifetime can change after the bind: the stored deadline follows it. The
	// display value is rounded down, a time the session surely lasts until; the precise one
	// is what the requeue below is driven by.
	s.Status.PreciseExpiryTime = &metav1.MicroTime{Time: dl.expiry}
	s.Status.ExpiryTime = &metav1.Time{Time: dl.expiry.Truncate(time.Second)}

	switch {
	case podstate.Ready(pod) && s.Status.Phase != agentsv1alpha1.SessionReady:
		r.markReady(s, now)
	case podstate.Ready(pod):
		// Ready again after a spell of not being so: say so (no new readyTime, no metric).
		meta.SetStatusCondition(&s.Status.Conditions, readyCondition(s))
	case s.Status.Phase == agentsv1alpha1.SessionReady:
		meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{Type: agentsv1alpha1.SessionReadyCondition,
			Status: metav1.ConditionFalse, Reason: agentsv1alpha1.ReasonPodNotReady,
			Message: fmt.Sprintf("sandbox pod %s is not Ready any more; the session keeps it, check the pod's conditions and events", pod.Name)})
	default:
		meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{Type: agentsv1alpha1.SessionReadyCondition,
			Status: metav1.ConditionFalse, Reason: agentsv1alpha1.ReasonPodStarting,
			Message: fmt.Sprintf("sandbox pod %s is starting (its Hyper-V VM is booting)", pod.Name)})
	}
	mirrorCredentials(s)
	return ctrl.Result{RequeueAfter: dl.end.Sub(now)}, nil
}

// deadlineOf is the deadline of a bound session of class sb, with the heartbeat in
// annotations (a malformed one counts as none; track reports it).
func (r *AgentSessionReconciler) deadlineOf(s *agentsv1alpha1.AgentSession, sb *agentsv1alpha1.AgentSandbox, annotations map[string]string) deadline {
	heartbeat, _ := parseHeartbeat(annotations)
	return sessionDeadline(boundAt(&s.Status), heartbeat, effectiveLifetime(&sb.Spec.Lifetime, &s.Spec), r.clock.Now())
}

// boundAt is the stored instant a bound session's lifetimes count from: its
// preciseBoundTime, read from the API server like any status, so a new leader computes
// the same exact deadline. A session bound by a manager older than that field has only
// boundTime, which such a manager rounded up to the second: counting from it is never early.
func boundAt(st *agentsv1alpha1.AgentSessionStatus) time.Time {
	if st.PreciseBoundTime != nil {
		return st.PreciseBoundTime.Time
	}
	return st.BoundTime.Time
}

// deadlineReached returns why a bound session has reached its deadline, or "".
func (r *AgentSessionReconciler) deadlineReached(s *agentsv1alpha1.AgentSession, sb *agentsv1alpha1.AgentSandbox) string {
	if s.Status.BoundTime == nil {
		return ""
	}
	if dl := r.deadlineOf(s, sb, s.Annotations); !r.clock.Now().Before(dl.end) {
		return dl.reason
	}
	return ""
}

// expire ends a session that reached its deadline (why: MaxLifetime or IdleTimeout);
// Reconcile destroys its pod (nil: already gone) once the end is written.
func (r *AgentSessionReconciler) expire(ctx context.Context, s *agentsv1alpha1.AgentSession, sb *agentsv1alpha1.AgentSandbox, pod *corev1.Pod, why string) (ctrl.Result, error) {
	lt := effectiveLifetime(&sb.Spec.Lifetime, &s.Spec)
	r.end(ctx, s, pod, agentsv1alpha1.SessionExpired, why, expiryMessage(why, lt))
	sessionExpirations.WithLabelValues(s.Namespace, s.Spec.SandboxName, why).Inc()
	return r.deleteAfterTTL(ctx, s) // the held pod is gone, or goes once the end is written
}

func expiryMessage(reason string, lt lifetime) string {
	if reason == agentsv1alpha1.ReasonIdleTimeout {
		return fmt.Sprintf("no heartbeat (annotation %s) for %s, the idle timeout", agentsv1alpha1.LastActivityAnnotation, lt.IdleTimeout)
	}
	return fmt.Sprintf("the session reached its max lifetime of %s", lt.MaxLifetime)
}

// podFailure says whether the session's pod can no longer serve it, and why.
func (r *AgentSessionReconciler) podFailure(ctx context.Context, pod *corev1.Pod) (reason, message string, failed bool, err error) {
	switch {
	case !pod.DeletionTimestamp.IsZero():
		return agentsv1alpha1.ReasonPodDeleted, fmt.Sprintf("sandbox pod %s is being deleted by someone else", pod.Name), true, nil
	case podstate.Terminated(pod):
		why := pod.Status.Reason
		if why == "" {
			why = string(pod.Status.Phase)
		}
		return agentsv1alpha1.ReasonPodFailed, fmt.Sprintf("sandbox pod %s ended: %s %s", pod.Name, why, pod.Status.Message), true, nil
	}
	if gone, err := nodeGone(ctx, r.Client, pod.Spec.NodeName); err != nil || !gone {
		return "", "", false, err
	}
	return agentsv1alpha1.ReasonNodeLost, fmt.Sprintf("node %s of sandbox pod %s is gone", pod.Spec.NodeName, pod.Name), true, nil
}

// startDeadlineLeft is how long the unbound session s may still wait for its sandbox
// (startTimeout from its creation), and whether a start timeout applies at all.
func (r *AgentSessionReconciler) startDeadlineLeft(s *agentsv1alpha1.AgentSession, sb *agentsv1alpha1.AgentSandbox) (time.Duration, bool) {
	var class *agentsv1alpha1.LifetimeSpec
	if sb != nil {
		class = &sb.Spec.Lifetime
	}
	timeout := startTimeout(class, &s.Spec)
	if timeout <= 0 {
		return 0, false
	}
	return s.CreationTimestamp.Add(timeout).Sub(r.clock.Now()), true
}

// endOnStartTimeout ends a session still Pending or Queued past its startTimeout: Failed,
// reason StartTimeout. Its place in the quota queue goes with it: the ledger forgets it
// here, and the sessionEnded predicate wakes the head of the queue once the end is written.
func (r *AgentSessionReconciler) endOnStartTimeout(ctx context.Context, s *agentsv1alpha1.AgentSession, sb *agentsv1alpha1.AgentSandbox) bool {
	left, ok := r.startDeadlineLeft(s, sb)
	if !ok || left > 0 {
		return false
	}
	var class *agentsv1alpha1.LifetimeSpec
	if sb != nil {
		class = &sb.Spec.Lifetime
	}
	waited := fmt.Sprintf("still %s", s.Status.Phase)
	if s.Status.Phase == "" {
		waited = "still not started"
	}
	r.quota.releaseSession(s)
	r.end(ctx, s, nil, agentsv1alpha1.SessionFailed, agentsv1alpha1.ReasonStartTimeout, fmt.Sprintf(
		"%s after its startTimeout of %s (spec.startTimeout, capped by the class's spec.lifetime.startTimeout); create a new session, raise the timeout, or add warm sandboxes or quota",
		waited, startTimeout(class, &s.Spec)))
	return true
}

// requeueAtStartDeadline makes sure a session that is still waiting is looked at again
// when its startTimeout runs out: waiting sessions are otherwise woken only by events
// (a warm pod Ready, quota freed), which may never come.
func (r *AgentSessionReconciler) requeueAtStartDeadline(ctx context.Context, s *agentsv1alpha1.AgentSession, result ctrl.Result) ctrl.Result {
	if s.Status.PodName != "" || s.Status.Phase.IsFinished() {
		return result
	}
	sb, err := r.getSandbox(ctx, s)
	if err != nil {
		return result
	}
	left, ok := r.startDeadlineLeft(s, sb)
	if !ok {
		return result
	}
	left = max(left, time.Millisecond)
	if result.RequeueAfter == 0 || left < result.RequeueAfter {
		result.RequeueAfter = left
	}
	return result
}

// end finishes the session; Reconcile destroys its pod once the end is written.
func (r *AgentSessionReconciler) end(ctx context.Context, s *agentsv1alpha1.AgentSession, pod *corev1.Pod, phase agentsv1alpha1.SessionPhase, reason, message string) {
	now := metav1.NewTime(r.clock.Now())
	s.Status.Phase = phase
	s.Status.EndReason = reason
	s.Status.EndTime = &now
	meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{Type: agentsv1alpha1.SessionReadyCondition,
		Status: metav1.ConditionFalse, Reason: reason, Message: message})
	eventType := corev1.EventTypeNormal
	if phase == agentsv1alpha1.SessionFailed {
		eventType = corev1.EventTypeWarning
	}
	var related runtime.Object
	if pod != nil {
		related = pod
	}
	r.event(ctx, s, related, eventType, reason, "End", fmt.Sprintf("session %s: %s", phase, message))
}

// collectFinished destroys what a finished session still holds and deletes the session
// ttlAfterFinished after it ended, re-reading it from the API server first and deleting
// with a UID precondition, as the Job TTL controller does.
func (r *AgentSessionReconciler) collectFinished(ctx context.Context, s *agentsv1alpha1.AgentSession) (ctrl.Result, error) {
	if err := r.destroyPods(ctx, s.Namespace, s.Name, s.UID); err != nil {
		return ctrl.Result{}, err
	}
	return r.deleteAfterTTL(ctx, s)
}

// deleteAfterTTL deletes a finished session once its ttlAfterFinished has passed, and
// requeues for that moment until then.
func (r *AgentSessionReconciler) deleteAfterTTL(ctx context.Context, s *agentsv1alpha1.AgentSession) (ctrl.Result, error) {
	var class *agentsv1alpha1.LifetimeSpec
	if sb, err := r.getSandbox(ctx, s); err == nil && sb != nil {
		class = &sb.Spec.Lifetime
	}
	ended := s.CreationTimestamp.Time
	if s.Status.EndTime != nil {
		ended = s.Status.EndTime.Time
	}
	if left := ended.Add(effectiveLifetime(class, &s.Spec).TTLAfterFinished).Sub(r.clock.Now()); left > 0 {
		return ctrl.Result{RequeueAfter: left}, nil
	}
	fresh := &agentsv1alpha1.AgentSession{}
	if err := r.apiReader.Get(ctx, client.ObjectKeyFromObject(s), fresh); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if fresh.UID != s.UID || !fresh.Status.Phase.IsFinished() {
		return ctrl.Result{}, nil
	}
	err := r.Delete(ctx, fresh, client.Preconditions{UID: &fresh.UID})
	return ctrl.Result{}, client.IgnoreNotFound(err)
}

// destroyOrphanedPods deletes the pods of a session that is gone. The garbage collector
// would too; doing it at once frees the VM sooner and does not depend on it.
func (r *AgentSessionReconciler) destroyOrphanedPods(ctx context.Context, key types.NamespacedName) error {
	return r.destroyPods(ctx, key.Namespace, key.Name, "")
}

// destroyPods deletes the pods bound to the named session: those it owns (uid set), or, for
// a deleted session (uid empty), those whose owner is no longer there. A pod labelled for
// the session with no hyperpool controller is destroyed too: its owner reference was
// removed (an orphaning delete of the session), and no one else would ever delete it. A
// foreign controller reference counts as none (hyperpoolController).
func (r *AgentSessionReconciler) destroyPods(ctx context.Context, namespace, session string, uid types.UID) error {
	list := &corev1.PodList{}
	if err := r.List(ctx, list, client.InNamespace(namespace), client.MatchingFields{podSessionIndex: session}); err != nil {
		return err
	}
	for i := range list.Items {
		p := &list.Items[i]
		owner := hyperpoolController(p)
		switch {
		case !p.DeletionTimestamp.IsZero():
			continue
		case owner == nil:
			// orphaned: destroy
		case owner.Kind != "AgentSession":
			continue
		case uid != "" && owner.UID != uid:
			continue
		case uid == "":
			// Skip pods of a new session that reuses the name.
			current := &agentsv1alpha1.AgentSession{}
			if err := r.Get(ctx, types.NamespacedName{Namespace: namespace, Name: session}, current); err == nil && current.UID == owner.UID {
				continue
			}
		}
		if err := r.Delete(ctx, p, client.Preconditions{UID: &p.UID}); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting pod %s of finished session %s: %w", p.Name, session, err)
		}
	}
	return nil
}
