package controllers

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

// hyperpoolController is the object's controller reference when it is to a hyperpool kind,
// else nil. Whether the manager destroys a sandbox pod rests on hyperpool's own labels and
// owners only: a foreign controller reference is anyone's to add (with edit, to a pod that
// an orphaning delete left without its session's), and it must not keep a VM running that
// nothing of hyperpool holds.
func hyperpoolController(o metav1.Object) *metav1.OwnerReference {
	ref := metav1.GetControllerOf(o)
	if ref == nil {
		return nil
	}
	if gv, err := schema.ParseGroupVersion(ref.APIVersion); err != nil || gv.Group != agentsv1alpha1.GroupVersion.Group {
		return nil
	}
	return ref
}
