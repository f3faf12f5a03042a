package controllers

// Creating and deleting a pool's warm pods.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

// createWarmPods creates up to n warm pods, as many as the namespace's quota allows, in
// slow-start batches (1, 2, 4, ...) as the ReplicaSet controller does: when the API server
// refuses the first (a ResourceQuota, a policy), the pool does not fire hundreds of doomed
// requests.
func (r *AgentSandboxReconciler) createWarmPods(ctx context.Context, st *poolStep, n int) error {
	if terminating, err := namespaceTerminating(ctx, r.Client, st.sb.Namespace); err != nil || terminating {
		return err // a namespace being deleted refuses every pod: do not ask
	}
	grants, quotaBlk, err := r.quota.reservePods(ctx, st.sb.Namespace, classFootprint(st.sb), n, true)
	if err != nil {
		return err
	}
	st.quotaBlocker = quotaBlk
	key := client.ObjectKeyFromObject(st.sb)
	created := 0
	for batch := 1; created < len(grants); batch *= 2 {
		size := min(batch, len(grants)-created)
		errs := make([]error, size)
		var wg sync.WaitGroup
		for i := range size {
			grant := grants[created+i]
			wg.Go(func() { errs[i] = r.createWarmPod(ctx, st, key, grant) })
		}
		wg.Wait()
		created += size
		if err := errors.Join(errs...); err != nil {
			for _, g := range grants[created:] {
				g.release()
			}
			if slices.ContainsFunc(errs, func(e error) bool { return errors.Is(e, errNamespaceTerminating) }) {
				// The namespace is going away, and the pool with it: no more creations,
				// no retry. Its deletion events end the pool's reconciles.
				return nil
			}
			return err
		}
	}
	return nil
}

// namespaceTerminating says, from the cache, whether namespace ns is being deleted.
func namespaceTerminating(ctx context.Context, c client.Reader, ns string) (bool, error) {
	obj := &metav1.PartialObjectMetadata{}
	obj.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	if err := c.Get(ctx, types.NamespacedName{Name: ns}, obj); err != nil {
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	}
	return !obj.DeletionTimestamp.IsZero(), nil
}

// errNamespaceTerminating stops a round of creations in a namespace being deleted: every
// further pod would be refused.
var errNamespaceTerminating = errors.New("namespace is terminating")

func (r *AgentSandboxReconciler) createWarmPod(ctx context.Context, st *poolStep, key types.NamespacedName, grant *podGrant) error {
	pod := st.recipe.build()
	if err := ctrl.SetControllerReference(st.sb, pod, r.Scheme()); err != nil {
		grant.release()
		return err
	}
	if err := r.Create(ctx, pod); err != nil {
		grant.release()
		if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
			return errNamespaceTerminating
		}
		if apierrors.IsForbidden(err) || apierrors.IsInvalid(err) {
			st.forbidden = err.Error()
		}
		return fmt.Errorf("creating a warm pod for AgentSandbox %s: %w", st.sb.Name, err)
	}
	grant.confirm(pod.Name)
	r.expectations.Created(key, pod.Name)
	r.demand.podCreated(st.sb, pod.Name)
	podCreations.WithLabelValues(st.sb.Namespace, st.sb.Name, string(agentsv1alpha1.StartWarm)).Inc()
	return nil
}

// deleteWarmPod deletes a warm pod unless a session bound it meanwhile: the resourceVersion
// precondition makes the delete lose any race with a bind.
func (r *AgentSandboxReconciler) deleteWarmPod(ctx context.Context, st *poolStep, p *corev1.Pod) error {
	err := r.Delete(ctx, p, client.Preconditions{UID: &p.UID, ResourceVersion: &p.ResourceVersion})
	switch {
	case err == nil:
		r.expectations.Deleted(client.ObjectKeyFromObject(st.sb), p.Name)
		st.pendingDeletions[p.Name] = true
		return nil
	case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		return nil // gone, or changed (bound) since the cache saw it: nothing to do
	default:
		return fmt.Errorf("deleting warm pod %s: %w", p.Name, err)
	}
}

func (r *AgentSandboxReconciler) forget(key types.NamespacedName) {
	r.expectations.Forget(key)
	r.streakMu.Lock()
	delete(r.notReadyStreak, key)
	r.streakMu.Unlock()
	r.lastStatusWrite.Delete(key)
	r.runtimeAnnounced.Delete(key)
	r.takes.forget(key)
	r.forgetPoolMeasures(key)
	forgetSandboxSeries(key)
}
