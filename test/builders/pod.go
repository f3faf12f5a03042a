package builders

import (
	"fmt"
	"maps"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

// scheme names the kinds OwnedBy may be given: client-go's and the hyperpool API.
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := agentsv1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}()

// PodWrapper builds a Pod.
type PodWrapper struct{ corev1.Pod }

// Pod returns a bare pod: no labels, no containers, not scheduled, no status. Enough for
// the pure functions and fake clients of unit tests; give it Windows and a Container to
// create it on an API server.
func Pod(ns, name string) *PodWrapper {
	return &PodWrapper{corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}}
}

// Obj returns a copy of the pod built so far.
func (w *PodWrapper) Obj() *corev1.Pod { return w.DeepCopy() }

// Label adds a label (for one, agentsv1alpha1.ClassLabel or SessionLabel).
func (w *PodWrapper) Label(key, value string) *PodWrapper {
	if w.ObjectMeta.Labels == nil {
		w.ObjectMeta.Labels = map[string]string{}
	}
	w.ObjectMeta.Labels[key] = value
	return w
}

// Labels adds every one of labels; none leaves the pod's labels as they are.
func (w *PodWrapper) Labels(labels map[string]string) *PodWrapper {
	if len(labels) == 0 {
		return w
	}
	if w.ObjectMeta.Labels == nil {
		w.ObjectMeta.Labels = map[string]string{}
	}
	maps.Copy(w.ObjectMeta.Labels, labels)
	return w
}

// Annotation adds an annotation.
func (w *PodWrapper) Annotation(key, value string) *PodWrapper {
	if w.Annotations == nil {
		w.Annotations = map[string]string{}
	}
	w.Annotations[key] = value
	return w
}

// OwnedBy makes owner the pod's controller, as hyperpool does with the class of a warm
// pod and the session of a bound one. owner's kind must be client-go's or hyperpool's.
func (w *PodWrapper) OwnedBy(owner client.Object) *PodWrapper {
	gvk, err := apiutil.GVKForObject(owner, scheme)
	if err != nil {
		panic(fmt.Sprintf("builders: the owner of pod %s: %v", w.Name, err))
	}
	w.OwnerReferences = append(w.OwnerReferences, *metav1.NewControllerRef(owner, gvk))
	return w
}

// Node sets spec.nodeName: the pod is scheduled there.
func (w *PodWrapper) Node(name string) *PodWrapper {
	w.Spec.NodeName = name
	return w
}

// Ready gives the pod a Ready condition that is True.
func (w *PodWrapper) Ready() *PodWrapper {
	w.Status.Conditions = append(w.Status.Conditions, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue})
	return w
}

// Terminating sets metadata.deletionTimestamp: the pod was deleted at, and is going.
func (w *PodWrapper) Terminating(at time.Time) *PodWrapper {
	w.DeletionTimestamp = &metav1.Time{Time: at}
	return w
}

// Windows sets spec.os to Windows.
func (w *PodWrapper) Windows() *PodWrapper {
	w.Spec.OS = &corev1.PodOS{Name: corev1.Windows}
	return w
}

// Container adds a container.
func (w *PodWrapper) Container(name, image string) *PodWrapper {
	w.Spec.Containers = append(w.Spec.Containers, corev1.Container{Name: name, Image: image})
	return w
}

// NoServiceAccountToken sets spec.automountServiceAccountToken to false.
func (w *PodWrapper) NoServiceAccountToken() *PodWrapper {
	w.Spec.AutomountServiceAccountToken = ptr.To(false)
	return w
}
