package controllers

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/uvm"
)

// classShape is what a class's pods are charged from: the footprint of one pod of its
// current template, and that template's hash.
type classShape struct {
	footprint agentsv1alpha1.Footprint
	hash      string
}

// shapeOf returns sb's shape, or nil for a class that is gone (nil).
func shapeOf(sb *agentsv1alpha1.AgentSandbox) *classShape {
	if sb == nil {
		return nil
	}
	return &classShape{footprint: classFootprint(sb), hash: templateHash(sb)}
}

// sandboxPodFootprint is the VM footprint charged for one sandbox pod of class (nil when
// the class is gone). Every reader of a pod's footprint goes through it: the quota, the
// pool's status, the autoscaler's idle-memory metric and a session's status.
//
// The footprint is what the manager created, never what the pod's annotations say now:
// the io.microsoft.virtualmachine.* sizing keys, and even the recorded
// agents.hyperpool.io/footprint, are metadata that a tenant with `edit` could strip or
// rewrite (unless the agent-metadata admission policy is installed), while the VM keeps
// the size it booted with. So, in order:
//  1. a pod of the class's current template (its template-hash label, which only the
//     manager may write, matches) is charged the class's footprint: the footprint is a
//     function of the template the hash covers, whatever the annotations say;
//  2. a pod of an older template is charged the footprint recorded at its creation
//     (uvm.FootprintAnnotation);
//  3. without a readable record (stripped, or a pod made before the record existed) it is
//     charged the larger of the class's current footprint and the VM-sizing annotations:
//     never less than the class says, since the pod cannot be shown to be smaller, and
//     not less than the shim was told to boot.
func sandboxPodFootprint(pod *corev1.Pod, class *classShape) agentsv1alpha1.Footprint {
	if class != nil && pod.Labels[agentsv1alpha1.TemplateHashLabel] == class.hash {
		return class.footprint
	}
	if recorded, ok := uvm.RecordedFootprint(pod); ok {
		return recorded
	}
	sized := uvm.FootprintFromPod(pod)
	if class == nil {
		return sized
	}
	return uvm.MaxFootprint(class.footprint, sized)
}

// namespaceClasses resolves the classes of a namespace's sandbox pods for
// sandboxPodFootprint, from one list of the cache, hashing each class at most once.
type namespaceClasses struct {
	byName map[string]*agentsv1alpha1.AgentSandbox
	shapes map[string]*classShape
}

func listNamespaceClasses(ctx context.Context, reader client.Reader, ns string) (*namespaceClasses, error) {
	list := &agentsv1alpha1.AgentSandboxList{}
	if err := reader.List(ctx, list, client.InNamespace(ns), client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	c := &namespaceClasses{byName: make(map[string]*agentsv1alpha1.AgentSandbox, len(list.Items)), shapes: map[string]*classShape{}}
	for i := range list.Items {
		c.byName[list.Items[i].Name] = &list.Items[i]
	}
	return c, nil
}

// footprint is sandboxPodFootprint of pod, against the class its sandbox label names.
func (c *namespaceClasses) footprint(pod *corev1.Pod) agentsv1alpha1.Footprint {
	name := pod.Labels[agentsv1alpha1.SandboxLabel]
	shape, seen := c.shapes[name]
	if !seen {
		shape = shapeOf(c.byName[name])
		c.shapes[name] = shape
	}
	return sandboxPodFootprint(pod, shape)
}
