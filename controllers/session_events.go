package controllers

import (
	"context"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
)

// Events describe what a reconcile wrote: a session queued, a session ended. They are
// emitted once the status write they describe has succeeded, as JobSet does, never before:
// an event must not announce an end that the API server never stored (the next reconcile
// decides again, and may decide otherwise).

// eventQueue holds one reconcile's events until its status write succeeds.
type eventQueue struct{ events []queuedEvent }

type queuedEvent struct {
	regarding, related              runtime.Object
	eventType, reason, action, note string
}

type eventQueueKey struct{}

// withEventQueue returns a context whose reconcile queues its events in the returned queue.
func withEventQueue(ctx context.Context) (context.Context, *eventQueue) {
	q := &eventQueue{}
	return context.WithValue(ctx, eventQueueKey{}, q), q
}

// event queues an event in the reconcile's queue; outside a reconcile (no queue in ctx) it
// is emitted at once.
func (r *AgentSessionReconciler) event(ctx context.Context, regarding, related runtime.Object, eventType, reason, action, note string) {
	e := queuedEvent{regarding: regarding, related: related, eventType: eventType, reason: reason, action: action, note: note}
	if q, ok := ctx.Value(eventQueueKey{}).(*eventQueue); ok {
		q.events = append(q.events, e)
		return
	}
	e.emit(r.recorder)
}

// emit records the queued events, in the order they were queued.
func (q *eventQueue) emit(rec recorder.EventRecorder) {
	for _, e := range q.events {
		e.emit(rec)
	}
	q.events = nil
}

func (e queuedEvent) emit(rec recorder.EventRecorder) {
	rec.Eventf(e.regarding, e.related, e.eventType, e.reason, e.action, "%s", e.note)
}
