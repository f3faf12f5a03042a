package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/podstate"
	"github.com/hyperpool/hyperpool/internal/uvm"
)

// maxBindAttempts bounds how many warm pods one reconcile tries when others win the race
// for them; past it the session is requeued rather than spinning.
const maxBindAttempts = 5

// AgentSessionReconciler binds sessions to sandboxes and ends them on time.
type AgentSessionReconciler struct {
	client.Client
	// apiReader reads around the cache, where acting on a stale object would be wrong
	// (deleting a finished session).
	apiReader client.Reader
	recorder  recorder.EventRecorder
	config    Config
	clock     clock.PassiveClock
	quota     *quotaKeeper
	// takes records each warm bind for the pool's spec.replenish.quietPeriod.
	takes *takeClock

	factory *podFactory
	builds  *nodeBuilds // the nodes' Windows builds, shared with the pool controller
	claims  *claimTracker
	written *writtenStatuses
}

func newAgentSessionReconciler(d reconcilerDeps, shared *sharedState) *AgentSessionReconciler {
	return &AgentSessionReconciler{Client: d.client, apiReader: d.apiReader, recorder: d.recorder(SessionEventSource),
		config: d.config, clock: d.clock, quota: shared.quota, takes: shared.takes, factory: shared.factory, builds: shared.builds,
		claims: newClaimTracker(d.clock), written: newWrittenStatuses(d.clock)}
}

// +kubebuilder:rbac:groups=agents.hyperpool.io,resources=agentsessions,verbs=get;list;watch;delete
// +kubebuilder:rbac:groups=agents.hyperpool.io,resources=agentsessions/status,verbs=get;update;patch
// Owner references with blockOwnerDeletion need update on the owner's finalizers where the
// OwnerReferencesPermissionEnforcement admission plugin is on.
// +kubebuilder:rbac:groups=agents.hyperpool.io,resources=agentsessions/finalizers;agentsandboxes/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=resourcequotas,verbs=get;list;watch

// Reconcile moves one session along: bind, watch its pod, end it, collect it.
func (r *AgentSessionReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	s := &agentsv1alpha1.AgentSession{}
	if err := r.Get(ctx, req.NamespacedName, s); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, r.destroyOrphanedPods(ctx, req.NamespacedName)
		}
		return ctrl.Result{}, err
	}
	r.written.overlay(s)
	if !s.DeletionTimestamp.IsZero() {
		return r.reconcileDeletion(ctx, s)
	}

	before := s.Status.DeepCopy()
	result, err := r.reconcileSession(ctx, s)
	if statusErr := r.writeStatus(ctx, s, before); statusErr != nil {
		return result, errors.Join(err, statusErr)
	}
	if !before.Phase.IsFinished() && s.Status.Phase.IsFinished() {
		// The pod is destroyed once the end is written, not before: whoever watches the
		// session sees the end one API round trip sooner, and an end whose write failed is
		// decided again from a pod still intact rather than read back as PodDeleted. A
		// failed delete is returned, so the workqueue retries it within seconds rather than
		// at the session's ttlAfterFinished.
		if destroyErr := r.destroyPods(ctx, s.Namespace, s.Name, s.UID); destroyErr != nil {
			return ctrl.Result{}, errors.Join(err, fmt.Errorf("destroying the pod of a session that just ended: %w", destroyErr))
		}
	}
	return result, err
}

// reconcileDeletion ends a session being deleted and destroys its pod at once. The garbage
// collector would delete the pod only once the session object is gone, and a finalizer
// (anyone's, e.g. a tenant's) can keep it for ever: the sandbox must not outlive its
// deadline because its session object does.
func (r *AgentSessionReconciler) reconcileDeletion(ctx context.Context, s *agentsv1alpha1.AgentSession) (ctrl.Result, error) {
	before := s.Status.DeepCopy()
	if !s.Status.Phase.IsFinished() {
		// Ended, bound or not: a session still queued would otherwise hold its place at the
		// head of the namespace's FIFO queue for as long as its finalizer stays.
		r.end(ctx, s, nil, agentsv1alpha1.SessionTerminated, agentsv1alpha1.ReasonSessionDeleted,
			"the session is being deleted; its sandbox is destroyed now")
	}
	statusErr := r.writeStatus(ctx, s, before)
	return ctrl.Result{}, errors.Join(statusErr, r.destroyPods(ctx, s.Namespace, s.Name, s.UID))
}

func (r *AgentSessionReconciler) reconcileSession(ctx context.Context, s *agentsv1alpha1.AgentSession) (ctrl.Result, error) {
	if s.Status.Phase.IsFinished() {
		return r.collectFinished(ctx, s)
	}
	if problem := sessionSpecProblem(s); problem != "" {
		r.end(ctx, s, nil, agentsv1alpha1.SessionFailed, agentsv1alpha1.ReasonInvalidSpec, problem)
		return r.deleteAfterTTL(ctx, s) // a held pod goes once the end is written
	}
	sb, err := r.getSandbox(ctx, s)
	if err != nil {
		return ctrl.Result{}, err
	}
	if sb != nil && s.Status.PodName == "" {
		if problem := sandboxSpecProblem(sb); problem != "" {
			setPending(s, agentsv1alpha1.ReasonInvalidSpec, fmt.Sprintf("AgentSandbox %q cannot serve sessions: %s", sb.Name, problem))
			return ctrl.Result{}, nil // woken when the class changes
		}
	}
	pod, waitForCache, err := r.boundPod(ctx, s)
	if err != nil || waitForCache {
		return ctrl.Result{RequeueAfter: claimTTL}, err
	}

	if pod == nil && s.Status.PodName == "" && !sessionAdmitted(s) {
		admitted, err := r.admit(ctx, s)
		if err == nil && s.Status.Phase.IsFinished() {
			return r.deleteAfterTTL(ctx, s) // refused by a full queue
		}
		if err != nil || !admitted {
			return ctrl.Result{}, err
		}
	}

	switch {
	case pod == nil && s.Status.PodName != "" && sb != nil && r.pastDeadline(s, sb):
		// Its deadline had passed, so it expired, whoever removed the pod: this manager writes
		// the end before deleting the pod, but a manager of an earlier version deleted first
		// and could die (or lose its Lease) before the status write.
		return r.expire(ctx, s, sb, nil)
	case pod == nil && s.Status.PodName != "":
		r.end(ctx, s, nil, agentsv1alpha1.SessionFailed, agentsv1alpha1.ReasonPodDeleted,
			fmt.Sprintf("sandbox pod %s was deleted by someone else; create a new session", s.Status.PodName))
		return r.deleteAfterTTL(ctx, s) // the held pod is gone, or goes once the end is written
	case pod == nil && sb == nil:
		setPending(s, agentsv1alpha1.ReasonSandboxNotFound, fmt.Sprintf(
			"AgentSandbox %q does not exist in namespace %s; the session binds when it is created (check spec.sandboxName)", s.Spec.SandboxName, s.Namespace))
		return ctrl.Result{}, nil
	case pod == nil:
		return r.bind(ctx, s, sb)
	case sb == nil:
		r.end(ctx, s, pod, agentsv1alpha1.SessionTerminated, agentsv1alpha1.ReasonSandboxDeleted,
			fmt.Sprintf("AgentSandbox %q was deleted; its sessions end with it", s.Spec.SandboxName))
		return r.deleteAfterTTL(ctx, s) // the held pod is gone, or goes once the end is written
	default:
		return r.track(ctx, s, sb, pod)
	}
}

// getSandbox returns the session's class, or nil when it does not exist or is being deleted.
func (r *AgentSessionReconciler) getSandbox(ctx context.Context, s *agentsv1alpha1.AgentSession) (*agentsv1alpha1.AgentSandbox, error) {
	sb := &agentsv1alpha1.AgentSandbox{}
	err := r.Get(ctx, types.NamespacedName{Namespace: s.Namespace, Name: s.Spec.SandboxName}, sb)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, err
	case !sb.DeletionTimestamp.IsZero():
		return nil, nil
	}
	return sb, nil
}

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
		name, pending := r.claims.boundPod(s.UID)
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
			r.claims.forgetSession(s.UID)
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
	r.claims.forgetSession(s.UID)
	keep := held[0]
	for _, p := range held[1:] {
		if p.Name == s.Status.PodName || (keep.Name != s.Status.PodName && p.CreationTimestamp.Before(&keep.CreationTimestamp)) {
			keep = p
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
		r.markQueued(s, adm.reason, adm.message)
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
func (r *AgentSessionReconciler) markQueued(s *agentsv1alpha1.AgentSession, reason, message string) {
	r.quota.releaseSession(s) // parked again after its admission: its slot is free
	prev := meta.FindStatusCondition(s.Status.Conditions, agentsv1alpha1.QuotaReserved)
	if prev == nil || prev.Reason != reason {
		r.recorder.Eventf(s, nil, corev1.EventTypeWarning, reason, "Admit", "%s", message)
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
	pod, err := r.claimWarmPod(ctx, s, sb)
	if err != nil {
		return ctrl.Result{}, err
	}
	if pod != nil {
		r.markBound(s, sb, pod, agentsv1alpha1.StartWarm)
		return r.track(ctx, s, sb, pod)
	}
	if s.Spec.StartPolicy == agentsv1alpha1.RequireWarm {
		setPending(s, agentsv1alpha1.ReasonWaitingForWarmSandbox, fmt.Sprintf(
			"startPolicy RequireWarm and AgentSandbox %q has no Ready warm sandbox; the session binds when one is Ready (raise its spec.replicas, or use startPolicy PreferWarm)", sb.Name))
		return ctrl.Result{}, nil
	}
	return r.startCold(ctx, s, sb)
}

// claimWarmPod binds the session to a Ready warm pod of its class, on the node with the
// fewest sessions of the class. The lock is the pod write itself: a merge patch with the
// resourceVersion the cache showed, so of two binds racing for one pod the API server
// accepts exactly one. That patch is the bind's first API write; the session status is the
// second and last.
func (r *AgentSessionReconciler) claimWarmPod(ctx context.Context, s *agentsv1alpha1.AgentSession, sb *agentsv1alpha1.AgentSandbox) (*corev1.Pod, error) {
	list := &corev1.PodList{}
	if err := r.List(ctx, list, client.InNamespace(sb.Namespace), client.MatchingFields{podWarmIndex: sb.Name}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing warm pods of AgentSandbox %s: %w", sb.Name, err)
	}
	hash := templateHash(sb)
	preferOld := sb.Spec.UpdateStrategy.Type == agentsv1alpha1.OnReplenishUpdateStrategy
	// A pool can hold thousands of pods: rank each once, then sort on the ranks.
	var ranked []rankedPod
	for i := range list.Items {
		p := &list.Items[i]
		if p.DeletionTimestamp.IsZero() && podstate.Ready(p) && metav1.IsControlledBy(p, sb) && !r.claims.podTaken(client.ObjectKeyFromObject(p)) {
			// OnReplenish hands out old-template pods first, so the pool turns over as it is used.
			old := p.Labels[agentsv1alpha1.TemplateHashLabel] != hash
			ranked = append(ranked, rankedPod{pod: p, preferred: old == preferOld, created: p.CreationTimestamp.Time})
		}
	}
	// The class's load is counted per node the candidates are on, not over all its bound
	// pods: a class can hold thousands of sessions.
	sessionsOnNode := map[string]int{}
	for i := range ranked {
		node := ranked[i].pod.Spec.NodeName
		load, counted := sessionsOnNode[node]
		if !counted {
			bound := &corev1.PodList{}
			if err := r.List(ctx, bound, client.InNamespace(sb.Namespace), client.MatchingFields{podBoundNodeIndex: boundNodeKey(sb.Name, node)}, client.UnsafeDisableDeepCopy); err != nil {
				return nil, fmt.Errorf("counting sessions of AgentSandbox %s on node %s: %w", sb.Name, node, err)
			}
			load = len(bound.Items)
			sessionsOnNode[node] = load
		}
		ranked[i].load = load
	}
	slices.SortFunc(ranked, bindOrder)
	attempts := 0
	for _, rp := range ranked {
		if attempts == maxBindAttempts {
			break
		}
		candidate := rp.pod
		key := client.ObjectKeyFromObject(candidate)
		if !r.claims.tryTakePod(key) {
			continue
		}
		attempts++
		pod := candidate.DeepCopy()
		pod.Labels[agentsv1alpha1.SessionLabel] = s.Name
		pod.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(s, agentsv1alpha1.GroupVersion.WithKind("AgentSession"))}
		// Recorded before the write: the pool's reconcile, woken by the watch event of this
		// very patch, may run before the patch call returns here.
		r.takes.taken(client.ObjectKeyFromObject(sb))
		err := r.Patch(ctx, pod, client.MergeFromWithOptions(candidate, client.MergeFromWithOptimisticLock{}))
		switch {
		case err == nil:
			r.claims.sessionBound(s.UID, pod.Name)
			return pod, nil
		case apierrors.IsConflict(err), apierrors.IsNotFound(err):
			// Bound by another session, deleted, or changed since the cache saw it: the
			// cache will show which; try the next pod.
			r.claims.releasePod(key)
		default:
			r.claims.releasePod(key)
			return nil, fmt.Errorf("binding warm pod %s: %w", pod.Name, err)
		}
	}
	return nil, nil
}

// rankedPod is a bind candidate with what orders it.
type rankedPod struct {
	pod       *corev1.Pod
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
func (r *AgentSessionReconciler) startCold(ctx context.Context, s *agentsv1alpha1.AgentSession, sb *agentsv1alpha1.AgentSandbox) (ctrl.Result, error) {
	recipe, blk, err := r.factory.recipe(ctx, sb)
	if err != nil {
		return ctrl.Result{}, err
	}
	if blk != nil {
		setPending(s, blk.Reason, fmt.Sprintf("AgentSandbox %q cannot start a sandbox: %s", sb.Name, blk.Message))
		return ctrl.Result{}, nil
	}
	// A cold pod adds a VM to the namespace: it must fit the quota's memory and cpu.
	grants, quotaBlk, err := r.quota.reservePods(ctx, s.Namespace, classFootprint(sb), 1, false)
	if err != nil {
		return ctrl.Result{}, err
	}
	if quotaBlk != nil {
		r.markQueued(s, quotaBlk.Reason, quotaBlk.Message+"; the session starts when a sandbox frees up or the limit is raised")
		return ctrl.Result{}, nil
	}
	grant := grants[0]
	pod := recipe.build()
	pod.GenerateName = s.Name + "-"
	pod.Labels[agentsv1alpha1.SessionLabel] = s.Name
	pod.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(s, agentsv1alpha1.GroupVersion.WithKind("AgentSession"))}
	if err := r.Create(ctx, pod); err != nil {
		grant.release()
		if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
			return ctrl.Result{}, nil // the namespace is going away, and the session with it
		}
		if apierrors.IsForbidden(err) {
			// A native ResourceQuota (or a policy) refused the pod: wait, retried with the
			// workqueue's backoff and when quotas or pods change.
			r.markQueued(s, agentsv1alpha1.ReasonResourceQuotaExceeded, fmt.Sprintf(
				"the API server refused the sandbox pod: %v; the session starts when the ResourceQuota allows it", err))
			return ctrl.Result{}, err
		}
		setPending(s, agentsv1alpha1.ReasonPodCreateFailed, fmt.Sprintf("creating the sandbox pod failed: %v; retrying with backoff", err))
		return ctrl.Result{}, err // the workqueue's exponential backoff paces the retries
	}
	grant.confirm(pod.Name)
	r.claims.sessionBound(s.UID, pod.Name)
	podCreations.WithLabelValues(sb.Namespace, sb.Name, string(agentsv1alpha1.StartCold)).Inc()
	r.markBound(s, sb, pod, agentsv1alpha1.StartCold)
	return r.track(ctx, s, sb, pod)
}

// markBound records a fresh bind in the session's status.
func (r *AgentSessionReconciler) markBound(s *agentsv1alpha1.AgentSession, sb *agentsv1alpha1.AgentSandbox, pod *corev1.Pod, start agentsv1alpha1.StartType) {
	// Status times are stored to the second. The bind time is rounded up, not down, so
	// that the deadlines computed later from the stored value never come early: a session
	// gets at least its max lifetime, and at most a second more.
	now := metav1.NewTime(ceilToSecond(r.clock.Now()))
	lt := effectiveLifetime(&sb.Spec.Lifetime, &s.Spec)
	fp := uvm.FootprintFromPod(pod)
	s.Status.PodName = pod.Name
	s.Status.StartType = start
	s.Status.BoundTime = &now
	s.Status.ExpiryTime = &metav1.Time{Time: hardDeadline(now.Time, lt)}
	s.Status.Footprint = &fp
	s.Status.Phase = agentsv1alpha1.SessionStarting
}

// track follows a bound session's pod and ends the session when the pod dies or a limit is
// reached. It makes no API write unless something changed.
func (r *AgentSessionReconciler) track(ctx context.Context, s *agentsv1alpha1.AgentSession, sb *agentsv1alpha1.AgentSandbox, pod *corev1.Pod) (ctrl.Result, error) {
	if s.Status.BoundTime == nil { // bound by an earlier manager that died before writing status
		r.markBound(s, sb, pod, startTypeOf(pod))
	}
	s.Status.PodName, s.Status.NodeName, s.Status.PodIP = pod.Name, pod.Spec.NodeName, pod.Status.PodIP

	if reason, msg, failed, err := r.podFailure(ctx, pod); err != nil {
		return ctrl.Result{}, err
	} else if failed {
		r.end(ctx, s, pod, agentsv1alpha1.SessionFailed, reason, msg)
		return r.deleteAfterTTL(ctx, s) // the held pod is gone, or goes once the end is written
	}

	now := r.clock.Now()
	lt := effectiveLifetime(&sb.Spec.Lifetime, &s.Spec)
	heartbeat, err := parseHeartbeat(s.Annotations)
	if err != nil {
		r.recorder.Eventf(s, nil, corev1.EventTypeWarning, "MalformedHeartbeat", "Heartbeat", "%s", err)
	}
	deadline, why := sessionDeadline(s.Status.BoundTime.Time, heartbeat, lt, now)
	if !now.Before(deadline) && why == agentsv1alpha1.ReasonIdleTimeout {
		// A heartbeat triggers no reconcile, so the cached session can predate the newest
		// one: ask the API server before ending a session that may still be in use.
		if deadline, err = r.freshIdleDeadline(ctx, s, lt, now); err != nil {
			return ctrl.Result{}, err
		}
	}
	if !now.Before(deadline) {
		return r.expire(ctx, s, sb, pod)
	}
	// The class's lifetime can change after the bind: the stored deadline follows it.
	s.Status.ExpiryTime = &metav1.Time{Time: hardDeadline(s.Status.BoundTime.Time, lt)}

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
	return ctrl.Result{RequeueAfter: deadline.Sub(now)}, nil
}

// freshIdleDeadline recomputes the session's deadline from its newest heartbeat, read
// from the API server (the rare path: only when the cached one says it is idle).
func (r *AgentSessionReconciler) freshIdleDeadline(ctx context.Context, s *agentsv1alpha1.AgentSession, lt lifetime, now time.Time) (time.Time, error) {
	fresh := &agentsv1alpha1.AgentSession{}
	if err := r.apiReader.Get(ctx, client.ObjectKeyFromObject(s), fresh); err != nil {
		return time.Time{}, client.IgnoreNotFound(err) // gone: its deletion ends it
	}
	heartbeat, _ := parseHeartbeat(fresh.Annotations)
	deadline, _ := sessionDeadline(s.Status.BoundTime.Time, heartbeat, lt, now)
	return deadline, nil
}

// pastDeadline reports whether a bound session has reached its max lifetime or idle
// timeout.
func (r *AgentSessionReconciler) pastDeadline(s *agentsv1alpha1.AgentSession, sb *agentsv1alpha1.AgentSandbox) bool {
	if s.Status.BoundTime == nil {
		return false
	}
	heartbeat, _ := parseHeartbeat(s.Annotations) // a malformed one is reported by track
	deadline, _ := sessionDeadline(s.Status.BoundTime.Time, heartbeat, effectiveLifetime(&sb.Spec.Lifetime, &s.Spec), r.clock.Now())
	return !r.clock.Now().Before(deadline)
}

// expire ends a session that reached its deadline and destroys its pod (nil: already gone).
func (r *AgentSessionReconciler) expire(ctx context.Context, s *agentsv1alpha1.AgentSession, sb *agentsv1alpha1.AgentSandbox, pod *corev1.Pod) (ctrl.Result, error) {
	lt := effectiveLifetime(&sb.Spec.Lifetime, &s.Spec)
	heartbeat, _ := parseHeartbeat(s.Annotations)
	_, why := sessionDeadline(s.Status.BoundTime.Time, heartbeat, lt, r.clock.Now())
	r.end(ctx, s, pod, agentsv1alpha1.SessionExpired, why, expiryMessage(why, lt))
	sessionExpirations.WithLabelValues(s.Namespace, s.Spec.SandboxName, why).Inc()
	return r.deleteAfterTTL(ctx, s) // the held pod is gone, or goes once the end is written
}

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

func ceilToSecond(t time.Time) time.Time {
	if f := t.Truncate(time.Second); !f.Equal(t) {
		return f.Add(time.Second)
	}
	return t
}

func startTypeOf(pod *corev1.Pod) agentsv1alpha1.StartType {
	// A cold pod is named after its session; a warm one after its class.
	if pod.GenerateName == pod.Labels[agentsv1alpha1.SessionLabel]+"-" {
		return agentsv1alpha1.StartCold
	}
	return agentsv1alpha1.StartWarm
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
	r.recorder.Eventf(s, related, eventType, reason, "End", "session %s: %s", phase, message)
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
// the session with no controller at all is destroyed too: its owner reference was removed
// (an orphaning delete of the session, an edit), and no one else would ever delete it.
func (r *AgentSessionReconciler) destroyPods(ctx context.Context, namespace, session string, uid types.UID) error {
	list := &corev1.PodList{}
	if err := r.List(ctx, list, client.InNamespace(namespace), client.MatchingFields{podSessionIndex: session}); err != nil {
		return err
	}
	for i := range list.Items {
		p := &list.Items[i]
		owner := metav1.GetControllerOf(p)
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
	if equalSessionStatus(before, &s.Status) {
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

func equalSessionStatus(a, b *agentsv1alpha1.AgentSessionStatus) bool {
	return a.Phase == b.Phase && a.PodName == b.PodName && a.NodeName == b.NodeName && a.PodIP == b.PodIP &&
		a.StartType == b.StartType && a.EndReason == b.EndReason &&
		a.BoundTime.Equal(b.BoundTime) && a.ReadyTime.Equal(b.ReadyTime) &&
		a.ExpiryTime.Equal(b.ExpiryTime) && a.EndTime.Equal(b.EndTime) &&
		equalOptionalFootprint(a.Footprint, b.Footprint) && equalConditions(a.Conditions, b.Conditions)
}

func equalOptionalFootprint(a, b *agentsv1alpha1.Footprint) bool {
	if a == nil || b == nil {
		return a == b
	}
	return equalFootprint(*a, *b)
}

// SetupWithManager registers the session controller and its watches.
func (r *AgentSessionReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("agentsession").
		// Spec changes only: status writes are ours, and a heartbeat needs no reconcile (the
		// idle timer, when it fires, reads the newest heartbeat and sets the next one).
		For(&agentsv1alpha1.AgentSession{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(r.podToSessions)).
		Watches(&agentsv1alpha1.AgentSandbox{}, handler.EnqueueRequestsFromMapFunc(r.sandboxToSessions),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// A node deleted ends its sessions; a Windows node added or changed can unblock
		// sessions waiting for NoCompatibleNodes.
		WatchesMetadata(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(r.nodeToSessions),
			builder.WithPredicates(windowsBuildChanged())).
		// The class's egress policy appearing or restored lets its sessions bind.
		Watches(&networkingv1.NetworkPolicy{}, handler.EnqueueRequestsFromMapFunc(r.policyToSessions)).
		Watches(&nodev1.RuntimeClass{}, handler.EnqueueRequestsFromMapFunc(r.allWaitingSessions)).
		// Capacity frees when a session ends or is deleted, or when a quota changes: the
		// namespace's queue is looked at again.
		Watches(&agentsv1alpha1.AgentSession{}, handler.EnqueueRequestsFromMapFunc(r.queueOf),
			builder.WithPredicates(sessionEnded())).
		Watches(&agentsv1alpha1.AgentQuota{}, handler.EnqueueRequestsFromMapFunc(r.queueOf)).
		Watches(&corev1.ResourceQuota{}, handler.EnqueueRequestsFromMapFunc(r.queueOf)).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.config.SessionWorkers}).
		Complete(observed(r.config, "agentsession", r))
}

// sessionEnded passes a session's move to an end phase, and its deletion.
func sessionEnded() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc: func(event.CreateEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, n := e.ObjectOld.(*agentsv1alpha1.AgentSession), e.ObjectNew.(*agentsv1alpha1.AgentSession)
			return !o.Status.Phase.IsFinished() && n.Status.Phase.IsFinished()
		},
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}

// queueOf returns the namespace's waiting sessions that its quota could admit now: the
// head of the FIFO queue, as many as there are free session slots. The sessions behind
// cannot be admitted before those are, and waking every waiting session on every change
// (each measures the whole namespace under its quota lock) made a queue of a few hundred
// drain at a few sessions a second with the manager's CPU spent on it. Without a sessions
// limit every waiting session is returned.
func (r *AgentSessionReconciler) queueOf(ctx context.Context, o client.Object) []reconcile.Request {
	head, limited, err := r.quota.admissibleHead(ctx, o.GetNamespace())
	if err != nil {
		log.FromContext(ctx).Error(err, "measuring the quota queue; waking every waiting session", "namespace", o.GetNamespace())
	}
	if err != nil || !limited {
		return r.sessionsMatching(ctx, o.GetNamespace(), client.MatchingFields{sessionQueuedIndex: "true"})
	}
	reqs := make([]reconcile.Request, 0, len(head))
	for _, key := range head {
		reqs = append(reqs, reconcile.Request{NamespacedName: key})
	}
	return reqs
}

// podToSessions maps a bound pod to its session, and a Ready warm pod to the sessions of its
// class that wait for one. A pod going away may free quota: the namespace's queue is
// looked at again.
func (r *AgentSessionReconciler) podToSessions(ctx context.Context, o client.Object) []reconcile.Request {
	labels := o.GetLabels()
	if name := labels[agentsv1alpha1.SessionLabel]; name != "" {
		reqs := []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
		if !o.GetDeletionTimestamp().IsZero() {
			reqs = append(reqs, r.queueOf(ctx, o)...)
		}
		return reqs
	}
	pod, ok := o.(*corev1.Pod)
	if !ok || labels[agentsv1alpha1.SandboxLabel] == "" || !podstate.Ready(pod) || !pod.DeletionTimestamp.IsZero() {
		return nil
	}
	// The sessions waiting for a warm pod, and of those queued behind the quota only the ones
	// it would admit now: waking the whole queue on every warm pod event, each session
	// measuring the namespace, kept the manager's CPU busy and the queue slow.
	waiting := r.sessionsMatching(ctx, o.GetNamespace(), client.MatchingFields{sessionWaitingIndex: labels[agentsv1alpha1.SandboxLabel]})
	return append(waiting, r.queueOf(ctx, o)...)
}

// sandboxToSessions: a class created, changed or deleted concerns all its sessions.
func (r *AgentSessionReconciler) sandboxToSessions(ctx context.Context, o client.Object) []reconcile.Request {
	return r.sessionsMatching(ctx, o.GetNamespace(), client.MatchingFields{sessionSandboxIndex: o.GetName()})
}

// nodeToSessions: a node deleted concerns the sessions bound on it; a node added, or its
// OS or build changed, the sessions not bound yet (a cold start blocked by
// NoCompatibleNodes). The remembered builds are marked stale first.
func (r *AgentSessionReconciler) nodeToSessions(ctx context.Context, o client.Object) []reconcile.Request {
	r.builds.changed()
	reqs := r.sessionsMatching(ctx, "", client.MatchingFields{sessionNodeIndex: o.GetName()})
	if o.GetDeletionTimestamp().IsZero() {
		reqs = append(reqs, r.allWaitingSessions(ctx, o)...)
	}
	return reqs
}

// policyToSessions: a class's egress policy changed; its waiting sessions look again.
func (r *AgentSessionReconciler) policyToSessions(ctx context.Context, o client.Object) []reconcile.Request {
	class := o.GetLabels()[agentsv1alpha1.SandboxLabel]
	if class == "" {
		return nil
	}
	return r.sessionsMatching(ctx, o.GetNamespace(), client.MatchingFields{sessionWaitingIndex: class})
}

// allWaitingSessions: a RuntimeClass appearing can unblock a cold start anywhere.
func (r *AgentSessionReconciler) allWaitingSessions(ctx context.Context, _ client.Object) []reconcile.Request {
	list := &agentsv1alpha1.AgentSessionList{}
	if err := r.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
		log.FromContext(ctx).Error(err, "listing sessions to re-check")
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		if s := &list.Items[i]; s.Status.PodName == "" && !s.Status.Phase.IsFinished() {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(s)})
		}
	}
	return reqs
}

func (r *AgentSessionReconciler) sessionsMatching(ctx context.Context, namespace string, fields client.MatchingFields) []reconcile.Request {
	list := &agentsv1alpha1.AgentSessionList{}
	opts := []client.ListOption{fields, client.UnsafeDisableDeepCopy}
	if namespace != "" {
		opts = append(opts, client.InNamespace(namespace))
	}
	if err := r.List(ctx, list, opts...); err != nil {
		log.FromContext(ctx).Error(err, "listing sessions to re-check", "fields", fields)
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return reqs
}
