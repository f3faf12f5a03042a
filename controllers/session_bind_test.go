package controllers

import (
	"context"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

func TestBindOrder(t *testing.T) {
	t0 := time.Now()
	type named struct {
		name string
		rankedPod
	}
	tests := []struct {
		name  string
		pods  []named
		first string
	}{
		{"the node with fewer sessions of the class wins over age and template",
			[]named{{"busy-node", rankedPod{load: 3, preferred: true, created: t0}}, {"quiet-node", rankedPod{load: 1, created: t0.Add(time.Hour)}}}, "quiet-node"},
		{"on equal load, the template the update strategy prefers",
			[]named{{"other-template", rankedPod{load: 1, created: t0}}, {"preferred", rankedPod{load: 1, preferred: true, created: t0.Add(time.Hour)}}}, "preferred"},
		{"then the oldest",
			[]named{{"young", rankedPod{created: t0.Add(time.Minute)}}, {"old", rankedPod{created: t0}}}, "old"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			slices.SortFunc(tt.pods, func(a, b named) int { return bindOrder(a.rankedPod, b.rankedPod) })
			if got := tt.pods[0].name; got != tt.first {
				t.Errorf("first = %s, want %s", got, tt.first)
			}
		})
	}
}

// Two managers that each bound a pod during a leader change must keep the same one, whatever
// their caches say of the session: each deleting "the other" pod would leave the session none.
func TestPodToKeepIsTheSameForEveryManager(t *testing.T) {
	t0 := metav1.NewTime(time.Now().Truncate(time.Second))
	pod := func(name string, created metav1.Time) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, CreationTimestamp: created}}
	}
	session := func(podName string) *agentsv1alpha1.AgentSession {
		s := &agentsv1alpha1.AgentSession{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s"}}
		s.Status.PodName = podName
		return s
	}
	older, younger := pod("b-older", t0), pod("a-younger", metav1.NewTime(t0.Add(time.Second)))
	twin := pod("c-same-age", t0)
	tests := []struct {
		name   string
		stored string   // status.podName on the API server
		cached []string // status.podName in each manager's cache
		held   []*corev1.Pod
		want   string
	}{
		{"the pod the stored session names, even where a cache names the other or none",
			"a-younger", []string{"", "b-older", "a-younger"}, []*corev1.Pod{older, younger}, "a-younger"},
		{"none named: the oldest, whatever a stale cache names",
			"", []string{"", "a-younger"}, []*corev1.Pod{younger, older}, "b-older"},
		{"none named, equal ages: the first by name",
			"", []string{"", "c-same-age"}, []*corev1.Pod{twin, older}, "b-older"},
		{"the stored name is none of the held pods: the oldest",
			"gone", []string{"gone"}, []*corev1.Pod{younger, older}, "b-older"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			apiServer := fake.NewClientBuilder().WithScheme(unitScheme(t)).WithObjects(session(tt.stored)).Build()
			for _, cached := range tt.cached {
				r := &AgentSessionReconciler{apiReader: apiServer}
				keep, err := r.podToKeep(context.Background(), session(cached), tt.held)
				if err != nil {
					t.Fatal(err)
				}
				if keep.Name != tt.want {
					t.Errorf("a manager whose cache names %q keeps %s, want %s", cached, keep.Name, tt.want)
				}
			}
		})
	}
}
