package controllers

import (
	"context"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"

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

func TestPoolPodChanged(t *testing.T) {
	ready := func(p *corev1.Pod) *corev1.Pod {
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		return p
	}
	tests := []struct {
		name     string
		old, new *corev1.Pod
		want     bool
	}{
		{"a warm pod's status", testPod("", "win-0", false), ready(testPod("", "win-0", false)), true},
		{"a warm pod is bound", testPod("", "win-0", false), testPod("s1", "win-0", false), true},
		{"a bound pod's status: not the pool's business", testPod("s1", "win-0", false), ready(testPod("s1", "win-0", false)), false},
		{"a bound pod starts terminating", testPod("s1", "win-0", false), testPod("s1", "win-0", true), true},
		{"a warm pod starts terminating", testPod("", "win-0", false), testPod("", "win-0", true), true},
	}
	p := poolPodChanged()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.Update(event.UpdateEvent{ObjectOld: tt.old, ObjectNew: tt.new}); got != tt.want {
				t.Errorf("Update = %v, want %v", got, tt.want)
			}
		})
	}
	if !p.Create(event.CreateEvent{Object: testPod("s1", "win-0", false)}) || !p.Delete(event.DeleteEvent{Object: testPod("s1", "win-0", false)}) {
		t.Error("a bound pod's creation or deletion must reach the pool: it changes the pool's active sessions")
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
