package controllers

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/poolbook"
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
// the class is gone): poolbook.Pod.Footprint, which every sum of the pool book (the quota,
// the pool's status, the idle-memory metric) charges, for one pod (a session's status).
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
	var shape *poolbook.Shape
	if class != nil {
		shape = &poolbook.Shape{Footprint: class.footprint, Hash: class.hash}
	}
	return poolbook.PodOf(pod).Footprint(shape) // the pool book charges its sums the same way
}

// namespaceClasses resolves the classes of a namespace's sandbox pods to their shapes, from
// one list of the cache.
type namespaceClasses struct {
	byName map[string]*agentsv1alpha1.AgentSandbox
}

func listNamespaceClasses(ctx context.Context, reader client.Reader, ns string) (*namespaceClasses, error) {
	list := &agentsv1alpha1.AgentSandboxList{}
	if err := reader.List(ctx, list, client.InNamespace(ns), client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	c := &namespaceClasses{byName: make(map[string]*agentsv1alpha1.AgentSandbox, len(list.Items))}
	for i := range list.Items {
		c.byName[list.Items[i].Name] = &list.Items[i]
	}
	return c, nil
}

// bookShape is the shape of the class named name in the book's terms (nil: no such class).
func (c *namespaceClasses) bookShape(name string) *poolbook.Shape {
	sb, ok := c.byName[name]
	if !ok {
		return nil
	}
	return bookShape(sb)
}
