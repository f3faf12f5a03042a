package controllers

import (
	"slices"
	"testing"
	"time"
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
