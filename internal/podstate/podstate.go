// Package podstate answers the two questions about a pod that the controllers, the
// benchmark, the chaos test and the test bed all ask, in one place: is it Ready, and has it
// ended.
package podstate

import corev1 "k8s.io/api/core/v1"

// Ready reports whether the pod is Running with its Ready condition True: a sandbox that can
// be handed to a session.
func Ready(pod *corev1.Pod) bool {
	if pod.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Terminated reports whether the pod's phase is an end state (Failed or Succeeded): a
// sandbox never exits on its own, so either means it can serve no one.
func Terminated(pod *corev1.Pod) bool {
	return pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded
}
