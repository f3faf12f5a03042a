//go:build !windows

package controller

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/builders"
)

// TestAutoscalingReachesZeroAtNight: a class with minReplicas 0 runs through a busy hour
// and a quiet night on the suite's time scale (a one-second rate window, so a slow average
// of 20 s, and a scaleDownDelay of 3 s). After the last session the model's need falls to
// 0 because fewer than autoscale.ZeroDemandEpsilon binds are expected within
// scaleDownDelay, although the bind rate is still above 0 (Erlang's formula alone would
// keep a sandbox all night), and the pool is empty: no pod left in the namespace. A session
// waiting in the night still gets a warm sandbox, and its bind asks for one again.
func TestAutoscalingReachesZeroAtNight(t *testing.T) {
	t.Parallel()
	const delay = 3 * time.Second
	ns := env.CreateNamespace(t)
	create(t, builders.AgentSandbox(ns, "pool").Autoscaling(0, 12, delay).Obj())
	waitAutoscaled(t, ns, "pool", waitTimeout, "no demand yet: recommended 0", func(sb *agentsv1alpha1.AgentSandbox) bool {
		return sb.Status.Autoscaling != nil && specReplicas(sb) == 0 && sb.Status.Autoscaling.RecommendedReplicas == 0
	})

	// The busy hour, on the suite's scale (a rate window of 1 s for a minute): five sessions a
	// second, each living a second, for one slow window (20 s), so the slow average holds the
	// hour's level as a real busy hour leaves it.
	const busySessions = 100
	var wg sync.WaitGroup
	var createErr error
	var lastCreated time.Time
	wg.Go(func() {
		for i := range busySessions {
			s := builders.AgentSession(ns, fmt.Sprintf("day%03d", i), "pool").MaxLifetime(time.Second).TTLAfterFinished(time.Second).Obj()
			if err := k8s.Create(context.Background(), s); err != nil {
				createErr = err
				return
			}
			lastCreated = time.Now()
			time.Sleep(200 * time.Millisecond) // the arrival rate, not a synchronisation
		}
	})
	waitAutoscaled(t, ns, "pool", 2*waitTimeout, "grown to at least 3 Ready warm sandboxes in the busy hour", func(sb *agentsv1alpha1.AgentSandbox) bool {
		return sb.Status.Autoscaling != nil && specReplicas(sb) >= 3 && sb.Status.ReadyReplicas >= 3
	})
	wg.Wait()
	if createErr != nil {
		t.Fatalf("creating sessions: %v", createErr)
	}

	// The night: the need falls to 0 with the rate still above 0, the pool follows after
	// scaleDownDelay, and every pod goes (the sessions' own end and are deleted).
	night := waitAutoscaled(t, ns, "pool", 3*waitTimeout, "recommended 0 by the zero-demand rule, the rate still shown", func(sb *agentsv1alpha1.AgentSandbox) bool {
		a, c := sb.Status.Autoscaling, condition(sb.Status.Conditions, agentsv1alpha1.SandboxScalingLimited)
		return a != nil && a.NeedReplicas == 0 && a.QueuedSessions == 0 && a.RecommendedReplicas == 0 && specReplicas(sb) == 0 &&
			a.BindRate.MilliValue() > 0 && c != nil && strings.Contains(c.Message, "binds expected within scaleDownDelay")
	})
	reachedZero := time.Since(lastCreated)
	t.Logf("recommended 0 %s after the last session was created (scaleDownDelay %s plus one rate window 1s; bind rate shown %s/s); message: %s",
		reachedZero.Round(100*time.Millisecond), delay, night.Status.Autoscaling.BindRate.String(),
		condition(night.Status.Conditions, agentsv1alpha1.SandboxScalingLimited).Message)
	eventually(t, 2*waitTimeout, func(ctx context.Context) (bool, string) {
		pods := &corev1.PodList{}
		if err := k8s.List(ctx, pods, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		names := make([]string, 0, len(pods.Items))
		for _, p := range pods.Items {
			names = append(names, p.Name)
		}
		return len(pods.Items) == 0, fmt.Sprintf("pods left in the night: %v", names)
	})

	// A session that waits in the night still counts, one sandbox for it whatever the rate:
	// a RequireWarm session never starts cold, so its bind proves the empty pool made a warm
	// pod for it. Its bind then asks for a sandbox again: one bind alone expects more than
	// the epsilon within scaleDownDelay.
	create(t, builders.AgentSession(ns, "night", "pool").StartPolicy(agentsv1alpha1.RequireWarm).MaxLifetime(time.Minute).Obj())
	waitSession(t, ns, "night", 2*waitTimeout, "bound to a warm sandbox made for it", func(s *agentsv1alpha1.AgentSession) bool {
		return s.Status.PodName != "" && (s.Status.Phase == agentsv1alpha1.SessionStarting || s.Status.Phase == agentsv1alpha1.SessionReady)
	})
	waitAutoscaled(t, ns, "pool", waitTimeout, "a warm sandbox asked for again after a lone bind", func(sb *agentsv1alpha1.AgentSandbox) bool {
		a := sb.Status.Autoscaling
		return a != nil && a.QueuedSessions == 0 && a.NeedReplicas >= 1 && a.RecommendedReplicas >= 1 && specReplicas(sb) >= 1 &&
			hasCondition(sb, agentsv1alpha1.SandboxScalingLimited, metav1.ConditionFalse, agentsv1alpha1.ReasonWithinLimits)
	})
}
