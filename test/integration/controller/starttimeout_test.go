//go:build !windows

package controller

import (
	"strings"
	"testing"
	"time"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/builders"
)

func endedWith(reason string) func(*agentsv1alpha1.AgentSession) bool {
	return func(s *agentsv1alpha1.AgentSession) bool {
		return s.Status.Phase == agentsv1alpha1.SessionFailed && s.Status.EndReason == reason
	}
}

// TestStartTimeoutEndsPendingSessions: a RequireWarm session on an empty pool waits
// Pending, then ends Failed (StartTimeout) on time: its own startTimeout, the class's, or
// its own capped by the class's.
func TestStartTimeoutEndsPendingSessions(t *testing.T) {
	t.Parallel()
	const timeout = 2 * time.Second
	for _, tc := range []struct {
		name         string
		own, class   time.Duration // 0: unset
		wantTimeout  time.Duration
		wantInReason string
	}{
		{name: "its own", own: timeout, wantTimeout: timeout, wantInReason: "2s"},
		{name: "the class's default", class: timeout, wantTimeout: timeout, wantInReason: "2s"},
		{name: "its own capped by the class", own: time.Hour, class: timeout, wantTimeout: timeout, wantInReason: "2s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := env.CreateNamespace(t)
			class := builders.AgentSandbox(ns, "pool").Replicas(0)
			if tc.class > 0 {
				class.StartTimeout(tc.class)
			}
			create(t, class.Obj())
			session := builders.AgentSession(ns, "s", "pool").StartPolicy(agentsv1alpha1.RequireWarm)
			if tc.own > 0 {
				session.StartTimeout(tc.own)
			}
			create(t, session.Obj())
			waitSession(t, ns, "s", waitTimeout, "Pending, waiting for a warm sandbox", func(s *agentsv1alpha1.AgentSession) bool {
				return s.Status.Phase == agentsv1alpha1.SessionPending || s.Status.Phase == agentsv1alpha1.SessionFailed
			})
			s := waitSession(t, ns, "s", tc.wantTimeout+waitTimeout, "Failed with StartTimeout", endedWith(agentsv1alpha1.ReasonStartTimeout))
			checkEndedOnTime(t, s, tc.wantTimeout)
			if c := condition(s.Status.Conditions, agentsv1alpha1.SessionReadyCondition); c == nil || !strings.Contains(c.Message, tc.wantInReason) {
				t.Errorf("Ready condition = %+v, want a message naming the timeout %s", c, tc.wantInReason)
			}
		})
	}
}

// checkEndedOnTime: the end came no earlier than the timeout (to the second, as status
// times are stored) and not long after it.
func checkEndedOnTime(t *testing.T, s *agentsv1alpha1.AgentSession, timeout time.Duration) {
	t.Helper()
	if s.Status.EndTime == nil {
		t.Fatalf("session %s has no endTime", s.Name)
	}
	waited := s.Status.EndTime.Sub(s.CreationTimestamp.Time)
	if waited < timeout-time.Second || waited > timeout+5*time.Second {
		t.Errorf("session %s ended %s after its creation, want about its startTimeout %s", s.Name, waited, timeout)
	}
}

// TestStartTimeoutFreesTheQueue: a session Queued behind its quota ends on time, and the
// session queued behind it takes its place: admitted as soon as the slot frees.
func TestStartTimeoutFreesTheQueue(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	create(t, builders.AgentQuota(ns, "quota").Sessions(1).Obj())
	create(t, builders.AgentSandbox(ns, "pool").Replicas(0).Obj())

	create(t, builders.AgentSession(ns, "a-holder", "pool").Obj())
	waitSession(t, ns, "a-holder", waitTimeout, "bound (cold)", func(s *agentsv1alpha1.AgentSession) bool { return s.Status.PodName != "" })
	create(t, builders.AgentSession(ns, "b-impatient", "pool").StartTimeout(2*time.Second).Obj())
	waitSession(t, ns, "b-impatient", waitTimeout, "Queued", func(s *agentsv1alpha1.AgentSession) bool {
		return s.Status.Phase == agentsv1alpha1.SessionQueued || s.Status.Phase == agentsv1alpha1.SessionFailed
	})
	create(t, builders.AgentSession(ns, "c-patient", "pool").Obj())
	waitSession(t, ns, "c-patient", waitTimeout, "Queued behind b-impatient", inPhase(agentsv1alpha1.SessionQueued))

	b := waitSession(t, ns, "b-impatient", waitTimeout, "Failed with StartTimeout", endedWith(agentsv1alpha1.ReasonStartTimeout))
	checkEndedOnTime(t, b, 2*time.Second)

	// The slot a-holder frees goes to c-patient, now first in the queue.
	deleteSession(t, ns, "a-holder")
	waitSession(t, ns, "c-patient", waitTimeout, "admitted and bound", func(s *agentsv1alpha1.AgentSession) bool { return s.Status.PodName != "" })
}
