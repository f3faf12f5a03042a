//go:build !windows

package helm_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/controllers"
	"github.com/hyperpool/hyperpool/test/builders"
)

// A real helm install, upgrade and uninstall. In between, the manager runs in-process with
// only the permissions the chart grants its ServiceAccount (impersonated), with leader
// election in the release namespace, and binds sessions end to end. Any request the API
// server refuses it fails the test: the chart's RBAC must be enough, not just almost, and
// the chart's admission policies, in force, must let the release's manager do its work.
func TestInstallUpgradeUninstall(t *testing.T) {
	ns := env.CreateNamespace(t)
	const release = "hp"
	fullname := release + "-hyperpool"
	serviceAccount := fullname + "-manager"
	ctx := context.Background()

	// The chart as a release ships it (make release), not the folder: a file missing from
	// the package, or a version the package does not carry, fails here.
	chart := packagedChart(t)
	out := string(run(t, nil, "helm", "install", release, chart, "--namespace", ns,
		"--set", "runtimeClasses.enabled=true", "--set", "metrics.serviceMonitor.enabled=false"))
	uninstalled := false
	t.Cleanup(func() {
		if !uninstalled {
			_, _ = runErr(t, nil, "helm", "uninstall", release, "--namespace", ns, "--wait=false")
		}
	})
	if !strings.Contains(out, "STATUS: deployed") || !strings.Contains(out, "kubectl get agents") {
		t.Errorf("helm install output lacks the deployed status or the NOTES' next steps:\n%s", out)
	}
	for _, obj := range []client.Object{
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: serviceAccount}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: fullname + "-manager"}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fullname + "-manager"}},
		&nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "hyperv"}},
		&nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "process"}},
		&admissionregistrationv1.ValidatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: fullname + "-agent-metadata"}},
		&admissionregistrationv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: fullname + "-egress"}},
	} {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			t.Fatalf("after helm install: %T %s: %v", obj, obj.GetName(), err)
		}
	}

	if _, err := env.CreateWindowsNodes(ctx, "helm-win2022", 2, "10.0.20348"); err != nil {
		t.Fatal(err)
	}
	forbidden := startManager(t, ns, serviceAccount)

	create(t, builders.AgentSandbox(ns, "pool").Replicas(1).Obj())
	first := waitSessionReady(t, ns, "first")

	// Upgrade: change values; the release's objects follow, the manager keeps working.
	out = string(run(t, nil, "helm", "upgrade", release, chart, "--namespace", ns, "--reuse-values",
		"--set", "replicas=3", "--set", "manager.warmPodReadyTimeout=5m"))
	if !strings.Contains(out, "REVISION: 2") {
		t.Errorf("helm upgrade output lacks revision 2:\n%s", out)
	}
	dep := &appsv1.Deployment{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: fullname + "-manager"}, dep); err != nil {
		t.Fatal(err)
	}
	if *dep.Spec.Replicas != 3 || !slices.Contains(dep.Spec.Template.Spec.Containers[0].Args, "--warm-pod-ready-timeout=5m") {
		t.Errorf("after the upgrade: replicas %d, args %v", *dep.Spec.Replicas, dep.Spec.Template.Spec.Containers[0].Args)
	}
	second := waitSessionReady(t, ns, "second")
	if first.Status.PodName == second.Status.PodName {
		t.Errorf("two sessions share pod %s", first.Status.PodName)
	}

	forbidden.stopManager(t)
	if refused := forbidden.list(); len(refused) > 0 {
		t.Errorf("the API server refused the manager (running as %s) %d requests; the chart's RBAC lacks:\n  %s",
			serviceAccount, len(refused), strings.Join(refused, "\n  "))
	}

	run(t, nil, "helm", "uninstall", release, "--namespace", ns)
	uninstalled = true
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		for _, obj := range []client.Object{
			&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: fullname + "-manager"}},
			&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: fullname + "-manager"}},
			&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fullname + "-manager"}},
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: serviceAccount}},
			&nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "hyperv"}},
			&admissionregistrationv1.ValidatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: fullname + "-agent-metadata"}},
			&admissionregistrationv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: fullname + "-egress"}},
		} {
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj); !apierrors.IsNotFound(err) {
				return false, fmt.Sprintf("%T %s still there after helm uninstall (err %v)", obj, obj.GetName(), err)
			}
		}
		return true, ""
	})
	// Helm keeps CRDs, and with them the users' objects.
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "pool"}, &agentsv1alpha1.AgentSandbox{}); err != nil {
		t.Errorf("AgentSandbox gone after helm uninstall: %v", err)
	}
}

// managerRun is a manager started by startManager, and the requests the API server refused it.
type managerRun struct {
	cancel context.CancelFunc
	done   chan error

	mu      sync.Mutex
	refused []string
}

// packagedChart packages the chart as `make release` does (hack/release chart runs the
// bundle's helm package) and returns the archive.
func packagedChart(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// make test-programs' flags: hack/release's packages are compiled already.
	cmd := exec.CommandContext(ctx, "go", "run", "-trimpath", "./hack/release", "chart", "-out", dir, "-helm", tool(t, "helm"))
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Dir = env.RepoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go run ./hack/release chart: %v\n%s", err, out)
	}
	archives, err := filepath.Glob(filepath.Join(dir, "hyperpool-*.tgz"))
	if err != nil || len(archives) != 1 {
		t.Fatalf("hack/release chart wrote %v (%v), want one hyperpool-VERSION.tgz", archives, err)
	}
	return archives[0]
}

func (r *managerRun) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.refused)
}

func (r *managerRun) stopManager(t testing.TB) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("manager: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("manager did not stop within 30s")
	}
}

// startManager runs the hyperpool controllers in-process as the chart's ServiceAccount,
// with leader election on in the release namespace, and waits until it leads.
func startManager(t *testing.T, ns, serviceAccount string) *managerRun {
	t.Helper()
	r := &managerRun{done: make(chan error, 1)}
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":" + serviceAccount}
	cfg.QPS, cfg.Burst = 200, 400
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
			resp, err := rt.RoundTrip(req)
			if err == nil && (resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusUnauthorized) {
				r.mu.Lock()
				r.refused = append(r.refused, fmt.Sprintf("%d %s %s", resp.StatusCode, req.Method, req.URL.RequestURI()))
				r.mu.Unlock()
			}
			return resp, err
		})
	})

	level := zapcore.DPanicLevel // quiet unless HYPERPOOL_TEST_VERBOSE is set
	if os.Getenv("HYPERPOOL_TEST_VERBOSE") != "" {
		level = zapcore.DebugLevel
	}
	ctrl.SetLogger(zap.New(zap.Level(level)))
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        env.Scheme,
		Metrics:                       metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:        "0",
		LeaderElection:                true,
		LeaderElectionID:              "hyperpool-manager.agents.hyperpool.io",
		LeaderElectionNamespace:       ns,
		LeaderElectionReleaseOnCancel: true,
		Cache:                         controllers.CacheOptions(),
		Controller:                    config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	mcfg := controllers.DefaultConfig()
	mcfg.WarmPodReadyTimeout = 10 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	if err := controllers.SetupWithManager(ctx, mgr, mcfg); err != nil {
		cancel()
		t.Fatal(err)
	}
	r.cancel = cancel
	go func() { r.done <- mgr.Start(ctx) }()
	t.Cleanup(func() { r.stopManager(t) })

	select {
	case <-mgr.Elected():
	case err := <-r.done:
		t.Fatalf("manager stopped before it was elected: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatalf("manager not elected within 20s; refused requests: %v", r.list())
	}
	return r
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

func create(t testing.TB, obj client.Object) {
	t.Helper()
	if err := env.Client.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

// waitSessionReady creates a session of the class "pool" and waits until it is Ready with a
// pod that exists and is bound to it.
func waitSessionReady(t *testing.T, ns, name string) *agentsv1alpha1.AgentSession {
	t.Helper()
	create(t, builders.AgentSession(ns, name, "pool").Obj())
	s := &agentsv1alpha1.AgentSession{}
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
			return false, err.Error()
		}
		return s.Status.Phase == agentsv1alpha1.SessionReady && s.Status.PodName != "",
			fmt.Sprintf("session %s: phase %q, pod %q, conditions %+v", name, s.Status.Phase, s.Status.PodName, s.Status.Conditions)
	})
	pod := &corev1.Pod{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: s.Status.PodName}, pod); err != nil {
		t.Fatalf("session %s's pod %s: %v", name, s.Status.PodName, err)
	}
	if owner := metav1.GetControllerOf(pod); owner == nil || owner.UID != s.UID || pod.Spec.NodeName == "" {
		t.Errorf("pod %s: controller %+v, node %q; want the session %s, on a node", pod.Name, owner, pod.Spec.NodeName, name)
	}
	return s
}
