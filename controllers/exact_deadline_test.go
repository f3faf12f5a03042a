package controllers

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/builders"
)

// TestExpiryIsExactAcrossARestart: a session bound at a fraction of a second ends at
// bind+maxLifetime to the microsecond, also when the manager that bound it is gone and a
// new one reads the session from the API server (JSON, as stored): the deadline is
// computed from the stored precise bind time, not from anything in memory, and not from
// the whole-second boundTime and expiryTime shown for display. The old code rounded the
// bind and the expiry up to the second: these sessions ended up to 1.4 s late.
func TestExpiryIsExactAcrossARestart(t *testing.T) {
	second := time.Date(2026, 1, 2, 15, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		bind time.Time // the manager's clock at the bind
		max  time.Duration
	}{
		{"bind just after a second, whole-second lifetime", second.Add(100*time.Millisecond + 400*time.Nanosecond), 3 * time.Second},
		{"bind just after a second, fractional lifetime (the old worst case)", second.Add(100 * time.Millisecond), 3500 * time.Millisecond},
		{"bind just before a second", second.Add(999_999_999), 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scheme := unitScheme(t)
			sb := builders.AgentSandbox("team", "pool").Replicas(1).Obj()
			node := &corev1.Node{}
			node.Name = "win-0"
			// Bound by an earlier manager that died before writing status: track records the
			// bind at the clock's time.
			s := builders.AgentSession("team", "carol", "pool").UID("session-uid").MaxLifetime(tc.max).
				Phase(agentsv1alpha1.SessionStarting).Obj()
			s.Status.PodName = "pool-klmno"
			pod := builders.Pod("team", "pool-klmno").Label(agentsv1alpha1.ClassLabel, "pool").
				Label(agentsv1alpha1.SessionLabel, "carol").OwnedBy(s).Node("win-0").Ready().Obj()

			// The manager that binds.
			stored := reconcileAt(t, scheme, tc.bind, sb, node, s, pod)
			wantBound := tc.bind.Truncate(time.Microsecond)
			wantExpiry := wantBound.Add(tc.max) // every case's lifetime is whole microseconds
			st := stored.Status
			switch {
			case st.PreciseBoundTime == nil || !st.PreciseBoundTime.Time.Equal(wantBound):
				t.Fatalf("status.preciseBoundTime %v, want %s", st.PreciseBoundTime, wantBound.Format(time.RFC3339Nano))
			case st.PreciseExpiryTime == nil || !st.PreciseExpiryTime.Time.Equal(wantExpiry):
				t.Fatalf("status.preciseExpiryTime %v, want %s", st.PreciseExpiryTime, wantExpiry.Format(time.RFC3339Nano))
			case !st.BoundTime.Time.Equal(wantBound.Truncate(time.Second)) || !st.ExpiryTime.Time.Equal(wantExpiry.Truncate(time.Second)):
				t.Fatalf("status.boundTime %s, expiryTime %s; want the precise ones rounded down to the second", st.BoundTime, st.ExpiryTime)
			}

			// A new manager, a microsecond before the deadline: the session goes on, and the
			// reconcile comes back at the deadline itself.
			before, result := reconcileResultAt(t, scheme, wantExpiry.Add(-time.Microsecond), sb, node, stored, pod)
			if before.Status.Phase.IsFinished() || result.RequeueAfter != time.Microsecond {
				t.Errorf("a microsecond before the deadline: phase %s (%s), requeue after %s; want not ended, requeue after 1µs",
					before.Status.Phase, before.Status.EndReason, result.RequeueAfter)
			}
			// At the deadline: it ends, by its max lifetime.
			at, _ := reconcileResultAt(t, scheme, wantExpiry, sb, node, stored, pod)
			if at.Status.Phase != agentsv1alpha1.SessionExpired || at.Status.EndReason != agentsv1alpha1.ReasonMaxLifetime {
				t.Errorf("at the deadline %s: phase %s (%s), want Expired (MaxLifetime)",
					wantExpiry.Format(time.RFC3339Nano), at.Status.Phase, at.Status.EndReason)
			}
		})
	}
}

// reconcileAt runs one Reconcile of the session among objs by a fresh manager whose clock
// shows now, and returns the session as the API server then stores it.
func reconcileAt(t *testing.T, scheme *runtime.Scheme, now time.Time, objs ...client.Object) *agentsv1alpha1.AgentSession {
	t.Helper()
	s, _ := reconcileResultAt(t, scheme, now, objs...)
	return s
}

// reconcileResultAt is reconcileAt with the Reconcile's result. Each call starts from objs
// (copies), as a manager that just took over would find them, and each session goes
// through JSON first: what a manager reads is what the API server stored.
func reconcileResultAt(t *testing.T, scheme *runtime.Scheme, now time.Time, objs ...client.Object) (*agentsv1alpha1.AgentSession, ctrl.Result) {
	t.Helper()
	var session *agentsv1alpha1.AgentSession
	var copies []client.Object
	for _, o := range objs {
		o = o.DeepCopyObject().(client.Object)
		if s, ok := o.(*agentsv1alpha1.AgentSession); ok {
			session = throughJSON(t, s)
			o = session
		}
		copies = append(copies, o)
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(copies...).WithStatusSubresource(session).
		WithIndex(&corev1.Pod{}, podSessionIndex, labelIndex(agentsv1alpha1.SessionLabel)).Build()
	r := newAgentSessionReconciler(unitDeps(c, clocktesting.NewFakePassiveClock(now)), &sharedState{})
	key := types.NamespacedName{Namespace: session.Namespace, Name: session.Name}
	result, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: key})
	if err != nil {
		t.Fatalf("Reconcile at %s: %v", now.Format(time.RFC3339Nano), err)
	}
	got := &agentsv1alpha1.AgentSession{}
	if err := c.Get(context.Background(), key, got); err != nil {
		t.Fatal(err)
	}
	return throughJSON(t, got), result
}

// throughJSON returns s as it reads back from its JSON: times at the precision stored.
func throughJSON(t *testing.T, s *agentsv1alpha1.AgentSession) *agentsv1alpha1.AgentSession {
	t.Helper()
	raw, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	out := &agentsv1alpha1.AgentSession{}
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatal(err)
	}
	return out
}
