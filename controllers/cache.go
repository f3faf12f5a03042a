package controllers

import (
	"github.com/Microsoft/hcsshim/pkg/annotations"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/uvm"
)

// CacheOptions is the manager's cache: managed fields stripped from every object (no
// controller reads them, and they are most of a pod's bytes), and of the pods only
// hyperpool's, trimmed to what the controllers read. A cluster runs many more pods than
// sandboxes, and the manager holds every sandbox and session at once: with many sessions
// the pods are most of its memory (docs/performance.md).
//
// The tenant may add any label or annotation that no admission policy guards to its
// sandbox pods and sessions, up to 256 KiB of annotations per object: the pod and session
// caches keep only the keys the manager reads (podKeptLabels, podKeptAnnotations,
// sessionKeptAnnotations), so what a tenant adds costs the manager nothing.
func CacheOptions() cache.Options {
	sandboxPods, err := labels.NewRequirement(agentsv1alpha1.ClassLabel, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant label key
	}
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}:                  {Label: labels.NewSelector().Add(*sandboxPods), Transform: trimPod},
			&agentsv1alpha1.AgentSession{}: {Transform: trimSession},
			&agentsv1alpha1.AgentSandbox{}: {Transform: trimMetadataOnly},
			&agentsv1alpha1.AgentQuota{}:   {Transform: trimMetadataOnly},
		},
	}
}

// The metadata keys the controllers read, by object. Every key the manager reads from a
// cached pod or session must be listed here, or the cache drops it: a new read of a key
// not listed sees it missing.
var (
	podKeptLabels      = keySet(agentsv1alpha1.ClassLabel, agentsv1alpha1.SessionLabel, agentsv1alpha1.TemplateHashLabel)
	podKeptAnnotations = keySet(
		uvm.FootprintAnnotation, // the footprint the manager recorded at creation (quota)
		// The utility VM's size as the shim reads it (uvm.FootprintFromPod).
		annotations.MemorySizeInMB, annotations.ProcessorCount,
		specDigestAnnotation, observedSpecDigestAnnotation, // the bind's tamper check
	)
	sessionKeptAnnotations = keySet(agentsv1alpha1.CredentialsDeliveredAnnotation, agentsv1alpha1.LastActivityAnnotation)
)

// maxKeptValueBytes caps each kept label or annotation value in the cache. Every value the
// manager reads is a time, a number, a name or a short JSON object; a longer one is not
// valid for it whole either, and is kept cut so that it still reads as invalid.
const maxKeptValueBytes = 1024

func keySet(keys ...string) map[string]bool {
	set := make(map[string]bool, len(keys))
	for _, k := range keys {
		set[k] = true
	}
	return set
}

// trimPod keeps the parts of a pod the controllers read: its metadata (the kept labels and
// annotations, owners, timestamps), the node, the RuntimeClass, its phase, conditions and
// IP, and the digest of the spec fields a tenant can still change (observedSpecDigest).
// Writes to pods are merge patches of labels and owners, computed between two copies of
// the cached pod, or deletions, so nothing trimmed is ever written back.
func trimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // a tombstone: DeletedFinalStateUnknown
	}
	if _, done := pod.Annotations[observedSpecDigestAnnotation]; done && len(pod.Spec.Containers) == 0 {
		// Already trimmed: client-go may run the transform again on a cached object (a
		// relist's Replace, a resync). The API server never holds a pod without containers,
		// so a value a tenant wrote is still always overwritten below; recomputing here
		// would hash the trimmed spec and make every warm pod look tampered.
		return pod, nil
	}
	digest := specDigest(&pod.Spec) // from the full spec, before it is trimmed
	trimMeta(&pod.ObjectMeta, podKeptLabels, podKeptAnnotations)
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[observedSpecDigestAnnotation] = digest
	pod.Spec = corev1.PodSpec{NodeName: pod.Spec.NodeName, RuntimeClassName: pod.Spec.RuntimeClassName}
	pod.Status = corev1.PodStatus{Phase: pod.Status.Phase, Conditions: pod.Status.Conditions,
		PodIP: pod.Status.PodIP, Reason: pod.Status.Reason, Message: pod.Status.Message}
	return pod, nil
}

// trimSession keeps a session's spec and status whole (the manager reads them, and the CRD
// bounds them) and, of its metadata, the annotations the manager reads. The session's
// status is written with merge patches between two copies of the cached session, so the
// dropped keys are never written back.
func trimSession(obj any) (any, error) {
	s, ok := obj.(*agentsv1alpha1.AgentSession)
	if !ok {
		return obj, nil
	}
	trimMeta(&s.ObjectMeta, nil, sessionKeptAnnotations)
	return s, nil
}

// trimMetadataOnly drops every label and annotation of an object whose metadata the manager
// never reads (classes and quotas; e.g. a class's kubectl last-applied-configuration is a
// copy of its whole template).
func trimMetadataOnly(obj any) (any, error) {
	if o, ok := obj.(metav1.Object); ok {
		o.SetManagedFields(nil)
		o.SetLabels(nil)
		o.SetAnnotations(nil)
	}
	return obj, nil
}

// trimMeta strips managed fields and keeps only the listed label and annotation keys, each
// value cut at maxKeptValueBytes.
func trimMeta(m *metav1.ObjectMeta, keepLabels, keepAnnotations map[string]bool) {
	m.ManagedFields = nil
	m.Labels = keptKeys(m.Labels, keepLabels)
	m.Annotations = keptKeys(m.Annotations, keepAnnotations)
}

func keptKeys(m map[string]string, keep map[string]bool) map[string]string {
	var out map[string]string
	for k, v := range m {
		if !keep[k] {
			continue
		}
		if out == nil {
			out = make(map[string]string, len(keep))
		}
		if len(v) > maxKeptValueBytes {
			v = v[:maxKeptValueBytes]
		}
		out[k] = v
	}
	return out
}
