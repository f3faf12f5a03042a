package controllers

import (
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/hyperpool/hyperpool/test/builders"
)

func TestBindOrder(t *testing.T) {
	t0 := time.Now()
	pod := func(name string) *corev1.Pod { return builders.Pod("", name).Obj() }
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
