package controllers

// Which session work goes first: a session that holds a sandbox has a deadline, and the
// reconcile that ends it at that deadline goes before binds and admissions.

import (
	"context"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

// deadlinePriority is the workqueue priority of a session that holds a sandbox: above
// every other event (0) and above the initial list (handler.LowPriority).
//
// Why: the session controller's workqueue is controller-runtime's priority queue. A
// manager that takes the Lease gets every session of its cache from the initial list, at
// LowPriority, in the informer's arbitrary order, and reconciles them one by one. In the
// chaos test (docs/chaos.md) that is about a thousand sessions: most are queued behind
// the quota, and each of those measures the namespace under the quota ledger's lock, so
// a session whose deadline had passed while no manager led waited behind hundreds of them.
// Leaders that led about 5 s between faults each ended a handful of overdue sessions (the
// pod deletes in kwok's log), and sessions due while the faults came ended up to minutes
// after their deadline. Worse, a
// reconcile's requeue keeps its item's priority: a session first seen in the initial list
// had its deadline timer at LowPriority, behind every pod event and quota wake.
//
// Ending a session is cheap (a status write and a pod delete) and frees quota for the
// sessions that wait, so a session with a deadline is looked at first: when first seen
// (sessionEvents) and at its deadline (withDeadlinePriority). How many sessions hold a
// sandbox is bounded by the pods, so the rest still gets its turn.
const deadlinePriority = 100

// holdsSandbox reports whether a session in this status holds a sandbox and has not ended:
// it has a deadline, and nothing but this manager ends it.
func holdsSandbox(st *agentsv1alpha1.AgentSessionStatus) bool {
	return st.PodName != "" && !st.Phase.IsFinished()
}

// sessionEvents enqueues a session on its own events as For does
// (handler.EnqueueRequestForObject), except that a session that holds a sandbox when it
// is first seen (the initial list when this manager starts to lead, where every other
// session comes at LowPriority) is queued at deadlinePriority: its deadline may have
// passed while no manager led.
type sessionEvents struct {
	handler.EnqueueRequestForObject
}

// Create implements handler.EventHandler.
func (h *sessionEvents) Create(ctx context.Context, evt event.CreateEvent, q requestQueue) {
	s, isSession := evt.Object.(*agentsv1alpha1.AgentSession)
	pq, isPriorityQueue := q.(priorityqueue.PriorityQueue[reconcile.Request])
	if !isSession || s == nil || !isPriorityQueue || !holdsSandbox(&s.Status) {
		h.EnqueueRequestForObject.Create(ctx, evt, q)
		return
	}
	pq.AddWithOpts(priorityqueue.AddOpts{Priority: ptr.To(deadlinePriority)},
		reconcile.Request{NamespacedName: client.ObjectKeyFromObject(s)})
}

// withDeadlinePriority sets the priority of the reconcile's requeue (its RequeueAfter, or
// its retry after an error) to deadlinePriority when the session held a sandbox before or
// after it: the requeue is its deadline timer, or the retry of an end whose write failed.
// Otherwise the request keeps its priority.
func withDeadlinePriority(result ctrl.Result, before, after *agentsv1alpha1.AgentSessionStatus) ctrl.Result {
	if holdsSandbox(before) || holdsSandbox(after) {
		result.Priority = ptr.To(deadlinePriority)
	}
	return result
}

// sessionLogConstructor gives the session controller's reconciles the logger For would:
// the controller, its group and kind, and the session. The controller watches its own kind
// with Watches (sessionEvents), which leaves these out.
func sessionLogConstructor(base logr.Logger) func(*reconcile.Request) logr.Logger {
	log := base.WithValues("controller", "agentsession",
		"controllerGroup", agentsv1alpha1.GroupVersion.Group, "controllerKind", "AgentSession")
	return func(req *reconcile.Request) logr.Logger {
		if req == nil {
			return log
		}
		return log.WithValues("AgentSession", klog.KRef(req.Namespace, req.Name), "namespace", req.Namespace, "name", req.Name)
	}
}
