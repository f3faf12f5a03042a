package podstate

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestReadyAndTerminated(t *testing.T) {
	ready := []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	notReady := []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}}
	tests := []struct {
		name              string
		phase             corev1.PodPhase
		conditions        []corev1.PodCondition
		ready, terminated bool
	}{
		{"running and ready", corev1.PodRunning, ready, true, false},
		{"running, not ready", corev1.PodRunning, notReady, false, false},
		{"running, no condition yet", corev1.PodRunning, nil, false, false},
		{"pending with a stale ready condition", corev1.PodPending, ready, false, false},
		{"failed", corev1.PodFailed, ready, false, true},
		{"succeeded", corev1.PodSucceeded, nil, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := &corev1.Pod{Status: corev1.PodStatus{Phase: tt.phase, Conditions: tt.conditions}}
			if got := Ready(pod); got != tt.ready {
				t.Errorf("Ready = %v, want %v", got, tt.ready)
			}
			if got := Terminated(pod); got != tt.terminated {
				t.Errorf("Terminated = %v, want %v", got, tt.terminated)
			}
		})
	}
}
