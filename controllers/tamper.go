package controllers

// The bind's check that a warm pod is still what the manager created. The agent-metadata
// and pod-spec admission policies refuse a tenant's edits of a sandbox pod; this is the
// defence behind them (a policy not installed, turned off, or a pod changed before it
// was): a warm pod whose spec changed is destroyed, never bound.

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

const (
	// specDigestAnnotation records, on every sandbox pod the manager creates, specDigest of
	// the spec it created the pod with. Only the manager may write it (the agent-metadata
	// admission policy).
	specDigestAnnotation = "agents.hyperpool.io/spec-digest"
	// observedSpecDigestAnnotation exists only in the manager's cache: trimPod sets it to
	// specDigest of the pod's spec as the API server holds it, before it trims the spec.
	// It is never written (pod writes are merge patches between two cached copies), and a
	// value a tenant writes is overwritten by the transform.
	observedSpecDigestAnnotation = "agents.hyperpool.io/observed-spec-digest"

	// ReasonTamperedSandbox is the reason of the Warning event on the class when a warm pod
	// whose spec was changed is destroyed at bind.
	ReasonTamperedSandbox = "TamperedSandboxDestroyed"
)

var tamperedPods = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "hyperpool_tampered_sandboxes_destroyed_total",
	Help: "Warm sandbox pods destroyed at bind because their spec was no longer the one the manager created (an image or deadline changed, an ephemeral container added), by pool.",
}, []string{"namespace", "sandbox"})

func init() { metrics.Registry.MustRegister(tamperedPods) }

// specDigest hashes the parts of a pod's spec that the API server lets an update change
// and that change what the sandbox runs: every container's and init container's image,
// the ephemeral containers (the manager adds none), and activeDeadlineSeconds. The other
// mutable fields are left out: tolerations (the API server's own admission adds some at
// creation, and an added one only changes where an already scheduled pod may stay),
// terminationGracePeriodSeconds (defaulted at creation; the delete's grace is checked
// where the pod is deleted), and scheduling gates (only removable).
func specDigest(spec *corev1.PodSpec) string {
	type image struct{ Name, Image string }
	var shape struct {
		Containers, InitContainers, EphemeralContainers []image
		ActiveDeadlineSeconds                           *int64
	}
	for _, c := range spec.Containers {
		shape.Containers = append(shape.Containers, image{c.Name, c.Image})
	}
	for _, c := range spec.InitContainers {
		shape.InitContainers = append(shape.InitContainers, image{c.Name, c.Image})
	}
	for _, c := range spec.EphemeralContainers {
		shape.EphemeralContainers = append(shape.EphemeralContainers, image{c.Name, c.Image})
	}
	shape.ActiveDeadlineSeconds = spec.ActiveDeadlineSeconds
	data, _ := json.Marshal(shape) // plain structs: cannot fail
	h := fnv.New64a()
	_, _ = h.Write(data)
	return strconv.FormatUint(h.Sum64(), 36)
}

// observedSpecDigest is the digest of the pod's spec as the API server holds it: the one
// the cache transform computed, or, for a pod read around the cache, its own.
func observedSpecDigest(pod *corev1.Pod) string {
	if d, ok := pod.Annotations[observedSpecDigestAnnotation]; ok {
		return d
	}
	return specDigest(&pod.Spec)
}

// tamperCheck tells whether a warm pod's spec is still what the manager created. Two
// references, each enough alone: the digest the manager recorded at creation, and, for a
// pod of the class's current template, the digest of that template (which holds even when
// the recorded annotation was changed or removed where no policy guards it). A pod of an
// older template made before the annotation existed has neither and passes. One check
// serves one bind: the template's digest is computed once, not per candidate.
type tamperCheck struct {
	class, currentHash, templateDigest string
}

func newTamperCheck(sb *agentsv1alpha1.AgentSandbox, currentHash string) tamperCheck {
	return tamperCheck{class: sb.Name, currentHash: currentHash, templateDigest: specDigest(&sb.Spec.Template.Spec)}
}

// problem says how the pod's spec differs from what the manager created, or "".
func (c tamperCheck) problem(pod *corev1.Pod) string {
	observed := observedSpecDigest(pod)
	if recorded, ok := pod.Annotations[specDigestAnnotation]; ok && recorded != observed {
		return fmt.Sprintf("its spec (container images, ephemeral containers, activeDeadlineSeconds) has digest %s, not the %s it was created with", observed, recorded)
	}
	if pod.Labels[agentsv1alpha1.TemplateHashLabel] == c.currentHash && c.templateDigest != observed {
		return fmt.Sprintf("its spec (container images, ephemeral containers, activeDeadlineSeconds) has digest %s, not the %s of AgentSandbox %s's template", observed, c.templateDigest, c.class)
	}
	return ""
}

// destroyTampered deletes a warm pod whose spec was changed, with the UID and
// resourceVersion that were checked: a pod changed again since is looked at again. It
// reports the pod on the class (a Warning event), in the log and in
// hyperpool_tampered_sandboxes_destroyed_total. destroyed is false when the pod changed or
// went meanwhile.
func (r *AgentSessionReconciler) destroyTampered(ctx context.Context, sb *agentsv1alpha1.AgentSandbox, pod *corev1.Pod, why string) (destroyed bool, err error) {
	err = r.Delete(ctx, pod, client.Preconditions{UID: &pod.UID, ResourceVersion: &pod.ResourceVersion})
	switch {
	case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("deleting tampered warm pod %s: %w", pod.Name, err)
	}
	msg := fmt.Sprintf("warm pod %s was destroyed instead of bound: %s; a sandbox pod's spec is the manager's alone", pod.Name, why)
	log.FromContext(ctx).Info("destroyed a tampered warm pod instead of binding it", "pod", pod.Name, "reason", why)
	tamperedPods.WithLabelValues(sb.Namespace, sb.Name).Inc()
	// At once, not with the reconcile's events: the delete is done whatever the status
	// write does.
	r.recorder.Eventf(sb, pod, corev1.EventTypeWarning, ReasonTamperedSandbox, "Bind", "%s", msg)
	return true, nil
}
