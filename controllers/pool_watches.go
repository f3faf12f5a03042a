package controllers

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	nodev1 "k8s.io/api/node/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
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
	"github.com/hyperpool/hyperpool/internal/poolbook"
	"github.com/hyperpool/hyperpool/internal/windows"
)

// SetupWithManager registers the pool controller and its watches.
func (r *AgentSandboxReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("agentsandbox").
		For(&agentsv1alpha1.AgentSandbox{}).
		Owns(&networkingv1.NetworkPolicy{}).
		// Pods wake their pools through the book, once it shows them (wakePools).
		WatchesRawSource(bookSource(r.book, r.wakePools)).
		// A RuntimeClass or a Windows node appearing or going can unblock or block any pool.
		Watches(&nodev1.RuntimeClass{}, handler.EnqueueRequestsFromMapFunc(r.allSandboxes)).
		WatchesMetadata(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(r.nodeChanged),
			builder.WithPredicates(windowsBuildChanged())).
		// The node agents' measurements of the classes' VM sizes.
		WatchesMetadata(&corev1.Node{}, r.vmSizes.nodeHandler()).
		// The node agents' reports on containerd's runtime handlers.
		WatchesMetadata(&corev1.Node{}, r.runtimes.nodeHandler(func(ctx context.Context) []reconcile.Request { return r.sandboxes(ctx) })).
		// A quota raised or lowered lets pools grow or trims them.
		Watches(&agentsv1alpha1.AgentQuota{}, handler.EnqueueRequestsFromMapFunc(r.sandboxesInNamespace)).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.config.SandboxWorkers}).
		Complete(observed(r.config, "agentsandbox", r))
}

// requestQueue is the work queue a controller's handlers add requests to.
type requestQueue = workqueue.TypedRateLimitingInterface[reconcile.Request]

// wakePools lowers the pool's expectations from one pod change the book took in, then
// wakes the pod's pool: at once for the pool's own warm pods (and for a warm pod being
// bound, which the pool replaces), and at most once per poolCountsInterval for pods bound
// to sessions. Those change only the pool's session count and footprint, which it writes
// no more often than that anyway. A bound pod's status updates do not wake the pool at all.
//
// It runs after the book has the change (poolbook.Book.Observe): a reconcile woken by the
// cache's own handler could run before the book saw the event, count the old state, and
// not be woken again.
func (r *AgentSandboxReconciler) wakePools(q requestQueue, old, cur *poolbook.Pod) {
	wake := func(p *poolbook.Pod, atOnce bool) {
		req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: p.Key.Namespace, Name: p.Class}}
		if atOnce {
			q.Add(req)
		} else {
			q.AddAfter(req, poolCountsInterval)
		}
	}
	if cur != nil {
		r.expectations.Seen(types.NamespacedName{Namespace: cur.Key.Namespace, Name: cur.Class}, cur.Key.Name, true, cur.Warm())
	}
	if old != nil && (cur == nil || old.Class != cur.Class) {
		r.expectations.Seen(types.NamespacedName{Namespace: old.Key.Namespace, Name: old.Class}, old.Key.Name, cur != nil, false)
	}
	switch {
	case old == nil: // created
		wake(cur, cur.Session == "")
	case cur == nil: // deleted
		wake(old, old.Session == "")
	case old.Class != cur.Class: // moved between classes (labels are the manager's)
		wake(old, true)
		wake(cur, true)
	case old.Session == "": // a warm pod changed, or was just bound
		wake(old, true)
	case old.Deleting != cur.Deleting:
		wake(cur, false) // a bound pod is going
	}
}

// nodeChanged: a Windows node came, went or changed build. The remembered builds are marked
// stale before any pool is woken to look at them.
func (r *AgentSandboxReconciler) nodeChanged(ctx context.Context, _ client.Object) []reconcile.Request {
	r.builds.changed()
	return r.sandboxes(ctx)
}

func (r *AgentSandboxReconciler) allSandboxes(ctx context.Context, _ client.Object) []reconcile.Request {
	return r.sandboxes(ctx)
}

func (r *AgentSandboxReconciler) sandboxesInNamespace(ctx context.Context, o client.Object) []reconcile.Request {
	return r.sandboxes(ctx, client.InNamespace(o.GetNamespace()))
}

func (r *AgentSandboxReconciler) sandboxes(ctx context.Context, opts ...client.ListOption) []reconcile.Request {
	list := &agentsv1alpha1.AgentSandboxList{}
	if err := r.List(ctx, list, append(opts, client.UnsafeDisableDeepCopy)...); err != nil {
		log.FromContext(ctx).Error(err, "listing AgentSandboxes to re-check")
		return nil
	}
	return requestsOf(list.Items)
}

// requestsOf returns a request for each of a list's items, for a watch that wakes them all.
func requestsOf[T any, P interface {
	*T
	client.Object
}](items []T) []reconcile.Request {
	reqs := make([]reconcile.Request, 0, len(items))
	for i := range items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(P(&items[i]))})
	}
	return reqs
}

// windowsBuildChanged passes node creations, deletions and changes of the labels that decide
// which pools a node can serve; heartbeats and status updates, the bulk of node events,
// do not pass.
func windowsBuildChanged() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, n := e.ObjectOld.GetLabels(), e.ObjectNew.GetLabels()
			return o[windows.BuildLabel] != n[windows.BuildLabel] || o[osLabel] != n[osLabel]
		},
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}

// bookSource wakes a controller from the pool book's changes (poolbook.Book.Observe): fn
// runs once the book has taken a pod's change in, so the reconciles it starts count from a
// book that shows it. A watch on pods would race the book: the cache runs each handler on
// its own, in no set order.
func bookSource(book *poolbook.Book, fn func(q requestQueue, old, cur *poolbook.Pod)) source.Source {
	return source.Func(func(_ context.Context, q requestQueue) error {
		book.Observe(func(old, cur *poolbook.Pod) { fn(q, old, cur) })
		return nil
	})
}
