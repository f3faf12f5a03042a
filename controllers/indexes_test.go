package controllers

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

func testPod(session, node string, deleting bool) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Labels: map[string]string{agentsv1alpha1.SandboxLabel: "pool"}},
		Spec: corev1.PodSpec{NodeName: node}}
	if session != "" {
		p.Labels[agentsv1alpha1.SessionLabel] = session
	}
	if deleting {
		p.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	}
	return p
}

func TestPodIndexesKeepBoundPodsApartFromTheWarmOnes(t *testing.T) {
	indexes := recordingIndexer{}
	if err := RegisterIndexes(context.Background(), indexes); err != nil {
		t.Fatal(err)
	}
	unlabelled := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "other"}, Spec: corev1.PodSpec{NodeName: "win-0"}}
	tests := []struct {
		name                   string
		pod                    *corev1.Pod
		warm, bound, boundNode []string
	}{
		{"warm", testPod("", "win-0", false), []string{"pool"}, nil, nil},
		{"warm, terminating", testPod("", "win-0", true), []string{"pool"}, nil, nil},
		{"bound", testPod("s1", "win-0", false), nil, []string{"pool"}, []string{"pool/win-0"}},
		{"bound, not scheduled yet", testPod("s1", "", false), nil, []string{"pool"}, nil},
		{"bound, terminating: no load on its node", testPod("s1", "win-0", true), nil, []string{"pool"}, nil},
		{"not hyperpool's", unlabelled, nil, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for field, want := range map[string][]string{podWarmIndex: tt.warm, podBoundIndex: tt.bound, podBoundNodeIndex: tt.boundNode} {
				if got := indexes[field](tt.pod); !slices.Equal(got, want) {
					t.Errorf("%s = %q, want %q", field, got, want)
				}
			}
		})
	}
}

// wakeRecorder records how poolPodHandler wakes a pool: at once, or after a delay.
type wakeRecorder struct {
	workqueue.TypedRateLimitingInterface[reconcile.Request]
	atOnce, later int
}

func (q *wakeRecorder) Add(reconcile.Request)                     { q.atOnce++ }
func (q *wakeRecorder) AddAfter(reconcile.Request, time.Duration) { q.later++ }

func TestPoolPodHandler(t *testing.T) {
	ready := func(p *corev1.Pod) *corev1.Pod {
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		return p
	}
	const atOnce, later, never = "at once", "later", "never"
	// An event: a creation (new only), a deletion (old only) or an update (both).
	type podEvent struct{ old, new *corev1.Pod }
	tests := []struct {
		name  string
		event podEvent
		wants string
	}{
		{"a warm pod is created", podEvent{new: testPod("", "win-0", false)}, atOnce},
		{"a warm pod becomes Ready", podEvent{testPod("", "win-0", false), ready(testPod("", "win-0", false))}, atOnce},
		{"a warm pod is bound: the pool replaces it", podEvent{testPod("", "win-0", false), testPod("s1", "win-0", false)}, atOnce},
		{"a warm pod is deleted", podEvent{old: testPod("", "win-0", false)}, atOnce},
		{"a cold pod is created: counts only", podEvent{new: testPod("s1", "", false)}, later},
		{"a bound pod starts terminating: counts only", podEvent{testPod("s1", "win-0", false), testPod("s1", "win-0", true)}, later},
		{"a bound pod is deleted: counts only", podEvent{old: testPod("s1", "win-0", true)}, later},
		{"a bound pod's status: not the pool's business", podEvent{testPod("s1", "win-0", false), ready(testPod("s1", "win-0", false))}, never},
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

func TestBindOrder(t *testing.T) {
	t0 := time.Now()
	pod := func(name string) *corev1.Pod { return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}} }
	tests := []struct {
		name  string
		pods  []rankedPod
		first string
	}{
		{"the node with fewer sessions of the class wins over age and template",
			[]rankedPod{{pod: pod("busy-node"), load: 3, preferred: true, created: t0}, {pod: pod("quiet-node"), load: 1, created: t0.Add(time.Hour)}}, "quiet-node"},
		{"on equal load, the template the update strategy prefers",
			[]rankedPod{{pod: pod("other-template"), load: 1, created: t0}, {pod: pod("preferred"), load: 1, preferred: true, created: t0.Add(time.Hour)}}, "preferred"},
		{"then the oldest",
			[]rankedPod{{pod: pod("young"), created: t0.Add(time.Minute)}, {pod: pod("old"), created: t0}}, "old"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			slices.SortFunc(tt.pods, bindOrder)
			if got := tt.pods[0].pod.Name; got != tt.first {
				t.Errorf("first = %s, want %s", got, tt.first)
			}
		})
	}
}
