//go:build !windows

package testbed_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/hyperpool/hyperpool/internal/podstate"
	"github.com/hyperpool/hyperpool/test/testbed"
)

const (
	windowsBuild = "10.0.20348"
	nodePrefix   = "win"
	nodeCount    = 2
	// waitTimeout bounds every wait for the control plane to act.
	waitTimeout = testbed.WaitTimeout
	// helperEnv makes the test binary run crashingHelper instead of the tests.
	helperEnv = "TESTBED_CRASH_HELPER"
	// reportMarker starts the helper's report line, telling it from anything else on stdout.
	reportMarker = "TESTBED_HELPER_REPORT "
)

var env *testbed.Env

func TestMain(m *testing.M) {
	// envtest logs through controller-runtime; without a logger, a run longer than 30 s
	// prints a warning with a stack trace. These tests read no component logs.
	ctrllog.SetLogger(logr.Discard())
	if os.Getenv(helperEnv) != "" {
		crashingHelper()
		return
	}
	testbed.Main(m, testbed.Options{ServeExec: true}, func(e *testbed.Env) error {
		env = e
		_, err := e.CreateWindowsNodes(context.Background(), nodePrefix, nodeCount, windowsBuild)
		return err
	})
}

func TestPodIsScheduledToWindowsNodeAndBecomesReady(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	pod := createPod(t, windowsPod(ns, "sandbox"))

	pod = waitForPod(t, pod, "Ready with an IP", func(p *corev1.Pod) bool { return podstate.Ready(p) && p.Status.PodIP != "" })

	node := &corev1.Node{}
	if err := env.Client.Get(t.Context(), client.ObjectKey{Name: pod.Spec.NodeName}, node); err != nil {
		t.Fatalf("get node %q of pod: %v", pod.Spec.NodeName, err)
	}
	if got := node.Labels[corev1.LabelOSStable]; got != "windows" {
		t.Errorf("pod landed on node %s with %s=%q, want windows", node.Name, corev1.LabelOSStable, got)
	}
	if got := node.Labels[testbed.WindowsBuildLabel]; got != windowsBuild {
		t.Errorf("node %s has %s=%q, want %q", node.Name, testbed.WindowsBuildLabel, got, windowsBuild)
	}
	_, cidr, err := net.ParseCIDR(node.Spec.PodCIDR)
	if err != nil {
		t.Fatalf("node %s pod CIDR %q: %v", node.Name, node.Spec.PodCIDR, err)
	}
	if ip := net.ParseIP(pod.Status.PodIP); !cidr.Contains(ip) || len(pod.Status.PodIPs) != 1 {
		t.Errorf("pod IPs %v, want exactly one, inside node %s's pod CIDR %s", pod.Status.PodIPs, node.Name, cidr)
	}
	if pod.Status.Phase != corev1.PodRunning {
		t.Errorf("pod phase %s, want Running", pod.Status.Phase)
	}
}

func TestPodReadyDelayAnnotationDelaysReadiness(t *testing.T) {
	t.Parallel()
	const delay = 1500 * time.Millisecond
	ns := env.CreateNamespace(t)
	pod := windowsPod(ns, "slow-boot")
	pod.Annotations = map[string]string{testbed.PodReadyDelayAnnotation: strconv.FormatInt(delay.Milliseconds(), 10)}
	pod = createPod(t, pod)

	// Observe both moments from here, polling faster than the API's second-granular
	// condition timestamps could resolve.
	var scheduledAt, readyAt time.Time
	pod = waitForPod(t, pod, "Ready", func(p *corev1.Pod) bool {
		now := time.Now()
		if scheduledAt.IsZero() && p.Spec.NodeName != "" {
			scheduledAt = now
		}
		if podstate.Ready(p) {
			readyAt = now
			return true
		}
		return false
	}, 10*time.Millisecond)

	// The API's condition timestamps have whole seconds: a true gap of 1.5 s or more shows
	// as at least 1 s there, whatever the fractions were.
	scheduled, ready := podCondition(pod, corev1.PodScheduled), podCondition(pod, corev1.PodReady)
	if gap := ready.LastTransitionTime.Sub(scheduled.LastTransitionTime.Time); gap < time.Second {
		t.Errorf("Ready at %s, only %s after PodScheduled at %s; want at least %s",
			ready.LastTransitionTime, gap, scheduled.LastTransitionTime, delay)
	}
	// The polled moments are finer, but each is late by up to one request, hence the slack.
	if gap := readyAt.Sub(scheduledAt); gap < delay-250*time.Millisecond {
		t.Errorf("pod was seen Ready %s after it was seen scheduled, want about %s or more", gap, delay)
	}
}

func TestDeletingOwnerGarbageCollectsPod(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	owner := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "owner"}}
	if err := env.Client.Create(t.Context(), owner); err != nil {
		t.Fatalf("create owner ConfigMap: %v", err)
	}
	pod := windowsPod(ns, "owned")
	pod.OwnerReferences = []metav1.OwnerReference{{
		APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID,
	}}
	pod = createPod(t, pod)
	waitForPod(t, pod, "Ready", podstate.Ready)

	if err := env.Client.Delete(t.Context(), owner); err != nil {
		t.Fatalf("delete owner ConfigMap: %v", err)
	}
	waitForPodGone(t, pod)
}

func TestDeletedPodDisappears(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	pod := createPod(t, windowsPod(ns, "doomed"))
	waitForPod(t, pod, "Ready", podstate.Ready)

	// The default grace period (30 s) outlasts waitTimeout: the pod must go because kwok,
	// acting as the kubelet, confirms the deletion, not because the grace period expired.
	if err := env.Client.Delete(t.Context(), pod); err != nil {
		t.Fatalf("delete pod: %v", err)
	}
	waitForPodGone(t, pod)
}

func TestStopKillsEveryComponent(t *testing.T) {
	t.Parallel()
	e, err := testbed.Start(t.Context(), testbed.Options{})
	if err != nil {
		t.Fatalf("start second test bed: %v", err)
	}
	t.Cleanup(func() { _ = e.Stop() }) // in case the test fails before its own Stop
	t.Logf("second test bed started in %s", e.StartDuration)
	pids := e.PIDs()
	assertAllComponents(t, pids)
	for name, pid := range pids {
		if !processAlive(pid) {
			t.Errorf("%s (pid %d) is not running before Stop", name, pid)
		}
	}

	if err := e.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	for name, pid := range pids {
		if processAlive(pid) {
			t.Errorf("%s (pid %d) still runs after Stop", name, pid)
		}
	}
	if _, err := os.Stat(e.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("test bed directory %s still exists after Stop (stat: %v)", e.Dir, err)
	}
	if err := e.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// helperReport is what crashingHelper tells its parent test.
type helperReport struct {
	PIDs map[string]int `json:"pids"`
	Dir  string         `json:"dir"`
}

// crashingHelper runs in the child of TestKilledTestBinaryLeavesNoProcesses (Linux): it
// starts a test bed, reports its PIDs and directory on one line, and waits to be killed.
func crashingHelper() {
	e, err := testbed.Start(context.Background(), testbed.Options{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "helper: %v\n", err)
		os.Exit(1)
	}
	report, err := json.Marshal(helperReport{PIDs: e.PIDs(), Dir: e.Dir})
	if err != nil {
		fmt.Fprintf(os.Stderr, "helper: %v\n", err)
		_ = e.Stop()
		os.Exit(1)
	}
	fmt.Printf("%s%s\n", reportMarker, report)
	select {}
}

// assertAllComponents checks that PIDs names every component (etcd's and kube-apiserver's
// are only known on Linux).
func assertAllComponents(t *testing.T, pids map[string]int) {
	t.Helper()
	want := []string{"kube-controller-manager", "kube-scheduler", "kwok"}
	if runtime.GOOS == "linux" {
		want = append(want, "etcd", "kube-apiserver")
	}
	slices.Sort(want)
	var got []string
	for name := range pids {
		got = append(got, name)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("components with PIDs %v, want %v", got, want)
	}
}

// processAlive reports whether pid names a process that has not exited. A zombie (exited,
// not yet reaped by whoever inherited it) counts as exited.
func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	return !isZombie(pid)
}

// windowsPod is a pod for the simulated Windows nodes, as the operator will create them.
func windowsPod(namespace, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: corev1.PodSpec{
			NodeSelector:                 map[string]string{corev1.LabelOSStable: "windows"},
			Tolerations:                  []corev1.Toleration{testbed.WindowsToleration()},
			AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{{
				Name:  "sandbox",
				Image: "mcr.microsoft.com/windows/nanoserver:ltsc2022",
			}},
		},
	}
}

func createPod(t *testing.T, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	if err := env.Client.Create(t.Context(), pod); err != nil {
		t.Fatalf("create pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
	return pod
}

// waitForPod polls the pod until done returns true, and returns it; an optional interval
// overrides the default 50 ms.
func waitForPod(t *testing.T, pod *corev1.Pod, what string, done func(*corev1.Pod) bool, interval ...time.Duration) *corev1.Pod {
	t.Helper()
	every := 50 * time.Millisecond
	if len(interval) > 0 {
		every = interval[0]
	}
	current := &corev1.Pod{}
	err := wait.PollUntilContextTimeout(t.Context(), every, waitTimeout, true, func(ctx context.Context) (bool, error) {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(pod), current); err != nil {
			return false, err
		}
		return done(current), nil
	})
	if err != nil {
		t.Fatalf("pod %s/%s not %s: %v; last status: phase=%s node=%q conditions=%v",
			pod.Namespace, pod.Name, what, err, current.Status.Phase, current.Spec.NodeName, current.Status.Conditions)
	}
	return current
}

func waitForPodGone(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, waitTimeout, true, func(ctx context.Context) (bool, error) {
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(pod), &corev1.Pod{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
	if err != nil {
		t.Fatalf("pod %s/%s still exists: %v", pod.Namespace, pod.Name, err)
	}
}

// podCondition returns the pod's condition of that type, or an empty one.
func podCondition(p *corev1.Pod, typ corev1.PodConditionType) corev1.PodCondition {
	for _, c := range p.Status.Conditions {
		if c.Type == typ {
			return c
		}
	}
	return corev1.PodCondition{}
}
