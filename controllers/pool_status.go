package controllers

import (
	"context"
	"fmt"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
)

// writeStatus computes the pool's status and writes it once, only when it changed.
func (r *AgentSandboxReconciler) writeStatus(ctx context.Context, st *poolStep) error {
	sb := st.sb
	status := sb.Status.DeepCopy()
	status.ObservedGeneration = sb.Generation
	status.TemplateHash = templateHash(sb)
	status.Selector = fmt.Sprintf("%s=%s,!%s", agentsv1alpha1.ClassLabel, sb.Name, agentsv1alpha1.SessionLabel)

	counts := r.countWarm(st) // after this reconcile's deletions, so not always replenishWait's
	ready := counts.ready
	status.Replicas = int32(counts.warm)
	status.ReadyReplicas = int32(ready)
	status.ActiveSessions = int32(counts.bound)
	total := counts.footprint
	status.Footprint = &agentsv1alpha1.PoolFootprint{PerSandbox: classFootprint(sb), Total: total}
	readyWarmPods.WithLabelValues(sb.Namespace, sb.Name).Set(float64(ready))
	vmMemoryBytes.WithLabelValues(sb.Namespace, sb.Name).Set(float64(total.Memory.Value()))

	want := ptr.Deref(sb.Spec.Replicas, 1)
	setPoolConditions(status, st, int32(ready), want)
	setAutoscalingStatus(status, st)
	idleVMMemory.set(client.ObjectKeyFromObject(sb), float64(counts.warmMemory))
	announceVMSize := r.setVMSizeCondition(sb, status)
	announceRuntime := r.setRuntimeReadyCondition(sb, st.runtimeClass, status)

	if sameStatus(&sb.Status, status) {
		return nil
	}
	key := client.ObjectKeyFromObject(sb)
	if onlyCountsDiffer(&sb.Status, status) {
		if last, ok := r.lastStatusWrite.Load(key); ok {
			if wait := poolCountsInterval - r.clock.Since(last.(time.Time)); wait > 0 {
				st.requeueIn(wait) // written then, with the counts of that moment
				return nil
			}
		}
	}
	patch := client.MergeFrom(sb.DeepCopy())
	sb.Status = *status
	if err := r.Status().Patch(ctx, sb, patch); err != nil {
		return client.IgnoreNotFound(err)
	}
	r.lastStatusWrite.Store(key, r.clock.Now())
	announceVMSize()
	announceRuntime()
	return nil
}

// onlyCountsDiffer says whether two statuses differ only in counts and condition messages:
// same generation, template, selector, and conditions of the same status and reason, but
// for the Ready condition moving between PoolReady and PoolFilling (countsOnlyReady).
func onlyCountsDiffer(a, b *agentsv1alpha1.AgentSandboxStatus) bool {
	return a.ObservedGeneration == b.ObservedGeneration && a.Selector == b.Selector &&
		a.TemplateHash == b.TemplateHash &&
		slices.EqualFunc(a.Conditions, b.Conditions, func(x, y metav1.Condition) bool {
			if x.Type != y.Type || x.ObservedGeneration != y.ObservedGeneration {
				return false
			}
			if x.Status == y.Status && x.Reason == y.Reason {
				return true
			}
			return x.Type == agentsv1alpha1.SandboxReady && countsOnlyReady(x) && countsOnlyReady(y)
		})
}

// countsOnlyReady: a Ready condition that says no more than the counts do. Every take
// turns a full pool's Ready from PoolReady to PoolFilling and its refill turns it back, so
// writing those flips at once cost about two status writes per bind (docs/performance.md,
// "Bind cost at its floor"); they are written with the counts, at most once per
// poolCountsInterval. Any other reason (PodsNotReady, QuotaLimited, RuntimeClassNotFound...)
// is a state a user must see at once.
func countsOnlyReady(c metav1.Condition) bool {
	return (c.Status == metav1.ConditionTrue && c.Reason == agentsv1alpha1.ReasonPoolReady) ||
		(c.Status == metav1.ConditionFalse && c.Reason == agentsv1alpha1.ReasonPoolFilling)
}

func setPoolConditions(status *agentsv1alpha1.AgentSandboxStatus, st *poolStep, ready, want int32) {
	gen := st.sb.Generation
	degraded := metav1.Condition{Type: agentsv1alpha1.SandboxDegraded, Status: metav1.ConditionFalse,
		Reason: agentsv1alpha1.ReasonAsExpected, Message: "nothing keeps the pool from its target", ObservedGeneration: gen}
	switch {
	case st.blocker != nil:
		degraded.Status, degraded.Reason, degraded.Message = metav1.ConditionTrue, st.blocker.Reason, st.blocker.Message
	case st.quotaBlocker != nil:
		degraded.Status, degraded.Reason = metav1.ConditionTrue, agentsv1alpha1.ReasonQuotaLimited
		degraded.Message = st.quotaBlocker.Message + "; raise the quota or lower spec.replicas"
	case st.forbidden != "":
		degraded.Status, degraded.Reason = metav1.ConditionTrue, agentsv1alpha1.ReasonPodCreateForbidden
		degraded.Message = fmt.Sprintf("the API server refused a warm pod: %s; raise the limit that refuses it (a ResourceQuota, a policy) or lower spec.replicas", st.forbidden)
	case st.notReady > 0:
		degraded.Status, degraded.Reason = metav1.ConditionTrue, agentsv1alpha1.ReasonPodsNotReady
		degraded.Message = fmt.Sprintf("%d warm pod(s) did not become Ready in time and were replaced; check the image (pull time, Windows build %d) and the pods' events",
			st.notReady, st.sb.Spec.Windows.ImageBuild)
	default:
		if old := meta.FindStatusCondition(status.Conditions, agentsv1alpha1.SandboxDegraded); old != nil &&
			old.Reason == agentsv1alpha1.ReasonPodsNotReady && ready < want {
			degraded = *old // keep saying so until the pool recovers
		}
	}
	meta.SetStatusCondition(&status.Conditions, degraded)

	readyCond := metav1.Condition{Type: agentsv1alpha1.SandboxReady, Status: metav1.ConditionTrue,
		Reason: agentsv1alpha1.ReasonPoolReady, Message: fmt.Sprintf("%d of %d warm sandboxes Ready", ready, want), ObservedGeneration: gen}
	if ready < want {
		readyCond.Status, readyCond.Reason = metav1.ConditionFalse, agentsv1alpha1.ReasonPoolFilling
		if degraded.Status == metav1.ConditionTrue {
			readyCond.Reason = degraded.Reason
		}
		if st.replenishHeld {
			readyCond.Message += fmt.Sprintf("; taken sandboxes are replaced once sessions have taken none for %s (spec.replenish.quietPeriod)",
				st.sb.Spec.Replenish.QuietPeriod.Duration)
		}
	}
	meta.SetStatusCondition(&status.Conditions, readyCond)
}
