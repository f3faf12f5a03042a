package controllers

// Deadlines against delete options: a sandbox pod's VM runs until its pod is gone, and a
// delete may ask for any grace period (a tenant with `edit` asked for a year). The pool
// holds every terminating pod of its class to the class's grace period, and while its pods
// shut down it starts no more than one target's worth of replacements.

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

// reasonGracePeriodShortened is the reason of the Warning event on a sandbox pod whose
// delete asked for more grace than its class gives.
const reasonGracePeriodShortened = "GracePeriodShortened"

// classGraceSeconds is the grace period the class gives its pods: its template's
// terminationGracePeriodSeconds, or the API's default, capped as the CRD caps it.
func classGraceSeconds(sb *agentsv1alpha1.AgentSandbox) int64 {
	return sb.Spec.EffectiveTerminationGracePeriodSeconds()
}

// graceAllowed is the longest deletion grace period a pod of class sb may have: the
// class's, or the pod's own when it is shorter (the class may have raised it since the pod
// was made; the pod's own is what the manager's delete would give it).
func graceAllowed(sb *agentsv1alpha1.AgentSandbox, pod *corev1.Pod) int64 {
	allowed := classGraceSeconds(sb)
	if own := pod.Spec.TerminationGracePeriodSeconds; own != nil && *own >= 0 {
		allowed = min(allowed, *own)
	}
	return allowed
}

// holdGracePeriods deletes again, with the class's grace period, every terminating pod of
// the class whose deletion asked for a longer one. The API server accepts a shorter grace on
// a pod already being deleted, and moves its deletion deadline to the first delete's time
// plus the shorter grace; a longer one it would keep, and with it the VM, the quota's
// memory and the pool's surge, for as long as the deleter asked.
func (r *AgentSandboxReconciler) holdGracePeriods(ctx context.Context, st *poolStep) error {
	if !st.view.GraceExceeded {
		return nil // the book saw no terminating pod that asked for more: nothing to list
	}
	pods, err := r.list(ctx, st)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range pods.terminating {
		allowed := graceAllowed(st.sb, p)
		asked := p.DeletionGracePeriodSeconds
		if asked == nil || *asked <= allowed {
			continue
		}
		if err := r.Delete(ctx, p, client.GracePeriodSeconds(allowed), client.Preconditions{UID: &p.UID}); err != nil {
			if !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				errs = append(errs, fmt.Errorf("shortening the grace period of terminating pod %s to %ds: %w", p.Name, allowed, err))
			}
			continue
		}
		msg := fmt.Sprintf("sandbox pod %s was deleted with a grace period of %ds; AgentSandbox %s gives its pods %ds (spec.template.spec.terminationGracePeriodSeconds), so it was deleted again with %ds",
			p.Name, *asked, st.sb.Name, allowed, allowed)
		log.FromContext(ctx).Info("shortened a sandbox pod's grace period to its class's", "pod", p.Name, "askedSeconds", *asked, "allowedSeconds", allowed)
		r.recorder.Eventf(p, st.sb, corev1.EventTypeWarning, reasonGracePeriodShortened, "Delete", "%s", msg)
	}
	return errors.Join(errs...)
}

// shutdownSurgeLeft is how many warm pods the pool may create now without running more than
// want VMs of unbound pods that are shutting down beside its target: the terminating ones,
// and those it just deleted that the cache still shows. Replacing at once keeps a pool full
// through a roll-out or a normal delete; the bound keeps a tenant who deletes warm pods over
// and over (each VM lives out its grace period) from making the pool start VMs without end.
// A namespace with a memory or cpu quota is bounded by it as well: terminating pods count
// there until they are gone.
func shutdownSurgeLeft(st *poolStep, have, want int) int {
	shuttingDown := len(st.pendingDeletions) + st.view.UnboundTerminating
	return max(0, 2*want-have-shuttingDown)
}
