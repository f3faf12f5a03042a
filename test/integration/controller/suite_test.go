//go:build !windows

package controller

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/controllers"
	"github.com/hyperpool/hyperpool/internal/podstate"
	"github.com/hyperpool/hyperpool/test/framework"
	"github.com/hyperpool/hyperpool/test/testbed"
)

// The package's test bed: one control plane, the manager running in-process, and
// simulated Windows nodes of two builds. Each test works in its own namespace.
var (
	env *testbed.Env
	k8s client.Client
)

const (
	build2022 = "10.0.20348"
	build2019 = "10.0.17763"
	// defaultQuotaLabel marks the namespaces the test manager's default quota applies to.
	defaultQuotaLabel = "hyperpool-test/default-quota"
	// testReadyTimeout is the warm-pod ready deadline the tests' manager uses: short, yet
	// long enough for kwok to start pods on a loaded 2-core machine.
	testReadyTimeout = 8 * time.Second
	// waitTimeout bounds a wait for something the manager or the API server does (see
	// testbed.WaitTimeout).
	waitTimeout = testbed.WaitTimeout
)

func TestMain(m *testing.M) {
	// A fuzz run exercises pure functions only: no control plane for it.
	flag.Parse()
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		os.Exit(m.Run())
	}
	testbed.Main(m, testbed.Options{}, func(e *testbed.Env) error {
		env, k8s = e, e.Client
		ctx := context.Background()
		if err := framework.CreateRuntimeClasses(ctx, e); err != nil {
			return err
		}
		if _, err := e.CreateWindowsNodes(ctx, "win2022", 3, build2022); err != nil {
			return err
		}
		if _, err := e.CreateWindowsNodes(ctx, "win2019", 1, build2019); err != nil {
			return err
		}
		cfg := framework.ManagerConfig()
		cfg.WarmPodReadyTimeout = testReadyTimeout
		// The autoscaler on a test's time scale: its bind rate follows a step in a second.
		cfg.AutoscaleRateWindow = time.Second
		// The default quota applies only to namespaces a test labels for it.
		cfg.DefaultQuota, _ = controllers.ParseQuotaLimits("sessions=2")
		cfg.DefaultQuotaNamespaces = labels.SelectorFromSet(labels.Set{defaultQuotaLabel: "true"})
		cfg.ReconcileObserver = reconciles.observe
		return framework.StartManager(e, nil, cfg)
	})
}

// eventually waits for cond; see testbed.Eventually.
func eventually(t testing.TB, timeout time.Duration, cond func(ctx context.Context) (bool, string)) {
	t.Helper()
	testbed.Eventually(t, timeout, cond)
}

func create(t testing.TB, obj client.Object) {
	t.Helper()
	if err := k8s.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

// waitPoolReady waits until the class reports want Ready warm pods, and exactly want warm.
func waitPoolReady(t testing.TB, ns, name string, want int32, timeout time.Duration) *agentsv1alpha1.AgentSandbox {
	t.Helper()
	sb := &agentsv1alpha1.AgentSandbox{}
	eventually(t, timeout, func(ctx context.Context) (bool, string) {
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, sb); err != nil {
			return false, err.Error()
		}
		warm := warmPods(t, ns, name)
		ready := 0
		for _, p := range warm {
			if podstate.Ready(&p) {
				ready++
			}
		}
		return sb.Status.ReadyReplicas == want && int32(len(warm)) == want && int32(ready) == want,
			fmt.Sprintf("pool %s: status ready %d/%d, %d warm pods (%d Ready) in the API, want %d", name, sb.Status.ReadyReplicas, sb.Status.Replicas, len(warm), ready, want)
	})
	return sb
}

// warmPods lists the class's unbound, non-terminating pods straight from the API server.
func warmPods(t testing.TB, ns, sandbox string) []corev1.Pod {
	t.Helper()
	list := &corev1.PodList{}
	if err := k8s.List(context.Background(), list, client.InNamespace(ns), client.MatchingLabels{agentsv1alpha1.ClassLabel: sandbox}); err != nil {
		t.Fatalf("listing pods: %v", err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.Labels[agentsv1alpha1.SessionLabel] == "" && p.DeletionTimestamp.IsZero() {
			out = append(out, p)
		}
	}
	return out
}

// waitSession waits until the session satisfies cond, and returns it.
func waitSession(t testing.TB, ns, name string, timeout time.Duration, what string, cond func(s *agentsv1alpha1.AgentSession) bool) *agentsv1alpha1.AgentSession {
	t.Helper()
	s := &agentsv1alpha1.AgentSession{}
	eventually(t, timeout, func(ctx context.Context) (bool, string) {
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
			return false, err.Error()
		}
		return cond(s), fmt.Sprintf("session %s: want %s; phase %q, pod %q, start %q, end reason %q, conditions %+v",
			name, what, s.Status.Phase, s.Status.PodName, s.Status.StartType, s.Status.EndReason, s.Status.Conditions)
	})
	return s
}

func inPhase(phase agentsv1alpha1.SessionPhase) func(*agentsv1alpha1.AgentSession) bool {
	return func(s *agentsv1alpha1.AgentSession) bool { return s.Status.Phase == phase }
}

// pendingWith: phase Pending, with the Ready condition's reason.
func pendingWith(reason string) func(*agentsv1alpha1.AgentSession) bool {
	return func(s *agentsv1alpha1.AgentSession) bool {
		c := condition(s.Status.Conditions, agentsv1alpha1.SessionReadyCondition)
		return s.Status.Phase == agentsv1alpha1.SessionPending && c != nil && c.Reason == reason
	}
}

// readyCondition returns the session's or class's condition of the given type.
func condition(conds []metav1.Condition, typ string) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == typ {
			return &conds[i]
		}
	}
	return nil
}

// reconciles counts the test manager's reconciles per controller and object.
var reconciles = &reconcileCounter{counts: map[string]int{}}

type reconcileCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *reconcileCounter) observe(controller string, key types.NamespacedName) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts[controller+"/"+key.String()]++
}

func (c *reconcileCounter) count(controller, ns, name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[controller+"/"+ns+"/"+name]
}

// assertSettled checks that an object handled for bad input has settled: over a quiet
// window the controller reconciles it at most a few times (other tests' RuntimeClass and
// node changes legitimately re-check every pool). A status write that triggers its own
// reconcile, or a tiny RequeueAfter, reconciles it hundreds of times in that window.
//
// The window is a measurement, not a synchronisation: call it once the object shows the
// expected condition.
func assertSettled(t testing.TB, controller, ns, name string) {
	t.Helper()
	const window, most = 3 * time.Second, 5
	before := reconciles.count(controller, ns, name)
	<-time.After(window)
	if n := reconciles.count(controller, ns, name) - before; n > most {
		t.Errorf("%s reconciled %s/%s %d times in %s after it settled (at most %d expected): a hot loop", controller, ns, name, n, window, most)
	}
}
