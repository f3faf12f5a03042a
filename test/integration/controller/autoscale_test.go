//go:build !windows

package controller

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/builders"
)

// waitAutoscaled waits until the class satisfies cond, and returns it.
func waitAutoscaled(t testing.TB, ns, name string, timeout time.Duration, what string, cond func(sb *agentsv1alpha1.AgentSandbox) bool) *agentsv1alpha1.AgentSandbox {
	t.Helper()
	sb := &agentsv1alpha1.AgentSandbox{}
	eventually(t, timeout, func(ctx context.Context) (bool, string) {
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, sb); err != nil {
			return false, err.Error()
		}
		return cond(sb), fmt.Sprintf("class %s: want %s; spec.replicas %v, status.autoscaling %+v, ready %d, conditions %+v",
			name, what, ptr.Deref(sb.Spec.Replicas, -1), sb.Status.Autoscaling, sb.Status.ReadyReplicas, sb.Status.Conditions)
	})
	return sb
}

func specReplicas(sb *agentsv1alpha1.AgentSandbox) int32 { return ptr.Deref(sb.Spec.Replicas, -1) }

func hasCondition(sb *agentsv1alpha1.AgentSandbox, typ string, status metav1.ConditionStatus, reason string) bool {
	c := condition(sb.Status.Conditions, typ)
	return c != nil && c.Status == status && c.Reason == reason
}

// TestAutoscalingFollowsAStepInDemand: with no demand the pool is brought down to its
// minimum; a step up in sessions grows it (and its Ready warm pods) within seconds; once
// the sessions stop, it shrinks after scaleDownDelay and the warm pods follow.
func TestAutoscalingFollowsAStepInDemand(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	create(t, builders.AgentSandbox(ns, "pool").Autoscaling(0, 12, 2*time.Second).Obj())

	waitAutoscaled(t, ns, "pool", waitTimeout, "no demand: spec.replicas 0 written by the autoscaler", func(sb *agentsv1alpha1.AgentSandbox) bool {
		a := sb.Status.Autoscaling
		return specReplicas(sb) == 0 && a != nil && a.RecommendedReplicas == 0 && ptr.Deref(a.AppliedReplicas, -1) == 0 &&
			hasCondition(sb, agentsv1alpha1.SandboxScaleOverridden, metav1.ConditionFalse, agentsv1alpha1.ReasonAsExpected)
	})

	// The step up: ten sessions a second, each living two seconds, until the pool has grown.
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var createErr error
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			s := builders.AgentSession(ns, fmt.Sprintf("s%03d", i), "pool").MaxLifetime(2 * time.Second).TTLAfterFinished(time.Second).Obj()
			if err := k8s.Create(ctx, s); err != nil && ctx.Err() == nil {
				createErr = err
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond): // the arrival rate, not a synchronisation
			}
		}
	})
	peak := waitAutoscaled(t, ns, "pool", 2*waitTimeout, "grown to at least 6 Ready warm sandboxes under demand", func(sb *agentsv1alpha1.AgentSandbox) bool {
		a := sb.Status.Autoscaling
		return a != nil && a.BindRate.MilliValue() > 0 && specReplicas(sb) >= 6 && sb.Status.ReadyReplicas >= 6
	})
	stop()
	wg.Wait()
	if createErr != nil {
		t.Fatalf("creating sessions: %v", createErr)
	}
	if a := peak.Status.Autoscaling; a.NeedReplicas == 0 || a.RefillTime.Duration == 0 {
		t.Errorf("at the peak the status shows no model inputs: %+v", a)
	}

	// The step down: the need falls, is held for scaleDownDelay, then the pool shrinks to at
	// most half its peak and its warm pods follow.
	half := specReplicas(peak) / 2
	waitAutoscaled(t, ns, "pool", 3*waitTimeout, fmt.Sprintf("shrunk to at most %d warm pods", half), func(sb *agentsv1alpha1.AgentSandbox) bool {
		return specReplicas(sb) <= half && sb.Status.Autoscaling.RecommendedReplicas <= half &&
			int32(len(warmPods(t, ns, "pool"))) == specReplicas(sb)
	})
}

// TestAutoscalingReportsAnExternalScaleWrite: a write to /scale on an autoscaled pool, as
// an HPA makes, is reported by the ScaleOverridden condition and left alone (no write back,
// no reconcile loop); the pool keeps the autoscaler's size; the autoscaler writes
// spec.replicas again only when its recommendation changes.
func TestAutoscalingReportsAnExternalScaleWrite(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	create(t, builders.AgentSandbox(ns, "pool").Autoscaling(2, 5, time.Second).Obj())
	sb := waitAutoscaled(t, ns, "pool", waitTimeout, "spec.replicas 2 from the autoscaler", func(sb *agentsv1alpha1.AgentSandbox) bool {
		return specReplicas(sb) == 2 && sb.Status.Autoscaling != nil && ptr.Deref(sb.Status.Autoscaling.AppliedReplicas, -1) == 2
	})
	waitPoolReady(t, ns, "pool", 2, waitTimeout)

	ctx := context.Background()
	scale := &autoscalingv1.Scale{}
	if err := k8s.SubResource("scale").Get(ctx, sb, scale); err != nil {
		t.Fatalf("getting /scale: %v", err)
	}
	scale.Spec.Replicas = 4
	if err := k8s.SubResource("scale").Update(ctx, sb, client.WithSubResourceBody(scale)); err != nil {
		t.Fatalf("writing /scale: %v", err)
	}
	waitAutoscaled(t, ns, "pool", waitTimeout, "ScaleOverridden True (ExternalScaleWrite) naming 4", func(sb *agentsv1alpha1.AgentSandbox) bool {
		c := condition(sb.Status.Conditions, agentsv1alpha1.SandboxScaleOverridden)
		return c != nil && c.Status == metav1.ConditionTrue && c.Reason == agentsv1alpha1.ReasonExternalScaleWrite &&
			strings.Contains(c.Message, "set to 4") && strings.Contains(c.Message, "autoscaler's 2")
	})
	assertSettled(t, "agentsandbox", ns, "pool")
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(sb), sb); err != nil {
		t.Fatal(err)
	}
	if specReplicas(sb) != 4 {
		t.Errorf("spec.replicas = %d after the external write of 4: the autoscaler wrote over it", specReplicas(sb))
	}
	waitPoolReady(t, ns, "pool", 2, waitTimeout) // the pool follows the autoscaler, not the write

	// A new recommendation (minReplicas 3) is written, and the condition clears.
	patch := client.MergeFrom(sb.DeepCopy())
	sb.Spec.Autoscaling.MinReplicas = ptr.To[int32](3)
	if err := k8s.Patch(ctx, sb, patch); err != nil {
		t.Fatal(err)
	}
	waitAutoscaled(t, ns, "pool", waitTimeout, "spec.replicas 3 written, ScaleOverridden False", func(sb *agentsv1alpha1.AgentSandbox) bool {
		return specReplicas(sb) == 3 && hasCondition(sb, agentsv1alpha1.SandboxScaleOverridden, metav1.ConditionFalse, agentsv1alpha1.ReasonAsExpected)
	})
	waitPoolReady(t, ns, "pool", 3, waitTimeout)
}

// TestAutoscalingLimits: the limit that applied is in status, and a capped pool says why.
func TestAutoscalingLimits(t *testing.T) {
	t.Parallel()
	// A window open for the whole test, whatever the time of day: from an hour ago to two
	// hours ahead, in UTC (it may cross midnight).
	now := time.Now().UTC()
	openNow := func(minR, maxR *int32) agentsv1alpha1.AutoscalingSchedule {
		from, to := now.Add(-time.Hour), now.Add(2*time.Hour)
		return agentsv1alpha1.AutoscalingSchedule{Name: "open-now", Start: fmt.Sprintf("0 %d * * *", from.Hour()),
			End: fmt.Sprintf("0 %d * * *", to.Hour()), TimeZone: "UTC", MinReplicas: minR, MaxReplicas: maxR}
	}
	for _, tc := range []struct {
		name       string
		class      *builders.AgentSandboxWrapper
		quota      int32 // warmSandboxes; 0: no AgentQuota
		replicas   int32
		limit      agentsv1alpha1.AutoscalingLimit
		schedule   string
		status     metav1.ConditionStatus
		reason     string
		mentioning string
	}{
		{name: "min", class: builders.AgentSandbox("", "pool").Autoscaling(2, 5, time.Second),
			replicas: 2, limit: "MinReplicas", status: metav1.ConditionFalse, reason: agentsv1alpha1.ReasonWithinLimits},
		{name: "quota", class: builders.AgentSandbox("", "pool").Autoscaling(3, 5, time.Second), quota: 1,
			replicas: 1, limit: "Quota", status: metav1.ConditionTrue, reason: agentsv1alpha1.ReasonQuotaLimited, mentioning: "leaves this pool 1"},
		{name: "schedule max", class: builders.AgentSandbox("", "pool").Autoscaling(3, 5, time.Second).AutoscalingSchedule(openNow(nil, ptr.To[int32](1))),
			replicas: 1, limit: "ScheduleMaxReplicas", schedule: "open-now", status: metav1.ConditionTrue, reason: agentsv1alpha1.ReasonScheduleLimited, mentioning: "schedule open-now caps the pool at 1"},
		{name: "schedule min", class: builders.AgentSandbox("", "pool").Autoscaling(0, 5, time.Second).AutoscalingSchedule(openNow(ptr.To[int32](2), nil)),
			replicas: 2, limit: "ScheduleMinReplicas", schedule: "open-now", status: metav1.ConditionFalse, reason: agentsv1alpha1.ReasonWithinLimits},
		{name: "invalid time zone", class: builders.AgentSandbox("", "pool").Autoscaling(1, 5, time.Second).
			AutoscalingSchedule(agentsv1alpha1.AutoscalingSchedule{Name: "mars", Start: "0 8 * * *", End: "0 18 * * *", TimeZone: "Mars/Olympus", MinReplicas: ptr.To[int32](4)}),
			replicas: 1, limit: "MinReplicas", status: metav1.ConditionTrue, reason: agentsv1alpha1.ReasonInvalidSchedule, mentioning: `timeZone "Mars/Olympus"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := env.CreateNamespace(t)
			if tc.quota > 0 {
				create(t, builders.AgentQuota(ns, "quota").WarmSandboxes(tc.quota).Obj())
			}
			class := tc.class.Obj()
			class.Namespace = ns
			create(t, class)
			waitAutoscaled(t, ns, "pool", waitTimeout, fmt.Sprintf("replicas %d, limit %s, ScalingLimited %s %s", tc.replicas, tc.limit, tc.status, tc.reason),
				func(sb *agentsv1alpha1.AgentSandbox) bool {
					a, c := sb.Status.Autoscaling, condition(sb.Status.Conditions, agentsv1alpha1.SandboxScalingLimited)
					return a != nil && specReplicas(sb) == tc.replicas && a.RecommendedReplicas == tc.replicas && a.Limit == tc.limit &&
						a.Schedule == tc.schedule && c != nil && c.Status == tc.status && c.Reason == tc.reason && strings.Contains(c.Message, tc.mentioning)
				})
			waitPoolReady(t, ns, "pool", tc.replicas, waitTimeout)
		})
	}
}

// TestAutoscalingRejectedAtApply: bad autoscaling input never reaches the manager.
func TestAutoscalingRejectedAtApply(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	for _, tc := range []struct {
		name   string
		change func(*agentsv1alpha1.AutoscalingSpec)
		want   string
	}{
		{"min above max", func(a *agentsv1alpha1.AutoscalingSpec) { a.MinReplicas = ptr.To[int32](6) }, "minReplicas must not be more than"},
		{"hit target of 1", func(a *agentsv1alpha1.AutoscalingSpec) { a.WarmHitTarget = "1" }, "warmHitTarget must be a decimal between 0 and 1"},
		{"hit target as percent", func(a *agentsv1alpha1.AutoscalingSpec) { a.WarmHitTarget = "99" }, "warmHitTarget must be a decimal between 0 and 1"},
		{"scale-down delay over an hour", func(a *agentsv1alpha1.AutoscalingSpec) { a.ScaleDownDelay = builders.Duration(2 * time.Hour) }, "scaleDownDelay must be between 0s and 1h"},
		{"TZ in the cron", func(a *agentsv1alpha1.AutoscalingSpec) {
			a.Schedules = []agentsv1alpha1.AutoscalingSchedule{{Name: "x", Start: "TZ=Europe/Paris 0 8 * * *", End: "0 18 * * *", MinReplicas: ptr.To[int32](1)}}
		}, "without TZ= (use timeZone)"},
		{"window without limits", func(a *agentsv1alpha1.AutoscalingSpec) {
			a.Schedules = []agentsv1alpha1.AutoscalingSchedule{{Name: "x", Start: "0 8 * * *", End: "0 18 * * *"}}
		}, "must set minReplicas, maxReplicas or both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb := builders.AgentSandbox(ns, "bad-"+strings.ReplaceAll(tc.name, " ", "-")).Autoscaling(0, 5, time.Minute).Obj()
			tc.change(sb.Spec.Autoscaling)
			err := k8s.Create(context.Background(), sb)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("create: err = %v, want a rejection mentioning %q", err, tc.want)
			}
		})
	}
}
