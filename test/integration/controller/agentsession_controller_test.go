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
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/builders"
	"github.com/hyperpool/hyperpool/test/testbed"
)

func TestWarmBind(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	create(t, builders.AgentSandbox(ns, "pool").Replicas(2).Obj())
	waitPoolReady(t, ns, "pool", 2, waitTimeout)
	warmBefore := map[string]bool{}
	for _, p := range warmPods(t, ns, "pool") {
		warmBefore[p.Name] = true
	}

	create(t, builders.AgentSession(ns, "s1", "pool").Obj())
	s := waitSession(t, ns, "s1", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))

	if s.Status.StartType != agentsv1alpha1.StartWarm || !warmBefore[s.Status.PodName] {
		t.Errorf("start type %q, pod %q; want Warm and one of the warm pods %v", s.Status.StartType, s.Status.PodName, warmBefore)
	}
	if s.Status.NodeName == "" || s.Status.PodIP == "" || s.Status.BoundTime == nil || s.Status.ReadyTime == nil || s.Status.ExpiryTime == nil {
		t.Errorf("status lacks node, IP or times: %+v", s.Status)
	}
	if want := s.Status.BoundTime.Add(time.Hour); !s.Status.ExpiryTime.Time.Equal(want) {
		t.Errorf("expiryTime = %s, want bound + 1h (the class default) = %s", s.Status.ExpiryTime, want)
	}
	if s.Status.Footprint == nil || s.Status.Footprint.Memory.String() != "1536Mi" {
		t.Errorf("footprint = %+v, want 1536Mi", s.Status.Footprint)
	}
	pod := getPod(t, ns, s.Status.PodName)
	if pod.Labels[agentsv1alpha1.SessionLabel] != "s1" {
		t.Errorf("pod labels %v, want session=s1", pod.Labels)
	}
	if owner := metav1.GetControllerOf(pod); owner == nil || owner.Kind != "AgentSession" || owner.UID != s.UID {
		t.Errorf("pod controller = %+v, want the session", owner)
	}
	// The pool refills behind the bind.
	waitPoolReady(t, ns, "pool", 2, waitTimeout)
	sb := &agentsv1alpha1.AgentSandbox{}
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		_ = k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "pool"}, sb)
		return sb.Status.ActiveSessions == 1, fmt.Sprintf("activeSessions = %d, want 1", sb.Status.ActiveSessions)
	})

	// Deleting the session destroys its pod.
	if err := k8s.Delete(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	waitPodGone(t, ns, pod.Name, pod.UID)
}

func waitPodGone(t *testing.T, ns, name string, uid types.UID) {
	t.Helper()
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		p := &corev1.Pod{}
		err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, p)
		if apierrors.IsNotFound(err) || (err == nil && p.UID != uid) {
			return true, ""
		}
		return false, fmt.Sprintf("pod %s still exists (deleting: %v)", name, err == nil && !p.DeletionTimestamp.IsZero())
	})
}

func TestColdStartWhenNoWarmPod(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	// The simulated VM boots for a second, so the session is seen Starting first.
	create(t, builders.AgentSandbox(ns, "empty").Replicas(0).TemplateAnnotation(testbed.PodReadyDelayAnnotation, "1000").Obj())
	waitPoolReady(t, ns, "empty", 0, waitTimeout)

	create(t, builders.AgentSession(ns, "cold", "empty").Obj())
	starting := waitSession(t, ns, "cold", waitTimeout, "Starting or Ready with a pod", func(s *agentsv1alpha1.AgentSession) bool {
		return s.Status.PodName != ""
	})
	if starting.Status.StartType != agentsv1alpha1.StartCold {
		t.Errorf("start type = %q, want Cold", starting.Status.StartType)
	}
	s := waitSession(t, ns, "cold", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
	if s.Status.PodName != starting.Status.PodName {
		t.Errorf("session changed pods: %s then %s", starting.Status.PodName, s.Status.PodName)
	}
	pod := getPod(t, ns, s.Status.PodName)
	checkSandboxPod(t, pod, "hyperv", []string{build2022})
	if len(warmPods(t, ns, "empty")) != 0 {
		t.Error("a cold start added a pod to the pool")
	}
}

func TestRequireWarmWaitsForAWarmPod(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	create(t, builders.AgentSandbox(ns, "pool").Replicas(0).Obj())
	create(t, builders.AgentSession(ns, "patient", "pool").StartPolicy(agentsv1alpha1.RequireWarm).Obj())

	waitSession(t, ns, "patient", waitTimeout, "Pending with reason WaitingForWarmSandbox", pendingWith(agentsv1alpha1.ReasonWaitingForWarmSandbox))
	if pods := podsOfSession(t, ns, "patient"); len(pods) != 0 {
		t.Fatalf("RequireWarm session got %d pods without a warm one", len(pods))
	}

	scale(t, ns, "pool", 1)
	got := waitSession(t, ns, "patient", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
	if got.Status.StartType != agentsv1alpha1.StartWarm {
		t.Errorf("start type = %q, want Warm", got.Status.StartType)
	}
}

func podsOfSession(t *testing.T, ns, session string) []corev1.Pod {
	t.Helper()
	list := &corev1.PodList{}
	if err := k8s.List(context.Background(), list, client.InNamespace(ns), client.MatchingLabels{agentsv1alpha1.SessionLabel: session}); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

func TestSessionBindsWhenItsClassAppears(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	create(t, builders.AgentSession(ns, "early", "late-class").Obj())
	waitSession(t, ns, "early", waitTimeout, "Pending with reason SandboxNotFound", pendingWith(agentsv1alpha1.ReasonSandboxNotFound))
	create(t, builders.AgentSandbox(ns, "late-class").Replicas(1).Obj())
	waitSession(t, ns, "early", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
}

func TestMaxLifetimeExpiresTheSession(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	create(t, builders.AgentSandbox(ns, "pool").Replicas(1).Obj())
	waitPoolReady(t, ns, "pool", 1, waitTimeout)

	create(t, builders.AgentSession(ns, "short", "pool").MaxLifetime(2*time.Second).Obj())
	ready := waitSession(t, ns, "short", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
	pod := getPod(t, ns, ready.Status.PodName)

	ended := waitSession(t, ns, "short", waitTimeout, "Expired", inPhase(agentsv1alpha1.SessionExpired))
	if ended.Status.EndReason != agentsv1alpha1.ReasonMaxLifetime {
		t.Errorf("end reason = %q, want MaxLifetime", ended.Status.EndReason)
	}
	if lag := ended.Status.EndTime.Sub(ready.Status.ExpiryTime.Time); lag < 0 || lag > 2*time.Second {
		t.Errorf("ended %s after the deadline, want within [0, 2s]", lag)
	}
	waitPodGone(t, ns, pod.Name, pod.UID)
}

func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	create(t, builders.AgentSandbox(ns, "pool").Replicas(2).Obj())
	waitPoolReady(t, ns, "pool", 2, waitTimeout)

	for _, name := range []string{"quiet", "chatty"} {
		create(t, builders.AgentSession(ns, name, "pool").IdleTimeout(2*time.Second).Obj())
	}
	waitSession(t, ns, "chatty", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))

	// chatty sends a heartbeat every 500 ms for 5 s: more than twice its idle timeout.
	ctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			heartbeat(t, ns, "chatty", time.Now())
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})

	quiet := waitSession(t, ns, "quiet", waitTimeout, "Expired", inPhase(agentsv1alpha1.SessionExpired))
	if quiet.Status.EndReason != agentsv1alpha1.ReasonIdleTimeout {
		t.Errorf("quiet: end reason = %q, want IdleTimeout", quiet.Status.EndReason)
	}
	wg.Wait()
	chatty := &agentsv1alpha1.AgentSession{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "chatty"}, chatty); err != nil {
		t.Fatal(err)
	}
	if chatty.Status.Phase != agentsv1alpha1.SessionReady {
		t.Fatalf("chatty, with heartbeats, is %s (%s), want still Ready", chatty.Status.Phase, chatty.Status.EndReason)
	}
	// Heartbeats stopped: it expires one idle timeout after the last.
	ended := waitSession(t, ns, "chatty", waitTimeout, "Expired", inPhase(agentsv1alpha1.SessionExpired))
	if ended.Status.EndReason != agentsv1alpha1.ReasonIdleTimeout {
		t.Errorf("chatty: end reason = %q, want IdleTimeout", ended.Status.EndReason)
	}
}

func heartbeat(t *testing.T, ns, name string, at time.Time) {
	s := &agentsv1alpha1.AgentSession{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	patch := client.RawPatch("application/merge-patch+json",
		fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, agentsv1alpha1.LastActivityAnnotation, at.UTC().Format(time.RFC3339Nano)))
	if err := k8s.Patch(context.Background(), s, patch); err != nil {
		t.Errorf("heartbeat: %v", err)
	}
}

func TestFinishedSessionsAreDeletedAfterTTL(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	create(t, builders.AgentSandbox(ns, "pool").Replicas(1).Obj())
	create(t, builders.AgentSession(ns, "brief", "pool").MaxLifetime(time.Second).TTLAfterFinished(time.Second).Obj())
	waitSession(t, ns, "brief", waitTimeout, "Expired", inPhase(agentsv1alpha1.SessionExpired))
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "brief"}, &agentsv1alpha1.AgentSession{})
		return apierrors.IsNotFound(err), fmt.Sprintf("session still there (get: %v)", err)
	})
}

func TestPodDeletedFailsTheSession(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	create(t, builders.AgentSandbox(ns, "pool").Replicas(1).Obj())
	create(t, builders.AgentSession(ns, "victim", "pool").Obj())
	s := waitSession(t, ns, "victim", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))

	pod := getPod(t, ns, s.Status.PodName)
	if err := k8s.Delete(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	failed := waitSession(t, ns, "victim", waitTimeout, "Failed", inPhase(agentsv1alpha1.SessionFailed))
	if failed.Status.EndReason != agentsv1alpha1.ReasonPodDeleted {
		t.Errorf("end reason = %q, want PodDeleted", failed.Status.EndReason)
	}
	if c := condition(failed.Status.Conditions, agentsv1alpha1.SessionReadyCondition); c == nil || c.Status != metav1.ConditionFalse {
		t.Errorf("a failed session shows Ready condition %+v", c)
	}
}

func TestNodeLostFailsTheSession(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	// A node of this test's own, tainted so that no other test's pods land there, and a
	// class that lands only there.
	taint := corev1.Taint{Key: "hyperpool-test", Value: ns, Effect: corev1.TaintEffectNoSchedule}
	nodes, err := env.CreateWindowsNodes(context.Background(), "lost-"+ns, 1, build2022,
		testbed.WithLabels(map[string]string{"hyperpool-test": ns}), testbed.WithTaints(testbed.WindowsTaint(), taint))
	if err != nil {
		t.Fatal(err)
	}
	create(t, builders.AgentSandbox(ns, "pool").Replicas(1).NodeSelector("hyperpool-test", ns).
		Toleration(corev1.Toleration{Key: taint.Key, Value: taint.Value, Effect: taint.Effect, Operator: corev1.TolerationOpEqual}).Obj())
	create(t, builders.AgentSession(ns, "stranded", "pool").Obj())
	s := waitSession(t, ns, "stranded", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
	if s.Status.NodeName != nodes[0].Name {
		t.Fatalf("session on node %s, want %s", s.Status.NodeName, nodes[0].Name)
	}

	if err := k8s.Delete(context.Background(), &nodes[0]); err != nil {
		t.Fatal(err)
	}
	failed := waitSession(t, ns, "stranded", waitTimeout, "Failed", inPhase(agentsv1alpha1.SessionFailed))
	if failed.Status.EndReason != agentsv1alpha1.ReasonNodeLost {
		t.Errorf("end reason = %q, want NodeLost", failed.Status.EndReason)
	}
	// The pool's warm pod on the lost node is replaced at once (the replacement waits for a
	// node this class may use, so it stays unscheduled here).
	eventually(t, waitTimeout, func(context.Context) (bool, string) {
		pods := warmPods(t, ns, "pool")
		onLost := 0
		for _, p := range pods {
			if p.Spec.NodeName == nodes[0].Name {
				onLost++
			}
		}
		return onLost == 0 && len(pods) == 1, fmt.Sprintf("%d warm pods, %d still on the lost node; want 1 and 0", len(pods), onLost)
	})
}

// TestBurstAgainstAWarmPool: 200 sessions at once against a pool of 50. Every session gets
// exactly one pod, no pod serves two sessions, and the pool refills to 50 with no pod more.
func TestBurstAgainstAWarmPool(t *testing.T) {
	t.Parallel()
	const poolSize, sessions = 50, 200
	ns := env.CreateNamespace(t)
	create(t, builders.AgentSandbox(ns, "pool").Replicas(poolSize).Obj())
	waitPoolReady(t, ns, "pool", poolSize, 2*waitTimeout)

	var wg sync.WaitGroup
	for i := range sessions {
		wg.Go(func() { create(t, builders.AgentSession(ns, fmt.Sprintf("burst-%03d", i), "pool").Obj()) })
	}
	wg.Wait()

	eventually(t, 3*waitTimeout, func(ctx context.Context) (bool, string) {
		list := &agentsv1alpha1.AgentSessionList{}
		if err := k8s.List(ctx, list, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		ready, notReady := 0, []string{}
		for _, s := range list.Items {
			if s.Status.Phase == agentsv1alpha1.SessionReady {
				ready++
			} else if len(notReady) < 5 {
				notReady = append(notReady, fmt.Sprintf("%s: phase %q pod %q conditions %+v", s.Name, s.Status.Phase, s.Status.PodName, s.Status.Conditions))
			}
		}
		return ready == sessions, fmt.Sprintf("%d of %d sessions Ready; not Ready: %v", ready, sessions, notReady)
	})
	waitPoolReady(t, ns, "pool", poolSize, 2*waitTimeout)

	list := &agentsv1alpha1.AgentSessionList{}
	if err := k8s.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	pods := &corev1.PodList{}
	if err := k8s.List(context.Background(), pods, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	podByName := map[string]corev1.Pod{}
	podsPerSession := map[string]int{}
	var live []corev1.Pod
	for _, p := range pods.Items {
		if !p.DeletionTimestamp.IsZero() {
			continue // a warm pod replaced for booting too slowly on a loaded machine
		}
		live = append(live, p)
		podByName[p.Name] = p
		if sess := p.Labels[agentsv1alpha1.SessionLabel]; sess != "" {
			podsPerSession[sess]++
		}
	}
	claimedBy := map[string]string{}
	warm, cold := 0, 0
	for _, s := range list.Items {
		if other, dup := claimedBy[s.Status.PodName]; dup {
			t.Errorf("pod %s bound to both %s and %s", s.Status.PodName, other, s.Name)
		}
		claimedBy[s.Status.PodName] = s.Name
		p, ok := podByName[s.Status.PodName]
		if !ok || p.Labels[agentsv1alpha1.SessionLabel] != s.Name {
			t.Errorf("session %s: pod %s missing or labelled for %q", s.Name, s.Status.PodName, p.Labels[agentsv1alpha1.SessionLabel])
		}
		if n := podsPerSession[s.Name]; n != 1 {
			t.Errorf("session %s holds %d pods, want 1", s.Name, n)
		}
		if s.Status.StartType == agentsv1alpha1.StartWarm {
			warm++
		} else {
			cold++
		}
	}
	// Every pod is either bound to one session or warm in the pool: none extra.
	if want := sessions + poolSize; len(live) != want {
		t.Errorf("%d pods in the namespace, want %d (%d bound + %d warm)", len(live), want, sessions, poolSize)
	}
	// The pool created its first 50 and one replacement per warm bind, nothing more: any pod
	// the pool over-created would be warm (the check above) or bound warm (counted here).
	poolCreated := 0
	for _, p := range live {
		if p.GenerateName == "pool-" {
			poolCreated++
		}
	}
	if want := poolSize + warm; poolCreated != want {
		t.Errorf("the pool created %d pods still alive, want %d (%d + %d warm binds)", poolCreated, want, poolSize, warm)
	}
	if warm < poolSize {
		t.Errorf("only %d warm binds from a Ready pool of %d", warm, poolSize)
	}
	t.Logf("%d sessions: %d warm, %d cold", sessions, warm, cold)
}

func TestClassDeletedUnderALiveSession(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	create(t, builders.AgentSandbox(ns, "doomed").Replicas(1).Obj())
	create(t, builders.AgentSession(ns, "live", "doomed").Obj())
	s := waitSession(t, ns, "live", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
	pod := getPod(t, ns, s.Status.PodName)

	if err := k8s.Delete(context.Background(), &agentsv1alpha1.AgentSandbox{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "doomed"}}); err != nil {
		t.Fatal(err)
	}
	ended := waitSession(t, ns, "live", waitTimeout, "Terminated", inPhase(agentsv1alpha1.SessionTerminated))
	if ended.Status.EndReason != agentsv1alpha1.ReasonSandboxDeleted {
		t.Errorf("end reason = %q, want SandboxDeleted", ended.Status.EndReason)
	}
	waitPodGone(t, ns, pod.Name, pod.UID)
	assertSettled(t, "agentsession", ns, "live")
}

// A session names its class by name in its own namespace: a class of that name in another
// namespace is not its class, and it never binds a pod from there.
func TestSessionCannotUseAClassInAnotherNamespace(t *testing.T) {
	t.Parallel()
	classNS, sessionNS := env.CreateNamespace(t), env.CreateNamespace(t)
	create(t, builders.AgentSandbox(classNS, "shared").Replicas(1).Obj())
	waitPoolReady(t, classNS, "shared", 1, waitTimeout)
	create(t, builders.AgentSession(sessionNS, "outsider", "shared").Obj())
	s := waitSession(t, sessionNS, "outsider", waitTimeout, "Pending with SandboxNotFound", pendingWith(agentsv1alpha1.ReasonSandboxNotFound))
	if msg := condition(s.Status.Conditions, agentsv1alpha1.SessionReadyCondition).Message; !strings.Contains(msg, sessionNS) {
		t.Errorf("message %q does not say which namespace was searched (%s)", msg, sessionNS)
	}
	assertSettled(t, "agentsession", sessionNS, "outsider")
	if s := getSession(t, sessionNS, "outsider"); s.Status.Phase != agentsv1alpha1.SessionPending || s.Status.PodName != "" {
		t.Errorf("session is %s with pod %q; want Pending with none, never a class of another namespace", s.Status.Phase, s.Status.PodName)
	}
	if warm := warmPods(t, classNS, "shared"); len(warm) != 1 {
		t.Errorf("the other namespace's pool has %d warm pods, want its 1 untouched", len(warm))
	}
}

// TestMalformedHeartbeatIsReportedAndIgnored: a heartbeat that is not a time is reported
// once, by a Warning event naming the value, however often the session is reconciled
// after, and the idle timeout counts from the bind as if there were none.
func TestMalformedHeartbeatIsReportedAndIgnored(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	create(t, builders.AgentSandbox(ns, "pool").Replicas(1).Obj())
	create(t, builders.AgentSession(ns, "garbled", "pool").IdleTimeout(2*time.Second).
		Annotation(agentsv1alpha1.LastActivityAnnotation, "yesterday-ish").Obj())
	// A live session with a malformed heartbeat and the default idle timeout: reported
	// once, not re-read in a loop.
	create(t, builders.AgentSession(ns, "garbled-live", "pool").Annotation(agentsv1alpha1.LastActivityAnnotation, "not-a-time").Obj())
	waitSession(t, ns, "garbled-live", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
	assertSettled(t, "agentsession", ns, "garbled-live")
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		n, err := heartbeatWarnings(ctx, ns, "garbled-live", "not-a-time")
		return n > 0, fmt.Sprintf("no MalformedHeartbeat Warning naming the value for garbled-live (list: %v)", err)
	})
	// More reconciles: each change of the session's spec is one.
	for _, user := range []string{"someone", "someone-else"} {
		before := reconciles.count("agentsession", ns, "garbled-live")
		patch := client.RawPatch(types.MergePatchType, fmt.Appendf(nil, `{"spec":{"user":%q}}`, user))
		if err := k8s.Patch(context.Background(), builders.AgentSession(ns, "garbled-live", "pool").Obj(), patch); err != nil {
			t.Fatal(err)
		}
		eventually(t, waitTimeout, func(context.Context) (bool, string) {
			n := reconciles.count("agentsession", ns, "garbled-live")
			return n > before, fmt.Sprintf("garbled-live not reconciled after its spec.user changed to %s (%d reconciles)", user, n)
		})
	}
	// The window lets the events of those reconciles land (they are written a moment after).
	assertSettled(t, "agentsession", ns, "garbled-live")
	n, err := heartbeatWarnings(context.Background(), ns, "garbled-live", "not-a-time")
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("the malformed heartbeat of garbled-live was reported %d times over %d reconciles, want once",
			n, reconciles.count("agentsession", ns, "garbled-live"))
	}

	// The idle timeout counts from the bind, as if there were no heartbeat.
	ended := waitSession(t, ns, "garbled", waitTimeout, "Expired", inPhase(agentsv1alpha1.SessionExpired))
	if ended.Status.EndReason != agentsv1alpha1.ReasonIdleTimeout {
		t.Errorf("end reason = %q, want IdleTimeout", ended.Status.EndReason)
	}
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		n, err := heartbeatWarnings(ctx, ns, "garbled", "yesterday-ish")
		return n > 0, fmt.Sprintf("no MalformedHeartbeat Warning naming the value for garbled (list: %v)", err)
	})
}

// heartbeatWarnings counts the MalformedHeartbeat Warnings about the session that name the
// value: every Event, and every repeat its series counts.
func heartbeatWarnings(ctx context.Context, ns, session, value string) (int, error) {
	events := &eventsv1.EventList{}
	if err := k8s.List(ctx, events, client.InNamespace(ns)); err != nil {
		return 0, err
	}
	n := 0
	for _, e := range events.Items {
		if e.Type != corev1.EventTypeWarning || e.Reason != "MalformedHeartbeat" || e.Regarding.Name != session || !strings.Contains(e.Note, value) {
			continue
		}
		if e.Series != nil && e.Series.Count > 1 {
			n += int(e.Series.Count)
		} else {
			n++
		}
	}
	return n, nil
}
