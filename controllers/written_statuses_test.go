package controllers

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/expectations"
	"github.com/hyperpool/hyperpool/test/builders"
)

func TestWrittenStatuses(t *testing.T) {
	written := builders.AgentSession("team", "s1", "pool").UID("uid-s1").
		Phase(agentsv1alpha1.SessionExpired).BoundTo("pool-aaaaa", time.Date(2026, 1, 1, 11, 0, 0, 0, time.UTC)).Obj()
	written.Status.EndReason = agentsv1alpha1.ReasonMaxLifetime
	// stale is the cache's view from before the write.
	stale := builders.AgentSession("team", "s1", "pool").UID("uid-s1").
		Phase(agentsv1alpha1.SessionReady).BoundTo("pool-aaaaa", time.Date(2026, 1, 1, 11, 0, 0, 0, time.UTC)).Obj()
	other := builders.AgentSession("team", "s2", "pool").UID("uid-s2").Phase(agentsv1alpha1.SessionReady).Obj()

	// overlaid is one overlay of a cached session, after the fake clock moved on by after.
	type overlaid struct {
		after  time.Duration
		cached *agentsv1alpha1.AgentSession
		want   agentsv1alpha1.SessionPhase
	}
	tests := []struct {
		name     string
		remember bool // s1's status was written
		overlays []overlaid
	}{
		{"nothing written: the cache is used", false, []overlaid{
			{cached: stale, want: agentsv1alpha1.SessionReady},
		}},
		{"a stale cache is overlaid with the written status until it catches up", true, []overlaid{
			{cached: stale, want: agentsv1alpha1.SessionExpired},
			{after: time.Second, cached: stale, want: agentsv1alpha1.SessionExpired},
			{cached: written, want: agentsv1alpha1.SessionExpired}, // caught up: forgotten
			{cached: stale, want: agentsv1alpha1.SessionReady},     // an older view now is the cache's own business
		}},
		{"another session is not overlaid", true, []overlaid{
			{cached: other, want: agentsv1alpha1.SessionReady},
		}},
		{"past expectations.ClaimTTL the cache is trusted again", true, []overlaid{
			{after: expectations.ClaimTTL - time.Millisecond, cached: stale, want: agentsv1alpha1.SessionExpired},
			{after: time.Millisecond, cached: stale, want: agentsv1alpha1.SessionReady},
			{cached: stale, want: agentsv1alpha1.SessionReady},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
			clk := clocktesting.NewFakePassiveClock(now)
			w := newWrittenStatuses(clk)
			if tt.remember {
				w.remember(written.DeepCopy())
			}
			for i, o := range tt.overlays {
				now = now.Add(o.after)
				clk.SetTime(now)
				s := o.cached.DeepCopy()
				w.overlay(s)
				if s.Status.Phase != o.want {
					t.Fatalf("overlay %d of %s (cached %s): phase %s, want %s", i, s.Name, o.cached.Status.Phase, s.Status.Phase, o.want)
				}
			}
		})
	}
}

// The status remembered is a copy, and so is the one overlaid: a reconcile that changes its
// session after the write, or after the overlay, changes neither what was written nor the
// next overlay.
func TestWrittenStatusesKeepTheirOwnCopy(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	w := newWrittenStatuses(clk)
	s := builders.AgentSession("team", "s1", "pool").UID("uid-s1").Phase(agentsv1alpha1.SessionStarting).QuotaReserved().Obj()
	w.remember(s)
	s.Status.Phase, s.Status.Conditions[0].Reason = agentsv1alpha1.SessionFailed, "ChangedAfterTheWrite"

	first := builders.AgentSession("team", "s1", "pool").UID("uid-s1").Obj()
	w.overlay(first)
	first.Status.Phase, first.Status.Conditions[0].Reason = agentsv1alpha1.SessionTerminated, "ChangedAfterTheOverlay"
	second := builders.AgentSession("team", "s1", "pool").UID("uid-s1").Obj()
	w.overlay(second)
	if second.Status.Phase != agentsv1alpha1.SessionStarting || len(second.Status.Conditions) != 1 ||
		second.Status.Conditions[0].Reason != agentsv1alpha1.ReasonQuotaReserved {
		t.Errorf("overlaid status %+v, want the one written: Starting, QuotaReserved", second.Status)
	}
}

// Written statuses of sessions deleted before the cache caught up are never overlaid again:
// they are dropped as others are written, once past expectations.ClaimTTL.
func TestWrittenStatusesDropExpiredEntries(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakePassiveClock(now)
	w := newWrittenStatuses(clk)
	for _, uid := range []types.UID{"gone-1", "gone-2"} {
		w.remember(builders.AgentSession("team", string(uid), "pool").UID(uid).Phase(agentsv1alpha1.SessionReady).Obj())
	}
	clk.SetTime(now.Add(expectations.ClaimTTL))
	w.remember(builders.AgentSession("team", "live", "pool").UID("live").Phase(agentsv1alpha1.SessionReady).Obj())
	if n := len(w.statuses); n != 1 {
		t.Errorf("%d written statuses held after the TTL, want 1 (the two expired ones dropped)", n)
	}
}
