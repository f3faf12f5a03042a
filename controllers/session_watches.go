package controllers

// What wakes a session: the watches of the session controller and their mappings.

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	nodev1 "k8s.io/api/node/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/podstate"
)

// SetupWithManager registers the session controller and its watches, and the quota-queue
// controller that wakes the sessions its namespace's quota would admit now.
func (r *AgentSessionReconciler) SetupWithManager(mgr ctrl.Manager) error {
	// The quota queue's reconciles hand the sessions to wake to the session controller.
	wakes := make(chan event.TypedGenericEvent[*agentsv1alpha1.AgentSession], queueWakeBuffer)
	if err := newQuotaQueueReconciler(r, wakes).SetupWithManager(mgr); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("agentsession").
		// Spec changes only: status writes are ours, and a heartbeat needs no reconcile (the
		// idle timer, when it fires, reads the newest heartbeat and sets the next one). The
		// client's credentials-delivered annotation does: it is mirrored into a condition.
		// Watches rather than For: sessions that hold a sandbox go first (sessionEvents).
		Watches(&agentsv1alpha1.AgentSession{}, &sessionEvents{}, builder.WithPredicates(
			predicate.Or[client.Object](predicate.GenerationChangedPredicate{}, credentialsDeliveredChanged()))).
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
		// The queued sessions the quota-queue controller found admissible.
		WatchesRawSource(source.Channel(wakes, &handler.TypedEnqueueRequestForObject[*agentsv1alpha1.AgentSession]{})).
		// The priority queue (controller-runtime's default, stated here because the order
		// of the work depends on it): sessions that hold a sandbox go first (deadlinePriority).
		// The log constructor gives the reconciles the keys For would.
		WithOptions(controller.Options{MaxConcurrentReconciles: r.config.SessionWorkers, UsePriorityQueue: ptr.To(true),
			LogConstructor: sessionLogConstructor(mgr.GetLogger())}).
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

// podToSessions maps a bound pod to its session, and a Ready warm pod to the sessions of its
// class that wait for one. The sessions queued behind the quota are the quota-queue
// controller's (queuePodEvent): measuring the namespace here, in the informer's event
// handler, cost every pod event a full count of the namespace's pods and sessions.
func (r *AgentSessionReconciler) podToSessions(ctx context.Context, o client.Object) []reconcile.Request {
	labels := o.GetLabels()
	if name := labels[agentsv1alpha1.SessionLabel]; name != "" {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: name}}}
	}
	pod, ok := o.(*corev1.Pod)
	if !ok || labels[agentsv1alpha1.ClassLabel] == "" || !podstate.Ready(pod) || !pod.DeletionTimestamp.IsZero() {
		return nil
	}
	return r.sessionsMatching(ctx, o.GetNamespace(), client.MatchingFields{sessionWaitingIndex: labels[agentsv1alpha1.ClassLabel]})
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
	class := o.GetLabels()[agentsv1alpha1.ClassLabel]
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
	return requestsOf(list.Items)
}
