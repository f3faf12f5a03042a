package controllers

// The autoscaling step of a pool reconcile: measure, decide, apply, report. The model
// itself is internal/autoscale; this file feeds it and writes what it decides.

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/autoscale"
	"github.com/hyperpool/hyperpool/internal/poolbook"
)

// The autoscaler's defaults (Config overrides the first two; the benchmark compresses
// them with time).
const (
	// defaultAutoscaleRateWindow is the bind rate's fast time constant: after a step in
	// demand the estimate is 63% of the way there in this time.
	defaultAutoscaleRateWindow = time.Minute
	// bindRateSlowFactor: the slow average's time constant is this many fast ones (20
	// minutes by default), the memory that bridges lulls between bursts.
	bindRateSlowFactor = 20
	// defaultAutoscaleRefillTime is the refill time assumed before any warm pod of the
	// class was measured: a servercore Hyper-V pod boots in 5-20 s (docs/design.md).
	defaultAutoscaleRefillTime = 20 * time.Second
	// defaultWarmHitTarget and defaultScaleDownDelay are the CRD's defaults, for objects
	// stored without them.
	defaultWarmHitTarget  = 0.99
	defaultScaleDownDelay = 5 * time.Minute
)

// +kubebuilder:rbac:groups=agents.hyperpool.io,resources=agentsandboxes,verbs=patch

func (c Config) autoscaleRateWindow() time.Duration {
	if c.AutoscaleRateWindow > 0 {
		return c.AutoscaleRateWindow
	}
	return defaultAutoscaleRateWindow
}

func (c Config) autoscaleRefillTime() time.Duration {
	if c.AutoscaleDefaultRefillTime > 0 {
		return c.AutoscaleDefaultRefillTime
	}
	return defaultAutoscaleRefillTime
}

// autoscaleResult is what the step decided, for the pool's status and conditions.
type autoscaleResult struct {
	status     agentsv1alpha1.AutoscalingStatus
	overridden *int32 // the value someone else wrote to spec.replicas
	limited    *metav1.Condition
}

// autoscale sizes a pool with spec.autoscaling: it measures λ and T, asks the model for
// the need, holds it for scaleDownDelay, bounds it, writes it to spec.replicas and sets
// the in-memory target the rest of the reconcile follows. A pool without it loses its
// autoscaling state.
func (r *AgentSandboxReconciler) autoscale(ctx context.Context, st *poolStep) error {
	sb := st.sb
	key := client.ObjectKeyFromObject(sb)
	spec := sb.Spec.Autoscaling
	if spec == nil {
		r.demand.forget(key)
		forgetAutoscaleSeries(key)
		return nil
	}
	now := r.clock.Now()
	r.demand.observeRefills(key, func(name string) (poolbook.Pod, bool) {
		return r.book.Get(types.NamespacedName{Namespace: sb.Namespace, Name: name})
	}, sb.UID)
	queued, err := r.waitingSessions(ctx, sb)
	if err != nil {
		return err
	}
	quotaLeft, err := r.warmQuotaLeft(ctx, sb)
	if err != nil {
		return err
	}
	bounds, schedule, scheduleProblem, nextChange := scheduleBounds(spec, now)
	bounds.Quota = quotaLeft

	r.demand.mu.Lock()
	p := r.demand.pool(key)
	rate := p.rate.Rate(now)
	refill, measured := p.refills.Percentile(refillPercentile)
	if !measured {
		refill = r.config.autoscaleRefillTime()
	}
	samples := p.refills.Len()
	target := warmHitTarget(spec)
	delay := ptr.Deref(spec.ScaleDownDelay, agentsv1alpha1.Duration{Duration: defaultScaleDownDelay}).Duration
	expected := p.rate.ExpectedBinds(now, delay)
	need := autoscale.Need(rate, refill, target, expected) + queued
	if p.stabilizer.Empty() {
		// A new leader (or a restart) knows no demand yet: it holds the size it found for
		// scaleDownDelay while the bind rate climbs back, rather than shrinking at once.
		p.stabilizer.Recommend(now, int(ptr.Deref(sb.Spec.Replicas, 0)), delay)
	}
	held := p.stabilizer.Recommend(now, need, delay)
	nextDrop := p.stabilizer.NextDrop(delay)
	recommended, limit := autoscale.Clamp(held, bounds)
	applied, appliedGen := p.applied, p.appliedGeneration
	r.demand.mu.Unlock()

	res := &autoscaleResult{status: agentsv1alpha1.AutoscalingStatus{
		BindRate:      bindRateQuantity(rate),
		RefillTime:    metav1.Duration{Duration: roundDuration(refill)},
		RefillSamples: int32(samples), QueuedSessions: int32(queued),
		NeedReplicas: int32(need), RecommendedReplicas: int32(recommended),
		Limit: agentsv1alpha1.AutoscalingLimit(limit), Schedule: schedule,
	}}
	res.limited = limitedCondition(sb, res.status, held, modelReason(rate, expected, delay), scheduleProblem)
	st.autoscaling = res

	// Who wrote spec.replicas: the last value this manager wrote (from memory, or from the
	// status after a restart). A cache older than that write says nothing yet.
	if applied == nil && sb.Status.Autoscaling != nil {
		applied = sb.Status.Autoscaling.AppliedReplicas
	}
	current := ptr.Deref(sb.Spec.Replicas, 1)
	stale := appliedGen > sb.Generation
	if applied != nil && !stale && current != *applied {
		res.overridden = ptr.To(current)
	}
	res.status.AppliedReplicas = applied
	// Write when the recommendation moved. Over someone else's value, only when the
	// recommendation changed since the last reconcile: the other writer is reported, not
	// fought on every reconcile.
	previous := int32(-1)
	if sb.Status.Autoscaling != nil {
		previous = sb.Status.Autoscaling.RecommendedReplicas
	}
	write := !stale && current != int32(recommended) && (res.overridden == nil || previous != int32(recommended))
	if write {
		if err := r.writeReplicas(ctx, sb, int32(recommended)); err != nil {
			return err
		}
		res.overridden = nil
		res.status.AppliedReplicas = ptr.To(int32(recommended))
	}
	// The rest of this reconcile sizes the pool to the recommendation, whatever spec.replicas
	// says or the cache shows of it.
	sb.Spec.Replicas = ptr.To(int32(recommended))

	autoscaleRecommended.WithLabelValues(sb.Namespace, sb.Name).Set(float64(recommended))
	autoscaleBindRate.WithLabelValues(sb.Namespace, sb.Name).Set(rate)
	autoscaleRefillSeconds.WithLabelValues(sb.Namespace, sb.Name).Set(refill.Seconds())

	// Look again while the estimate still counts (it decays between binds), when a held
	// need may drop, and when a schedule opens or closes. A rate too small to need a
	// sandbox stops the polling: the next bind wakes the pool.
	if need > 0 {
		st.requeueIn(r.config.autoscaleRateWindow() / 6)
	}
	for _, t := range []time.Time{nextDrop, nextChange} {
		if !t.IsZero() {
			st.requeueIn(max(t.Sub(now), time.Millisecond))
		}
	}
	return nil
}

// writeReplicas sets spec.replicas with a merge patch that carries the resourceVersion the
// cache showed, so a concurrent write by someone else wins and is seen (then reported) by
// the next reconcile rather than overwritten blindly.
func (r *AgentSandboxReconciler) writeReplicas(ctx context.Context, sb *agentsv1alpha1.AgentSandbox, n int32) error {
	obj := sb.DeepCopy()
	patch := client.MergeFromWithOptions(sb.DeepCopy(), client.MergeFromWithOptimisticLock{})
	obj.Spec.Replicas = &n
	if err := r.Patch(ctx, obj, patch); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return nil // the update event brings the pool back with the new object
		}
		return fmt.Errorf("writing spec.replicas=%d of autoscaled AgentSandbox %s: %w", n, sb.Name, err)
	}
	r.demand.mu.Lock()
	p := r.demand.pool(client.ObjectKeyFromObject(sb))
	p.applied, p.appliedGeneration = &n, obj.Generation
	r.demand.mu.Unlock()
	return nil
}

// waitingSessions counts the class's sessions that wait for a sandbox and could bind one
// now: unbound ones that the namespace's quota admitted (or that no sessions limit holds
// back), and of those not admitted yet only the head of the quota's queue that its free
// slots would admit. A session queued behind a full quota adds nothing: a warm pod made for
// it idles until a slot frees (with sessions: 1 and maxQueued: 40, 41 sessions grew a pool
// to 41 warm pods), and when one frees the session behind it binds a warm pod the pool
// already holds. A session queued by memory, cpu or a ResourceQuota adds nothing either: a
// warm pod needs the same room that its cold start is waiting for.
func (r *AgentSandboxReconciler) waitingSessions(ctx context.Context, sb *agentsv1alpha1.AgentSandbox) (int, error) {
	head, limited, err := r.quota.admissibleHead(ctx, sb.Namespace)
	if err != nil {
		return 0, err
	}
	admissible := make(map[string]bool, len(head))
	for _, key := range head {
		admissible[key.Name] = true
	}
	waiting := &agentsv1alpha1.AgentSessionList{}
	if err := r.List(ctx, waiting, client.InNamespace(sb.Namespace), client.MatchingFields{sessionWaitingIndex: sb.Name}, client.UnsafeDisableDeepCopy); err != nil {
		return 0, err
	}
	n := 0
	for i := range waiting.Items {
		if s := &waiting.Items[i]; !limited || sessionAdmitted(s) || admissible[s.Name] {
			n++
		}
	}
	if !limited || len(head) == 0 {
		return n, nil
	}
	queued := &agentsv1alpha1.AgentSessionList{}
	if err := r.List(ctx, queued, client.InNamespace(sb.Namespace), client.MatchingFields{sessionQueuedIndex: "true"}, client.UnsafeDisableDeepCopy); err != nil {
		return 0, err
	}
	for i := range queued.Items {
		if s := &queued.Items[i]; s.Spec.SandboxName == sb.Name && admissible[s.Name] {
			n++
		}
	}
	return n, nil
}

// warmQuotaLeft is how many warm sandboxes the namespace's warmSandboxes quota leaves this
// pool once the other pools' warm pods are counted, or -1 without such a limit.
func (r *AgentSandboxReconciler) warmQuotaLeft(ctx context.Context, sb *agentsv1alpha1.AgentSandbox) (int, error) {
	over, err := r.quota.excessWarm(ctx, sb.Namespace)
	if err != nil || over.quota == nil || over.quota.hard.WarmSandboxes == nil {
		return -1, err
	}
	others := 0
	for pool, n := range over.byPool {
		if pool != sb.Name {
			others += n
		}
	}
	return max(0, int(*over.quota.hard.WarmSandboxes)-others), nil
}

// scheduleBounds are the pool's limits at now: the first open schedule's, over the pool's.
// It also returns that schedule's name, a problem with any schedule (which is then
// skipped), and the next time a schedule opens or closes.
func scheduleBounds(spec *agentsv1alpha1.AutoscalingSpec, now time.Time) (b autoscale.Bounds, name, problem string, next time.Time) {
	b = autoscale.Bounds{Min: int(ptr.Deref(spec.MinReplicas, 0)), Max: int(spec.MaxReplicas), Quota: -1}
	for i, s := range spec.Schedules {
		w, err := autoscale.ParseWindow(s.Start, s.End, s.TimeZone)
		if err != nil {
			if problem == "" {
				problem = fmt.Sprintf("spec.autoscaling.schedules[%d] (%s): %v; the schedule is ignored until it is fixed", i, s.Name, err)
			}
			continue
		}
		if c := w.NextChange(now); !c.IsZero() && (next.IsZero() || c.Before(next)) {
			next = c
		}
		if name != "" || !w.Active(now) {
			continue
		}
		name = s.Name
		if s.MinReplicas != nil {
			b.Min, b.MinFromSchedule = int(*s.MinReplicas), true
		}
		if s.MaxReplicas != nil {
			b.Max, b.MaxFromSchedule = int(*s.MaxReplicas), true
		}
	}
	return b, name, problem, next
}

// warmHitTarget reads spec.warmHitTarget (the CRD checks its form; a value stored before
// that falls back to the default).
func warmHitTarget(spec *agentsv1alpha1.AutoscalingSpec) float64 {
	if q, err := strconv.ParseFloat(spec.WarmHitTarget, 64); err == nil && q > 0 && q < 1 {
		return q
	}
	return defaultWarmHitTarget
}

// limitedCondition is the ScalingLimited condition: what holds the recommendation below
// the need, with the numbers and the fix.
func limitedCondition(sb *agentsv1alpha1.AgentSandbox, s agentsv1alpha1.AutoscalingStatus, held int, model, scheduleProblem string) *metav1.Condition {
	c := &metav1.Condition{Type: agentsv1alpha1.SandboxScalingLimited, Status: metav1.ConditionTrue, ObservedGeneration: sb.Generation}
	why := fmt.Sprintf("the model needs %d warm sandboxes (bind rate %s/s × refill time %s at warmHitTarget %s%s, plus %d waiting sessions; %d held for scaleDownDelay)",
		s.NeedReplicas, s.BindRate.String(), s.RefillTime.Duration, sb.Spec.Autoscaling.WarmHitTarget, model, s.QueuedSessions, held)
	switch s.Limit {
	case agentsv1alpha1.AutoscalingLimit(autoscale.LimitMaxReplicas):
		c.Reason = agentsv1alpha1.ReasonMaxReplicasLimited
		c.Message = fmt.Sprintf("%s; spec.autoscaling.maxReplicas caps the pool at %d: raise maxReplicas or lower warmHitTarget", why, s.RecommendedReplicas)
	case agentsv1alpha1.AutoscalingLimit(autoscale.LimitScheduleMaxReplicas):
		c.Reason = agentsv1alpha1.ReasonScheduleLimited
		c.Message = fmt.Sprintf("%s; schedule %s caps the pool at %d while it is open: raise its maxReplicas", why, s.Schedule, s.RecommendedReplicas)
	case agentsv1alpha1.AutoscalingLimit(autoscale.LimitQuota):
		c.Reason = agentsv1alpha1.ReasonQuotaLimited
		c.Message = fmt.Sprintf("%s; the namespace's AgentQuota warmSandboxes leaves this pool %d: raise the quota", why, s.RecommendedReplicas)
	default:
		if scheduleProblem != "" {
			c.Reason, c.Message = agentsv1alpha1.ReasonInvalidSchedule, scheduleProblem
			return c
		}
		c.Status, c.Reason = metav1.ConditionFalse, agentsv1alpha1.ReasonWithinLimits
		c.Message = fmt.Sprintf("%s; recommended %d (limit: %s)", why, s.RecommendedReplicas, s.Limit)
	}
	if scheduleProblem != "" {
		c.Message += "; also " + scheduleProblem
	}
	return c
}

// modelReason says, when the rate is too low to need any sandbox, why: the binds expected
// within scaleDownDelay are under autoscale.ZeroDemandEpsilon. Empty otherwise.
func modelReason(rate, expected float64, delay time.Duration) string {
	if rate <= 0 || expected >= autoscale.ZeroDemandEpsilon {
		return ""
	}
	return fmt.Sprintf(", but %.2g binds expected within scaleDownDelay %s (the rate, discounted by the silence since the last bind) is under %v: none for the rate",
		expected, delay, autoscale.ZeroDemandEpsilon)
}

// setAutoscalingStatus puts the step's result in the pool's status: status.autoscaling and
// the ScalingLimited and ScaleOverridden conditions, or none of them without autoscaling.
func setAutoscalingStatus(status *agentsv1alpha1.AgentSandboxStatus, st *poolStep) {
	res := st.autoscaling
	if res == nil {
		status.Autoscaling = nil
		meta.RemoveStatusCondition(&status.Conditions, agentsv1alpha1.SandboxScalingLimited)
		meta.RemoveStatusCondition(&status.Conditions, agentsv1alpha1.SandboxScaleOverridden)
		return
	}
	status.Autoscaling = res.status.DeepCopy()
	meta.SetStatusCondition(&status.Conditions, *res.limited)
	over := metav1.Condition{Type: agentsv1alpha1.SandboxScaleOverridden, Status: metav1.ConditionFalse,
		Reason: agentsv1alpha1.ReasonAsExpected, Message: "spec.replicas is the autoscaler's", ObservedGeneration: st.sb.Generation}
	if res.overridden != nil {
		over.Status, over.Reason = metav1.ConditionTrue, agentsv1alpha1.ReasonExternalScaleWrite
		over.Message = fmt.Sprintf("spec.replicas was set to %d by another writer (an HPA, KEDA, kubectl scale or an apply that sets replicas) while spec.autoscaling sizes this pool; "+
			"the pool keeps the autoscaler's %d and spec.replicas is written again only when that recommendation changes. Remove the other writer (or replicas from the applied manifest), or remove spec.autoscaling to size the pool by spec.replicas",
			*res.overridden, res.status.RecommendedReplicas)
	}
	meta.SetStatusCondition(&status.Conditions, over)
}

// bindRateQuantity rounds a rate to two significant digits, in thousandths at least: the
// status need not change on every bind.
func bindRateQuantity(rate float64) resource.Quantity {
	if rate <= 0 {
		return resource.MustParse("0")
	}
	milli := rate * 1000
	scale := math.Pow(10, math.Floor(math.Log10(milli))-1)
	return *resource.NewMilliQuantity(int64(math.Max(1, math.Round(milli/scale)*scale)), resource.DecimalSI)
}

// roundDuration rounds to two significant digits, for the same reason.
func roundDuration(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	scale := time.Duration(math.Pow(10, math.Floor(math.Log10(float64(d)))-1))
	return d.Round(max(scale, 1))
}
