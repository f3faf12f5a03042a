package controllers

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/builders"
)

// claimStep is one call on a claimTracker, after the fake clock moved on by after.
type claimStep struct {
	after time.Duration
	call  string // for the failure message
	do    func(c *claimTracker) (bool, string)
	want  bool
	// wantPod, for boundPod: the pod it names.
	wantPod string
}

func TestClaimTracker(t *testing.T) {
	a := types.NamespacedName{Namespace: "team", Name: "pool-aaaaa"}
	b := types.NamespacedName{Namespace: "team", Name: "pool-bbbbb"}
	take := func(p types.NamespacedName) func(c *claimTracker) (bool, string) {
		return func(c *claimTracker) (bool, string) { return c.tryTakePod(p), "" }
	}
	taken := func(p types.NamespacedName) func(c *claimTracker) (bool, string) {
		return func(c *claimTracker) (bool, string) { return c.podTaken(p), "" }
	}
	release := func(p types.NamespacedName) func(c *claimTracker) (bool, string) {
		return func(c *claimTracker) (bool, string) { c.releasePod(p); return false, "" }
	}
	bind := func(uid types.UID, pod string) func(c *claimTracker) (bool, string) {
		return func(c *claimTracker) (bool, string) { c.sessionBound(uid, pod); return false, "" }
	}
	boundPod := func(uid types.UID) func(c *claimTracker) (bool, string) {
		return func(c *claimTracker) (bool, string) {
			pod, ok := c.boundPod(uid)
			return ok, pod
		}
	}
	forget := func(uid types.UID) func(c *claimTracker) (bool, string) {
		return func(c *claimTracker) (bool, string) { c.forgetSession(uid); return false, "" }
	}
	justUnder := claimTTL - time.Millisecond

	tests := []struct {
		name  string
		steps []claimStep
	}{
		{"a warm pod goes to the first worker only", []claimStep{
			{call: "take a", do: take(a), want: true},
			{call: "a taken", do: taken(a), want: true},
			{call: "take a again", do: take(a), want: false},
			{call: "take b", do: take(b), want: true},
		}},
		{"a pod claim holds until claimTTL, then the cache is trusted again", []claimStep{
			{call: "take a", do: take(a), want: true},
			{after: justUnder, call: "a taken just under the TTL", do: taken(a), want: true},
			{call: "take a just under the TTL", do: take(a), want: false},
			{after: time.Millisecond, call: "a taken at the TTL", do: taken(a), want: false},
			{call: "take a at the TTL", do: take(a), want: true},
		}},
		{"a released claim frees the pod at once", []claimStep{
			{call: "take a", do: take(a), want: true},
			{call: "release a", do: release(a)},
			{call: "a taken", do: taken(a), want: false},
			{call: "take a", do: take(a), want: true},
		}},
		{"no claim: nothing taken", []claimStep{
			{call: "a taken", do: taken(a), want: false},
			{call: "release a (never taken)", do: release(a)},
			{call: "take a", do: take(a), want: true},
		}},
		{"a bound session names its pod until claimTTL", []claimStep{
			{call: "bound pod of s1 (none)", do: boundPod("s1"), want: false},
			{call: "bind s1", do: bind("s1", "pool-aaaaa")},
			{after: justUnder, call: "bound pod of s1 just under the TTL", do: boundPod("s1"), want: true, wantPod: "pool-aaaaa"},
			{call: "bound pod of s2", do: boundPod("s2"), want: false},
			{after: time.Millisecond, call: "bound pod of s1 at the TTL", do: boundPod("s1"), want: false},
		}},
		{"a session is forgotten once the cache shows its pod", []claimStep{
			{call: "bind s1", do: bind("s1", "pool-aaaaa")},
			{call: "forget s1", do: forget("s1")},
			{call: "bound pod of s1", do: boundPod("s1"), want: false},
		}},
		{"a session bound again names its new pod, for a full TTL", []claimStep{
			{call: "bind s1", do: bind("s1", "pool-aaaaa")},
			{after: justUnder, call: "bind s1 to b", do: bind("s1", "pool-bbbbb")},
			{after: justUnder, call: "bound pod of s1", do: boundPod("s1"), want: true, wantPod: "pool-bbbbb"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
			clk := clocktesting.NewFakePassiveClock(now)
			c := newClaimTracker(clk)
			for i, st := range tt.steps {
				now = now.Add(st.after)
				clk.SetTime(now)
				got, pod := st.do(c)
				if got != st.want || pod != st.wantPod {
					t.Fatalf("step %d, %s: got %v %q, want %v %q", i, st.call, got, pod, st.want, st.wantPod)
				}
			}
		})
	}
}

// Expired pod claims are dropped as new ones are taken, so the map holds about claimTTL's
// worth of binds, not every pod ever bound.
func TestClaimTrackerDropsExpiredPodClaims(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakePassiveClock(now)
	c := newClaimTracker(clk)
	for _, name := range []string{"pool-a", "pool-b", "pool-c"} {
		if !c.tryTakePod(types.NamespacedName{Namespace: "team", Name: name}) {
			t.Fatalf("take %s: refused", name)
		}
	}
	clk.SetTime(now.Add(claimTTL))
	if !c.tryTakePod(types.NamespacedName{Namespace: "team", Name: "pool-d"}) {
		t.Fatal("take pool-d: refused")
	}
	if n := len(c.pods); n != 1 {
		t.Errorf("%d pod claims held after the TTL, want 1 (the three expired ones dropped)", n)
	}
}

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
		{"past claimTTL the cache is trusted again", true, []overlaid{
			{after: claimTTL - time.Millisecond, cached: stale, want: agentsv1alpha1.SessionExpired},
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
// they are dropped as others are written, once past claimTTL.
func TestWrittenStatusesDropExpiredEntries(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakePassiveClock(now)
	w := newWrittenStatuses(clk)
	for _, uid := range []types.UID{"gone-1", "gone-2"} {
		w.remember(builders.AgentSession("team", string(uid), "pool").UID(uid).Phase(agentsv1alpha1.SessionReady).Obj())
	}
	clk.SetTime(now.Add(claimTTL))
	w.remember(builders.AgentSession("team", "live", "pool").UID("live").Phase(agentsv1alpha1.SessionReady).Obj())
	if n := len(w.statuses); n != 1 {
		t.Errorf("%d written statuses held after the TTL, want 1 (the two expired ones dropped)", n)
	}
}
