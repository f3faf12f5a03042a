package controllers

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/expectations"
)

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
	// demand records each bind for the pools' autoscalers.
	demand *demandBook

	factory *podFactory
	builds  *nodeBuilds // the nodes' Windows builds, shared with the pool controller
	claims  *expectations.Claims
	// handover seeds claims, before the first bind, with the binds made before this
	// manager led (handover.go).
	handover *handover
	// candidates are the classes' Ready warm pods, kept from pod events: a bind's pick.
	candidates *warmCandidates
	written    *writtenStatuses
	// heartbeats remembers the malformed heartbeat reported for each session, so it is
	// reported once, not on every reconcile.
	heartbeats *malformedHeartbeats
}

func newAgentSessionReconciler(d reconcilerDeps, shared *sharedState) *AgentSessionReconciler {
	return &AgentSessionReconciler{Client: d.client, apiReader: d.apiReader, recorder: d.recorder(SessionEventSource),
		config: d.config, clock: d.clock, quota: shared.quota, takes: shared.takes, demand: shared.demand, factory: shared.factory, builds: shared.builds,
		claims: expectations.NewClaims(d.clock), handover: &handover{}, candidates: shared.candidates, written: newWrittenStatuses(d.clock), heartbeats: &malformedHeartbeats{}}
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
			r.heartbeats.forget(req.NamespacedName)
			return ctrl.Result{}, r.destroyOrphanedPods(ctx, req.NamespacedName)
		}
		return ctrl.Result{}, err
	}
	r.written.overlay(s)
	if !s.DeletionTimestamp.IsZero() {
		return r.reconcileDeletion(ctx, s)
	}

	ctx, events := withEventQueue(ctx)
	before := s.Status.DeepCopy()
	result, err := r.reconcileSession(ctx, s)
	result = r.requeueAtStartDeadline(ctx, s, result)
	result = withDeadlinePriority(result, before, &s.Status)
	if statusErr := r.writeStatus(ctx, s, before); statusErr != nil {
		return result, errors.Join(err, statusErr) // the events are dropped: the next reconcile decides again
	}
	events.emit(r.recorder)
	r.recordBind(before, s)
	if !before.Phase.IsFinished() && s.Status.Phase.IsFinished() {
		// The pod is destroyed once the end is written, not before: whoever watches the
		// session sees the end one API round trip sooner, and an end whose write failed is
		// decided again from a pod still intact rather than read back as PodDeleted. A
		// failed delete is returned, so the workqueue retries it within seconds rather than
		// at the session's ttlAfterFinished.
		if destroyErr := r.destroyPods(ctx, s.Namespace, s.Name, s.UID); destroyErr != nil {
			return ctrl.Result{Priority: result.Priority}, errors.Join(err, fmt.Errorf("destroying the pod of a session that just ended: %w", destroyErr))
		}
	}
	return result, err
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
	// The cache is trusted to show every bind (boundPod) only once the binds made before
	// this manager led are in claims.
	if err := r.takeOver(ctx); err != nil {
		return ctrl.Result{}, err
	}
	pod, waitForCache, err := r.boundPod(ctx, s)
	if err != nil || waitForCache {
		return ctrl.Result{RequeueAfter: expectations.ClaimTTL}, err
	}

	if pod == nil && s.Status.PodName == "" && r.endOnStartTimeout(ctx, s, sb) {
		return r.deleteAfterTTL(ctx, s)
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

	if pod == nil && s.Status.PodName != "" && sb != nil {
		// Its deadline had passed, so it expired, whoever removed the pod: this manager writes
		// the end before deleting the pod, but a manager of an earlier version deleted first
		// and could die (or lose its Lease) before the status write.
		if why := r.deadlineReached(s, sb); why != "" {
			return r.expire(ctx, s, sb, nil, why)
		}
	}
	switch {
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
