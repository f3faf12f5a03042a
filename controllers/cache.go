package controllers

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

// CacheOptions is the manager's cache: managed fields stripped from every object (no
// controller reads them, and they are most of a pod's bytes), and of the pods only
// hyperpool's, trimmed to what the controllers read. A cluster runs many more pods than
// sandboxes, and the manager holds every sandbox and session at once: with many sessions
// the pods are most of its memory (docs/performance.md).
func CacheOptions() cache.Options {
	sandboxPods, err := labels.NewRequirement(agentsv1alpha1.SandboxLabel, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant label key
	}
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}: {Label: labels.NewSelector().Add(*sandboxPods), Transform: trimPod},
		},
	}
}

// trimPod keeps the parts of a pod the controllers read: its metadata (labels, owners, the
// VM-size annotations, timestamps), the node, and its phase, conditions and IP. Writes to
// pods are merge patches of labels and owners, or deletions, so nothing trimmed is ever
// written back.
func trimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // a tombstone: DeletedFinalStateUnknown
	}
	pod.ManagedFields = nil
	pod.Spec = corev1.PodSpec{NodeName: pod.Spec.NodeName, RuntimeClassName: pod.Spec.RuntimeClassName}
	pod.Status = corev1.PodStatus{Phase: pod.Status.Phase, Conditions: pod.Status.Conditions,
		PodIP: pod.Status.PodIP, Reason: pod.Status.Reason, Message: pod.Status.Message}
	return pod, nil
}
