package expectations

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
)

// claimStep is one call on a claimTracker, after the fake clock moved on by after.
type claimStep struct {
	after time.Duration
	call  string // for the failure message
	do    func(c *Claims) (bool, string)
	want  bool
	// wantPod, for boundPod: the pod it names.
	wantPod string
}

func TestClaims(t *testing.T) {
	a := types.NamespacedName{Namespace: "team", Name: "pool-aaaaa"}
	b := types.NamespacedName{Namespace: "team", Name: "pool-bbbbb"}
	take := func(p types.NamespacedName) func(c *Claims) (bool, string) {
		return func(c *Claims) (bool, string) { return c.TryTakePod(p), "" }
	}
	taken := func(p types.NamespacedName) func(c *Claims) (bool, string) {
		return func(c *Claims) (bool, string) { return c.PodTaken(p), "" }
	}
	release := func(p types.NamespacedName) func(c *Claims) (bool, string) {
		return func(c *Claims) (bool, string) { c.ReleasePod(p); return false, "" }
	}
	bind := func(uid types.UID, pod string) func(c *Claims) (bool, string) {
		return func(c *Claims) (bool, string) { c.SessionBound(uid, pod); return false, "" }
	}
	boundPod := func(uid types.UID) func(c *Claims) (bool, string) {
		return func(c *Claims) (bool, string) {
			pod, ok := c.BoundPod(uid)
			return ok, pod
		}
	}
	forget := func(uid types.UID) func(c *Claims) (bool, string) {
		return func(c *Claims) (bool, string) { c.ForgetSession(uid); return false, "" }
	}
	justUnder := ClaimTTL - time.Millisecond

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
		{"a pod claim holds until ClaimTTL, then the cache is trusted again", []claimStep{
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
		{"a bound session names its pod until ClaimTTL", []claimStep{
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
			c := NewClaims(clk)
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

// Expired pod claims are dropped as new ones are taken, so the map holds about ClaimTTL's
// worth of binds, not every pod ever bound.
func TestClaimsDropsExpiredPodClaims(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakePassiveClock(now)
	c := NewClaims(clk)
	for _, name := range []string{"pool-a", "pool-b", "pool-c"} {
		if !c.TryTakePod(types.NamespacedName{Namespace: "team", Name: name}) {
			t.Fatalf("take %s: refused", name)
		}
	}
	clk.SetTime(now.Add(ClaimTTL))
	if !c.TryTakePod(types.NamespacedName{Namespace: "team", Name: "pool-d"}) {
		t.Fatal("take pool-d: refused")
	}
	if n := len(c.pods); n != 1 {
		t.Errorf("%d pod claims held after the TTL, want 1 (the three expired ones dropped)", n)
	}
}

// Expired session claims are dropped as new ones are recorded: a new leader records every
// bind it finds, also of sessions it never asks about again.
func TestClaimsDropsExpiredSessionClaims(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakePassiveClock(now)
	c := NewClaims(clk)
	for _, s := range []types.UID{"s-a", "s-b", "s-c"} {
		c.SessionBound(s, "pod-of-"+string(s))
	}
	clk.SetTime(now.Add(ClaimTTL))
	c.SessionBound("s-d", "pod-of-s-d")
	if n := len(c.sessions); n != 1 {
		t.Errorf("%d session claims held after the TTL, want 1 (the three expired ones dropped)", n)
	}
}
