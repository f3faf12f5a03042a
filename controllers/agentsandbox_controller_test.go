package controllers

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/hyperpool/hyperpool/internal/expectations"
	"github.com/hyperpool/hyperpool/internal/poolbook"
)

// wakeRecorder records how wakePools wakes a pool: at once, or after a delay.
type wakeRecorder struct {
	workqueue.TypedRateLimitingInterface[reconcile.Request]
	atOnce, later int
}

func (q *wakeRecorder) Add(reconcile.Request)                     { q.atOnce++ }
func (q *wakeRecorder) AddAfter(reconcile.Request, time.Duration) { q.later++ }

// TestWakePools: which pod changes the book passes on wake the pod's pool, and when.
func TestWakePools(t *testing.T) {
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
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &AgentSandboxReconciler{book: poolbook.New(), expectations: expectations.NewPods(clock.RealClock{})}
			q := &wakeRecorder{}
			if tt.event.old != nil {
				r.book.Update(tt.event.old) // what the book showed before the event
			}
			r.book.Observe(func(old, cur *poolbook.Pod) { r.wakePools(q, old, cur) })
			if tt.event.new != nil {
				r.book.Update(tt.event.new)
			} else {
				r.book.Remove(client.ObjectKeyFromObject(tt.event.old))
			}
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
