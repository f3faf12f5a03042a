package controllers

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// wakeRecorder records how poolPodHandler wakes a pool: at once, or after a delay.
type wakeRecorder struct {
	workqueue.TypedRateLimitingInterface[reconcile.Request]
	atOnce, later int
}

func (q *wakeRecorder) Add(reconcile.Request)                     { q.atOnce++ }
func (q *wakeRecorder) AddAfter(reconcile.Request, time.Duration) { q.later++ }

func TestPoolPodHandler(t *testing.T) {
	const atOnce, later, never = "at once", "later", "never"
	// An event: a creation (new only), a deletion (old only) or an update (both).
	type podEvent struct{ old, new *corev1.Pod }
	tests := []struct {
		name  string
		event podEvent
		wants string
	}{
		{"a warm pod is created", podEvent{new: poolPod("", "win-0").Obj()}, atOnce},
		{"a warm pod becomes Ready", podEvent{poolPod("", "win-0").Obj(), poolPod("", "win-0").Ready().Obj()}, atOnce},
		{"a warm pod is bound: the pool replaces it", podEvent{poolPod("", "win-0").Obj(), poolPod("s1", "win-0").Obj()}, atOnce},
		{"a warm pod is deleted", podEvent{old: poolPod("", "win-0").Obj()}, atOnce},
		{"a cold pod is created: counts only", podEvent{new: poolPod("s1", "").Obj()}, later},
		{"a bound pod starts terminating: counts only", podEvent{poolPod("s1", "win-0").Obj(), poolPod("s1", "win-0").Terminating(time.Now()).Obj()}, later},
		{"a bound pod is deleted: counts only", podEvent{old: poolPod("s1", "win-0").Terminating(time.Now()).Obj()}, later},
		{"a bound pod's status: not the pool's business", podEvent{poolPod("s1", "win-0").Obj(), poolPod("s1", "win-0").Ready().Obj()}, never},
	}
	send := func(h handler.EventHandler, q *wakeRecorder, e podEvent) {
		ctx := context.Background()
		switch {
		case e.old == nil:
			h.Create(ctx, event.CreateEvent{Object: e.new}, q)
		case e.new == nil:
			h.Delete(ctx, event.DeleteEvent{Object: e.old}, q)
		default:
			h.Update(ctx, event.UpdateEvent{ObjectOld: e.old, ObjectNew: e.new}, q)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := &wakeRecorder{}
			send(poolPodHandler(), q, tt.event)
			got := never
			switch {
			case q.atOnce == 1 && q.later == 0:
				got = atOnce
			case q.later == 1 && q.atOnce == 0:
				got = later
			case q.atOnce+q.later > 0:
				got = fmt.Sprintf("%d at once and %d later", q.atOnce, q.later)
			}
			if got != tt.wants {
				t.Errorf("the pool is woken %s, want %s", got, tt.wants)
			}
		})
	}
}
