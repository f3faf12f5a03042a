package controllers

// Stray pods: labelled for a class that does not control them.

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

// deleteStrayPods deletes the unbound pods labelled for the class that the class does not
// control, as a ReplicaSet deletes (or adopts) pods that match its selector: a pool never
// adopts one, since it cannot know what the pod ran. Each is read again from the API server
// first, and deleted with a UID and resourceVersion precondition, so a pod bound or
// adopted meanwhile is left alone.
func (r *AgentSandboxReconciler) deleteStrayPods(ctx context.Context, st *poolStep) error {
	if st.view.Strays == 0 {
		return nil
	}
	pods, err := r.list(ctx, st)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range pods.stray {
		errs = append(errs, deleteStrayPod(ctx, r.Client, r.apiReader, p.Namespace, p.Name, st.sb))
	}
	return errors.Join(errs...)
}

// deleteStrayPod deletes a pod labelled for a class, not bound to a session, that is
// controlled by neither that class (sb; nil when the class is gone) nor anything else of
// hyperpool that still exists.
func deleteStrayPod(ctx context.Context, c client.Writer, apiReader client.Reader, namespace, name string, sb *agentsv1alpha1.AgentSandbox) error {
	fresh := &corev1.Pod{}
	if err := apiReader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, fresh); err != nil {
		return client.IgnoreNotFound(err)
	}
	_, session := sandboxAndSession(fresh)
	if session != "" || !fresh.DeletionTimestamp.IsZero() || (sb != nil && metav1.IsControlledBy(fresh, sb)) {
		return nil
	}
	// A foreign controller reference does not save it: the label is hyperpool's (only the
	// manager may set it), and a tenant can add such a reference to a pod that lost its own.
	log.FromContext(ctx).Info("deleting a stray sandbox pod: labelled for the class, controlled by nothing that exists", "pod", name)
	err := c.Delete(ctx, fresh, client.Preconditions{UID: &fresh.UID, ResourceVersion: &fresh.ResourceVersion})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// deletePodsOfGoneClass deletes the unbound pods of a deleted class that the garbage
// collector will not: those an orphaning delete of the class left without an owner.
func (r *AgentSandboxReconciler) deletePodsOfGoneClass(ctx context.Context, key types.NamespacedName) error {
	list := &corev1.PodList{}
	if err := r.List(ctx, list, client.InNamespace(key.Namespace), client.MatchingFields{podWarmIndex: key.Name}); err != nil {
		return fmt.Errorf("listing pods of deleted AgentSandbox %s: %w", key.Name, err)
	}
	var errs []error
	for i := range list.Items {
		if p := &list.Items[i]; p.DeletionTimestamp.IsZero() && hyperpoolController(p) == nil {
			errs = append(errs, deleteStrayPod(ctx, r.Client, r.apiReader, p.Namespace, p.Name, nil))
		}
	}
	return errors.Join(errs...)
}
