package controllers

// The quota queue's wake-ups. Whatever may free capacity in a namespace (a session ended or
// deleted, a sandbox pod going away or a warm one Ready, a quota changed) enqueues the
// namespace, and nothing more: event handlers run on the informers' goroutines, and
// measuring the namespace there made each pod event count every pod and session of its
// namespace. The quota-queue controller's reconcile measures, once per burst of events
// (the workqueue merges a namespace's), and wakes the sessions the quota would admit now.

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/poolbook"
)

// queueWakeBuffer is the channel between the quota-queue controller and the session
// controller; the session controller's source drains it into its workqueue at once.
const queueWakeBuffer = 1024

// quotaQueueReconciler wakes, per namespace, the queued sessions its quota would admit now.
// Its requests are namespace keys: the namespace, and no name.
type quotaQueueReconciler struct {
	sessions *AgentSessionReconciler
	wakes    chan<- event.TypedGenericEvent[*agentsv1alpha1.AgentSession]
}

func newQuotaQueueReconciler(sessions *AgentSessionReconciler, wakes chan<- event.TypedGenericEvent[*agentsv1alpha1.AgentSession]) *quotaQueueReconciler {
	return &quotaQueueReconciler{sessions: sessions, wakes: wakes}
}

// SetupWithManager registers the quota-queue controller and what enqueues a namespace.
func (q *quotaQueueReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("agentsession-queue").
		// Capacity frees when a session ends or is deleted, when a bound pod goes, when a warm
		// pod is Ready (a cold start the memory quota held back may fit now), or when a quota
		// changes: the namespace's queue is looked at again.
		Watches(&agentsv1alpha1.AgentSession{}, handler.EnqueueRequestsFromMapFunc(namespaceKey),
			builder.WithPredicates(sessionEnded())).
		// Pods through the book, once it shows them: the reconcile measures the quota there.
		WatchesRawSource(bookSource(q.sessions.quota.book, func(wq requestQueue, old, cur *poolbook.Pod) {
			for _, p := range []*poolbook.Pod{old, cur} {
				if p != nil && frees(p) {
					wq.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: p.Key.Namespace}})
					return
				}
			}
		})).
		Watches(&agentsv1alpha1.AgentQuota{}, handler.EnqueueRequestsFromMapFunc(namespaceKey)).
		Watches(&corev1.ResourceQuota{}, handler.EnqueueRequestsFromMapFunc(namespaceKey)).
		Complete(observed(q.sessions.config, "agentsession-queue", q))
}

// namespaceKey is the quota-queue request of the object's namespace.
func namespaceKey(_ context.Context, o client.Object) []reconcile.Request {
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace()}}}
}

// frees says whether a sandbox pod, as it was or is now, may let a queued session in: a
// bound pod going away, or a Ready live warm one (a cold start the memory quota held back
// may fit now, or bind it).
func frees(p *poolbook.Pod) bool {
	if p.Session != "" {
		return p.Deleting
	}
	return p.Ready && !p.Deleting
}

// Reconcile wakes the namespace's waiting sessions that its quota could admit now: the head
// of the FIFO queue, as many as there are free session slots. The sessions behind cannot
// be admitted before those are, and waking every waiting session on every change (each
// measures the whole namespace under its quota lock) made a queue of a few hundred drain at
// a few sessions a second with the manager's CPU spent on it. Without a sessions limit,
// or when the quota cannot be measured, every queued session is woken.
func (q *quotaQueueReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	ns := req.Namespace
	head, limited, err := q.sessions.quota.admissibleHead(ctx, ns)
	if err != nil {
		log.FromContext(ctx).Error(err, "measuring the quota queue; waking every queued session", "namespace", ns)
	}
	var wake []types.NamespacedName
	if err != nil || !limited {
		for _, r := range q.sessions.sessionsMatching(ctx, ns, client.MatchingFields{sessionQueuedIndex: "true"}) {
			wake = append(wake, r.NamespacedName)
		}
	} else {
		wake = head
	}
	for _, key := range wake {
		s := &agentsv1alpha1.AgentSession{}
		s.Namespace, s.Name = key.Namespace, key.Name
		select {
		case q.wakes <- event.TypedGenericEvent[*agentsv1alpha1.AgentSession]{Object: s}:
		case <-ctx.Done():
			return reconcile.Result{}, ctx.Err()
		}
	}
	// Not the measure's error: every queued session was woken instead, and a namespace
	// going away would otherwise retry for ever.
	return reconcile.Result{}, nil
}
