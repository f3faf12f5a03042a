package controllers

// A session's bind: admission by the namespace's quota, a warm pod claimed with an
// optimistic-lock patch (the lock against double binds), or a cold pod started for it.

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/podstate"
)

// maxBindAttempts bounds how many warm pods one reconcile tries when others win the race
// for them; past it the session is requeued rather than spinning.
const maxBindAttempts = 5

// boundPod finds the pod the session holds. waitForCache is true when this manager bound a
// pod that its cache does not show yet: acting now could bind a second one.
func (r *AgentSessionReconciler) boundPod(ctx context.Context, s *agentsv1alpha1.AgentSession) (pod *corev1.Pod, waitForCache bool, err error) {
	list := &corev1.PodList{}
	if err := r.List(ctx, list, client.InNamespace(s.Namespace), client.MatchingFields{podSessionIndex: s.Name}); err != nil {
		return nil, false, fmt.Errorf("listing pods of AgentSession %s: %w", s.Name, err)
	}
	var held []*corev1.Pod
	for i := range list.Items {
		if metav1.IsControlledBy(&list.Items[i], s) {
			held = append(held, &list.Items[i])
		}
	}
	if len(held) == 0 {
		if held, err = r.heldAfterUnknownWrite(ctx, s); err != nil {
			return nil, false, err
		}
	}
	if len(held) == 0 {
		name, pending := r.claims.BoundPod(s.UID)
		if !pending && s.Status.PodName == "" {
			return nil, false, nil
		}
		if !pending {
			// The status names a pod the cache does not show. Ask the API server before the
			// session ends as PodDeleted: the cache may only lag behind.
			name = s.Status.PodName
		}
		// This manager bound a pod the cache does not show. Ask the API server, the
		// rare path: the pod may be there (the cache lags) or already gone (deleted
		// right after the bind, before the cache ever showed it bound).
		pod := &corev1.Pod{}
		err := r.apiReader.Get(ctx, types.NamespacedName{Namespace: s.Namespace, Name: name}, pod)
		switch {
		case apierrors.IsNotFound(err):
			r.claims.ForgetSession(s.UID)
			return nil, false, nil
		case err != nil:
			return nil, false, err
		case metav1.IsControlledBy(pod, s):
			return pod, false, nil
		case !pending:
			// There, but not the session's any more (its owner reference was taken away):
			// the session has lost it, and destroyPods deletes it once the end is written.
			return nil, false, nil
		}
		return nil, true, nil
	}
	r.claims.ForgetSession(s.UID)
	keep := held[0]
	if len(held) > 1 {
		if keep, err = r.podToKeep(ctx, s, held); err != nil {
			return nil, false, err
		}
	}
	// A session holds one pod. More can only come from two managers acting at once during a
	// leader change; release the extras so none leaks.
	for _, p := range held {
		if p != keep {
			log.FromContext(ctx).Info("deleting extra pod bound to the session", "pod", p.Name, "kept", keep.Name)
			if err := r.Delete(ctx, p, client.Preconditions{UID: &p.UID}); client.IgnoreNotFound(err) != nil {
				return nil, false, err
			}
		}
	}
	return keep, false, nil
}

// podToKeep chooses which of the pods a session holds it keeps. Two managers that bound
// one pod each during a leader change both get here, each with its own cache, and must
// choose the same pod or they delete both and the session ends PodDeleted (seen in the
// chaos run's slow-API fault). So the choice rests on the API server, not on the cache: the
// pod the stored session names, else the oldest pod, then the first by name.
func (r *AgentSessionReconciler) podToKeep(ctx context.Context, s *agentsv1alpha1.AgentSession, held []*corev1.Pod) (*corev1.Pod, error) {
	stored := &agentsv1alpha1.AgentSession{}
	if err := r.apiReader.Get(ctx, client.ObjectKeyFromObject(s), stored); client.IgnoreNotFound(err) != nil {
		return nil, fmt.Errorf("reading AgentSession %s to choose among its %d pods: %w", s.Name, len(held), err)
	}
	ordered := slices.Clone(held)
	slices.SortFunc(ordered, func(a, b *corev1.Pod) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	for _, p := range ordered {
		if stored.Status.PodName != "" && p.Name == stored.Status.PodName {
			return p, nil
		}
	}
	return ordered[0], nil
}

// admit asks the namespace's quota for the session. A session that does not fit waits in
// phase Queued, never rejected; it is reconciled again when capacity frees or the quota
// changes.
func (r *AgentSessionReconciler) admit(ctx context.Context, s *agentsv1alpha1.AgentSession) (bool, error) {
	adm, err := r.quota.admitSession(ctx, s)
	if err != nil {
		return false, err
	}
	if adm.refused {
		r.end(ctx, s, nil, agentsv1alpha1.SessionFailed, adm.reason, adm.message)
		return false, nil
	}
	if !adm.admitted {
		r.markQueued(ctx, s, adm.reason, adm.message)
		return false, nil
	}
	if !adm.enforced {
		return true, nil // no quota in force: nothing to record
	}
	wasQueued := s.Status.Phase == agentsv1alpha1.SessionQueued
	meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{Type: agentsv1alpha1.QuotaReserved,
		Status: metav1.ConditionTrue, Reason: agentsv1alpha1.ReasonQuotaReserved, Message: "admitted by the namespace's quota"})
	if wasQueued {
		s.Status.Phase = agentsv1alpha1.SessionPending
		queueWait.WithLabelValues(s.Namespace).Observe(r.clock.Now().Sub(s.CreationTimestamp.Time).Seconds())
	}
	return true, nil
}

// markQueued parks a session behind its quota, with one Warning event when it starts waiting.
func (r *AgentSessionReconciler) markQueued(ctx context.Context, s *agentsv1alpha1.AgentSession, reason, message string) {
	r.quota.releaseSession(s) // parked again after its admission: its slot is free
	prev := meta.FindStatusCondition(s.Status.Conditions, agentsv1alpha1.QuotaReserved)
	if prev == nil || prev.Reason != reason {
		r.event(ctx, s, nil, corev1.EventTypeWarning, reason, "Admit", message)
	}
	s.Status.Phase = agentsv1alpha1.SessionQueued
	meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{Type: agentsv1alpha1.QuotaReserved,
		Status: metav1.ConditionFalse, Reason: reason, Message: message})
	meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{Type: agentsv1alpha1.SessionReadyCondition,
		Status: metav1.ConditionFalse, Reason: reason, Message: message})
}

// bind gives the session a Ready warm pod, or starts a cold one, once the class's egress
// policy is in place.
func (r *AgentSessionReconciler) bind(ctx context.Context, s *agentsv1alpha1.AgentSession, sb *agentsv1alpha1.AgentSandbox) (ctrl.Result, error) {
	if blk, err := egressInPlace(ctx, r.Client, sb, r.config.InternetEgressExcept); err != nil || blk != nil {
		if blk != nil {
			setPending(s, blk.Reason, blk.Message)
		}
		return ctrl.Result{}, err // woken when the policy changes
	}
	// The class's template hash and footprint, once per bind: the candidates, the tamper
	// check and the session's status footprint all use them.
	class := shapeOf(sb)
	pod, err := r.claimWarmPod(ctx, s, sb, class.hash)
	if err != nil {
		return ctrl.Result{}, err
	}
	if pod != nil {
		r.markBound(s, class, pod, agentsv1alpha1.StartWarm)
		return r.track(ctx, s, sb, pod)
	}
	if s.Spec.StartPolicy == agentsv1alpha1.RequireWarm {
		setPending(s, agentsv1alpha1.ReasonWaitingForWarmSandbox, fmt.Sprintf(
			"startPolicy RequireWarm and AgentSandbox %q has no Ready warm sandbox; the session binds when one is Ready (raise its spec.replicas, or use startPolicy PreferWarm)", sb.Name))
		return ctrl.Result{}, nil
	}
	return r.startCold(ctx, s, sb, class)
}

// claimWarmPod binds the session to a Ready warm pod of its class, on the node with the
// fewest sessions of the class. The candidates come from warmCandidates, kept from pod
// events, so a bind costs the same with 100 warm pods as with 5,000. Each candidate is read
// again from the cache and checked before it is written. The lock is the pod write itself:
// a merge patch with the resourceVersion the cache showed, so of two binds racing for one
// pod the API server accepts exactly one. That patch is the bind's first API write; the
// session status is the second and last.
func (r *AgentSessionReconciler) claimWarmPod(ctx context.Context, s *agentsv1alpha1.AgentSession, sb *agentsv1alpha1.AgentSandbox, hash string) (*corev1.Pod, error) {
	class := client.ObjectKeyFromObject(sb)
	tampered := newTamperCheck(sb, hash)
	// OnReplenish hands out old-template pods first, so the pool turns over as it is used.
	preferOld := sb.Spec.UpdateStrategy.Type == agentsv1alpha1.OnReplenishUpdateStrategy
	// Candidates this bind took and did not bind go back to the set when it is done, so
	// that one reconcile never looks at a pod twice.
	var giveBack []types.NamespacedName
	defer func() {
		for _, key := range giveBack {
			r.candidates.release(key)
		}
	}()
	attempts := 0
	for tries := 0; attempts < maxBindAttempts && tries < 4*maxBindAttempts; tries++ {
		key, ok := r.candidates.take(class, sb.UID, hash, preferOld)
		if !ok {
			return nil, nil
		}
		candidate := &corev1.Pod{}
		if err := r.Get(ctx, key, candidate); err != nil {
			giveBack = append(giveBack, key)
			if apierrors.IsNotFound(err) {
				continue // deleted: its delete event takes it out of the set
			}
			return nil, fmt.Errorf("reading warm pod %s: %w", key.Name, err)
		}
		// The set and the cache are fed by the same informer, the cache first; this check
		// is what the bind relies on, not the set's view.
		if !candidate.DeletionTimestamp.IsZero() || !podstate.Ready(candidate) || !metav1.IsControlledBy(candidate, sb) ||
			candidate.Labels[agentsv1alpha1.SessionLabel] != "" || !r.claims.TryTakePod(key) {
			giveBack = append(giveBack, key)
			continue
		}
		if why := tampered.problem(candidate); why != "" {
			// Changed since the manager created it (a policy off, or a pod edited before
			// it was installed): destroyed, never bound; the next candidate, or a cold
			// pod, serves the session. Its delete event takes it out of the set.
			r.claims.ReleasePod(key)
			if destroyed, err := r.destroyTampered(ctx, sb, candidate, why); err != nil || !destroyed {
				giveBack = append(giveBack, key)
				if err != nil {
					return nil, err
				}
			}
			continue
		}
		attempts++
		pod := candidate.DeepCopy()
		pod.Labels[agentsv1alpha1.SessionLabel] = s.Name
		pod.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(s, agentsv1alpha1.GroupVersion.WithKind("AgentSession"))}
		// Recorded before the write: the pool's reconcile, woken by the watch event of this
		// very patch, may run before the patch call returns here.
		r.takes.taken(class)
		err := r.Patch(ctx, pod, client.MergeFromWithOptions(candidate, client.MergeFromWithOptimisticLock{}))
		switch {
		case err == nil:
			// The set keeps the pod taken until its event shows it bound.
			r.claims.SessionBound(s.UID, pod.Name)
			return pod, nil
		case apierrors.IsConflict(err), apierrors.IsNotFound(err):
			// Bound by another session, deleted, or changed since the cache saw it: the
			// cache will show which; try the next pod.
			r.claims.ReleasePod(key)
			giveBack = append(giveBack, key)
		default:
			if writeMayHaveLanded(err) {
				r.claims.SessionWriteUnknown(s.UID)
			}
			r.claims.ReleasePod(key)
			giveBack = append(giveBack, key)
			return nil, fmt.Errorf("binding warm pod %s: %w", pod.Name, err)
		}
	}
	return nil, nil
}

// rankedPod is a bind candidate with what orders it.
type rankedPod struct {
	load      int  // sessions of the class on the pod's node
	preferred bool // of the template the update strategy hands out first
	created   time.Time
}

// bindOrder puts first the pod on the node with the fewest sessions of its class (spreading
// the VMs that are in use), then a pod of the template the update strategy prefers, then
// the oldest.
func bindOrder(a, b rankedPod) int {
	if d := a.load - b.load; d != 0 {
		return d
	}
	if c := boolOrder(a.preferred, b.preferred); c != 0 {
		return -c
	}
	return a.created.Compare(b.created)
}

// startCold creates a pod for the session alone. It is owned by the session from the start
// and never joins a pool.
func (r *AgentSessionReconciler) startCold(ctx context.Context, s *agentsv1alpha1.AgentSession, sb *agentsv1alpha1.AgentSandbox, class *classShape) (ctrl.Result, error) {
	recipe, blk, err := r.factory.recipe(ctx, sb)
	if err != nil {
		return ctrl.Result{}, err
	}
	if blk != nil {
		setPending(s, blk.Reason, fmt.Sprintf("AgentSandbox %q cannot start a sandbox: %s", sb.Name, blk.Message))
		return ctrl.Result{}, nil
	}
	// A cold pod adds a VM to the namespace: it must fit the quota's memory and cpu.
	grants, quotaBlk, err := r.quota.reservePods(ctx, s.Namespace, class.footprint, 1, false)
	if err != nil {
		return ctrl.Result{}, err
	}
	if quotaBlk != nil {
		r.markQueued(ctx, s, quotaBlk.Reason, quotaBlk.Message+"; the session starts when a sandbox frees up or the limit is raised")
		return ctrl.Result{}, nil
	}
	grant := grants[0]
	pod := recipe.build()
	pod.GenerateName = s.Name + "-"
	pod.Labels[agentsv1alpha1.SessionLabel] = s.Name
	pod.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(s, agentsv1alpha1.GroupVersion.WithKind("AgentSession"))}
	if err := r.Create(ctx, pod); err != nil {
		if writeMayHaveLanded(err) {
			r.claims.SessionWriteUnknown(s.UID)
		}
		grant.release()
		if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
			return ctrl.Result{}, nil // the namespace is going away, and the session with it
		}
		if apierrors.IsForbidden(err) {
			// A native ResourceQuota (or a policy) refused the pod: wait, retried with the
			// workqueue's backoff and when quotas or pods change.
			r.markQueued(ctx, s, agentsv1alpha1.ReasonResourceQuotaExceeded, fmt.Sprintf(
				"the API server refused the sandbox pod: %v; the session starts when the ResourceQuota allows it", err))
			return ctrl.Result{}, err
		}
		setPending(s, agentsv1alpha1.ReasonPodCreateFailed, fmt.Sprintf("creating the sandbox pod failed: %v; retrying with backoff", err))
		return ctrl.Result{}, err // the workqueue's exponential backoff paces the retries
	}
	grant.confirm(pod.Name)
	r.claims.SessionBound(s.UID, pod.Name)
	podCreations.WithLabelValues(sb.Namespace, sb.Name, string(agentsv1alpha1.StartCold)).Inc()
	r.markBound(s, class, pod, agentsv1alpha1.StartCold)
	return r.track(ctx, s, sb, pod)
}

// markBound records a fresh bind in the session's status.
func (r *AgentSessionReconciler) markBound(s *agentsv1alpha1.AgentSession, class *classShape, pod *corev1.Pod, start agentsv1alpha1.StartType) {
	// The deadlines count from the bind to the microsecond, the precision a MicroTime is
	// stored with: the value kept in memory is the one every later reconcile, and a new
	// leader, reads back, so they all compute the same exact deadline. boundTime (whole
	// seconds, rounded down) is for display only.
	bound := r.clock.Now().Truncate(time.Microsecond)
	fp := sandboxPodFootprint(pod, class)
	s.Status.PodName = pod.Name
	s.Status.StartType = start
	s.Status.PreciseBoundTime = &metav1.MicroTime{Time: bound} // track sets the expiry from it
	s.Status.BoundTime = &metav1.Time{Time: bound.Truncate(time.Second)}
	s.Status.Footprint = &fp
	s.Status.Phase = agentsv1alpha1.SessionStarting
}

func startTypeOf(pod *corev1.Pod) agentsv1alpha1.StartType {
	// A cold pod is named after its session; a warm one after its class.
	if pod.GenerateName == pod.Labels[agentsv1alpha1.SessionLabel]+"-" {
		return agentsv1alpha1.StartCold
	}
	return agentsv1alpha1.StartWarm
}
