//go:build !windows

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/runtimereport"
	"github.com/hyperpool/hyperpool/test/builders"
	"github.com/hyperpool/hyperpool/test/framework"
	"github.com/hyperpool/hyperpool/test/testbed"
)

// The doctor's tests. The in-process manager has no Deployment and no leader election, so
// each test "installs" what the checks read as the chart renders it: the manager's
// Deployment at replicas 0 (as make demo installs it, the manager running elsewhere), the
// admission policies and the user roles, and a fresh leader Lease standing for the manager
// that runs in-process. The shared release is hyperpool in hyperpool-system; a test that
// breaks a release renders one of its own, in a namespace of its own.

const (
	// doctorTimeout bounds one doctor run: --e2e opens a cold session and waits for its
	// pod to go, on a loaded 2-core machine.
	doctorTimeout = 3 * time.Minute
	// sharedRelease is the release the healthy and tenant tests see.
	sharedRelease, sharedManagerNamespace = "hyperpool", "hyperpool-system"
	// inForceTimeout bounds the wait for a new RoleBinding to take effect.
	inForceTimeout = 2 * testbed.WaitTimeout
)

// releaseTemplates are the chart's templates the doctor reads.
var releaseTemplates = []string{"templates/deployment.yaml", "templates/admission-policies.yaml",
	"templates/user-roles.yaml", "templates/agent-backend-role.yaml"}

var sharedInstall struct {
	once sync.Once
	err  error
}

// installSharedRelease installs the shared release once per package.
func installSharedRelease(t *testing.T) {
	t.Helper()
	sharedInstall.once.Do(func() {
		ctx := context.Background()
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: sharedManagerNamespace}}
		if err := env.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
			sharedInstall.err = err
			return
		}
		if _, err := installRelease(ctx, sharedRelease, sharedManagerNamespace); err != nil {
			sharedInstall.err = err
			return
		}
		sharedInstall.err = createLease(ctx, sharedManagerNamespace, time.Now(), time.Hour)
	})
	if sharedInstall.err != nil {
		t.Fatalf("installing the shared release: %v", sharedInstall.err)
	}
}

// installRelease renders the chart's templates the doctor reads as release in ns
// (replicas 0) and creates them; it returns the objects created.
func installRelease(ctx context.Context, release, ns string) ([]*unstructured.Unstructured, error) {
	flags := []string{"--set", "replicas=0"}
	for _, tpl := range releaseTemplates {
		flags = append(flags, "--show-only", tpl)
	}
	manifest, err := framework.RenderChart(env, release, ns, flags...)
	if err != nil {
		return nil, err
	}
	return framework.CreateManifest(ctx, env.Client, manifest)
}

// installOwnRelease installs a release of its own for a test that breaks it, in a new
// namespace, and deletes its cluster-scoped objects at the end. It returns the manager
// namespace and the release's fullname.
func installOwnRelease(t *testing.T) (string, string) {
	t.Helper()
	ns := env.CreateNamespace(t)
	// A fullname containing "hyperpool" is the release name itself.
	release := "hyperpool-" + ns[len(ns)-5:]
	objs, err := installRelease(t.Context(), release, ns)
	t.Cleanup(func() {
		for _, o := range objs {
			if o.GetNamespace() == "" {
				_ = env.Client.Delete(context.Background(), o)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return ns, release
}

// createLease writes the manager's leader Lease as held since renewed.
func createLease(ctx context.Context, ns string, renewed time.Time, duration time.Duration) error {
	return env.Client.Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: leaseName},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       ptr.To("in-process-test-manager"),
			LeaseDurationSeconds: ptr.To(int32(duration / time.Second)),
			RenewTime:            ptr.To(metav1.NewMicroTime(renewed)),
		},
	})
}

// runDoctor runs "kubectl agents ARGS..." with a timeout long enough for --e2e.
func runDoctor(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	return kubectlAgentsWithin(t, doctorTimeout, nil, args...)
}

// doctorJSON runs the doctor with -o json and returns its checks by name.
func doctorJSON(t *testing.T, args ...string) (map[string]checkResult, int) {
	t.Helper()
	out, errOut, code := runDoctor(t, append(args, "-o", "json")...)
	var results []checkResult
	if err := json.Unmarshal([]byte(out), &results); err != nil {
		t.Fatalf("doctor -o json: exit %d, %v\nstdout:\n%s\nstderr:\n%s", code, err, out, errOut)
	}
	byName := map[string]checkResult{}
	for _, r := range results {
		byName[r.Name] = r
	}
	return byName, code
}

// wantLine fails t unless out has a line starting with prefix and containing each part.
func wantLine(t *testing.T, out, prefix string, parts ...string) {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(l, prefix) {
			continue
		}
		for _, p := range parts {
			if !strings.Contains(l, p) {
				t.Errorf("line %q lacks %q", l, p)
			}
		}
		return
	}
	t.Errorf("no line starting with %q in:\n%s", prefix, out)
}

// waitClassCondition waits until the class's condition has the status.
func waitClassCondition(t *testing.T, ns, name, condition string, status metav1.ConditionStatus) {
	t.Helper()
	testbed.Eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		sb := &agentsv1alpha1.AgentSandbox{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, sb); err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(sb.Status.Conditions, condition)
		return c != nil && c.Status == status, fmt.Sprintf("class %s/%s condition %s: %+v, want %s", ns, name, condition, c, status)
	})
}

// A healthy setup, seen by a cluster admin: every check passes or does not apply (no node
// agent on the simulated nodes), exit 0.
func TestDoctorHealthySetupPasses(t *testing.T) {
	t.Parallel()
	installSharedRelease(t)
	ns := newClass(t, "win", 1)
	if err := env.Client.Create(t.Context(), builders.AgentQuota(ns, "quota").Sessions(2).Obj()); err != nil {
		t.Fatal(err)
	}
	waitClassCondition(t, ns, "win", agentsv1alpha1.SandboxReady, metav1.ConditionTrue)

	out, errOut, code := runDoctor(t, "doctor", "-n", ns)
	t.Logf("doctor -n %s:\n%s%s", ns, out, errOut)
	if code != 0 {
		t.Errorf("exit %d, want 0", code)
	}
	wantLine(t, out, "✓ API server:")
	wantLine(t, out, "✓ CRDs:", "installed")
	wantLine(t, out, "✓ manager:", "in-process-test-manager", "Deployment hyperpool-manager scaled to 0")
	wantLine(t, out, "✓ admission policies:", "hyperpool-agent-metadata", "hyperpool-egress", "hyperpool-sandbox-pods", "hyperpool-sandbox-template")
	wantLine(t, out, "✓ Windows nodes:", "10.0.20348")
	wantLine(t, out, "✓ RuntimeClasses:", "hyperv → handler runhcs-wcow-hypervisor")
	wantLine(t, out, "– node agents:", "no node agent reports")
	wantLine(t, out, "✓ sandbox classes:", "win (Ready 1/1 warm")
	wantLine(t, out, "✓ quota:", "sessions 0/2")
	wantLine(t, out, "✓ your rights:")
	wantLine(t, out, "✓ network policy:", "best effort", "win-egress")
	wantLine(t, out, "11 checks:", "0 failed")

	checks, code := doctorJSON(t, "doctor", "-n", ns, "--sandbox", "win")
	if code != 0 || len(checks) != len(doctorChecks) {
		t.Errorf("-o json: exit %d, %d checks; want 0, %d", code, len(checks), len(doctorChecks))
	}
	for name, c := range checks {
		if c.Status == checkFail {
			t.Errorf("-o json: check %s failed: %+v", name, c)
		}
	}
	if c := checks["node agents"]; c.Status != checkNA {
		t.Errorf("-o json: node agents %+v, want n/a", c)
	}

	// --sandbox naming a class that does not exist fails.
	out, _, code = runDoctor(t, "doctor", "-n", ns, "--sandbox", "nope")
	if code != 1 {
		t.Errorf("--sandbox nope: exit %d, want 1", code)
	}
	wantLine(t, out, "✗ sandbox classes:", "no AgentSandbox nope in namespace "+ns)
}

// A release whose policy binding was deleted: the policy is not in force; the check names
// the binding and the fix.
func TestDoctorMissingPolicyBindingFails(t *testing.T) {
	t.Parallel()
	managerNS, release := installOwnRelease(t)
	if err := createLease(t.Context(), managerNS, time.Now(), time.Hour); err != nil {
		t.Fatal(err)
	}
	ns := env.CreateNamespace(t)
	binding := &unstructured.Unstructured{}
	binding.SetAPIVersion("admissionregistration.k8s.io/v1")
	binding.SetKind("ValidatingAdmissionPolicyBinding")
	binding.SetName(release + "-egress")
	if err := env.Client.Delete(t.Context(), binding); err != nil {
		t.Fatalf("deleting the binding %s: %v", binding.GetName(), err)
	}

	out, errOut, code := runDoctor(t, "doctor", "-n", ns, "--manager-namespace", managerNS)
	t.Logf("doctor:\n%s%s", out, errOut)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	wantLine(t, out, "✗ admission policies:", "ValidatingAdmissionPolicyBinding of "+release+"-egress is missing")
	wantLine(t, out, "    fix: helm upgrade "+release+" charts/hyperpool -n "+managerNS)
	// The rest of the release is fine.
	wantLine(t, out, "✓ manager:", "Deployment "+release+"-manager scaled to 0")
}

// A manager whose lease ran out (it stopped, or hangs): the check fails, though its
// Deployment is there, and says what to do with a Deployment at 0.
func TestDoctorExpiredLeaseFails(t *testing.T) {
	t.Parallel()
	managerNS, release := installOwnRelease(t)
	if err := createLease(t.Context(), managerNS, time.Now().Add(-time.Hour), 15*time.Second); err != nil {
		t.Fatal(err)
	}
	ns := env.CreateNamespace(t)
	out, errOut, code := runDoctor(t, "doctor", "-n", ns, "--manager-namespace", managerNS)
	t.Logf("doctor:\n%s%s", out, errOut)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	wantLine(t, out, "✗ manager:", "no manager leads", "expired", "Deployment "+release+"-manager scaled to 0")
	wantLine(t, out, "    fix: kubectl -n "+managerNS+" describe deployment "+release+"-manager")
	wantLine(t, out, "✓ admission policies:", release+"-egress")
}

// A class whose RuntimeClass does not exist: the RuntimeClass check names it and its class,
// and the class check shows the manager's Degraded condition.
func TestDoctorMissingRuntimeClassFails(t *testing.T) {
	t.Parallel()
	installSharedRelease(t)
	ns := env.CreateNamespace(t)
	missing := "missing-" + ns[len(ns)-5:]
	sb := builders.AgentSandbox(ns, "win").Replicas(1).Obj()
	sb.Spec.RuntimeClassName = ptr.To(missing)
	if err := env.Client.Create(t.Context(), sb); err != nil {
		t.Fatal(err)
	}
	waitClassCondition(t, ns, "win", agentsv1alpha1.SandboxDegraded, metav1.ConditionTrue)

	out, errOut, code := runDoctor(t, "doctor", "-n", ns)
	t.Logf("doctor:\n%s%s", out, errOut)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	wantLine(t, out, "✗ RuntimeClasses:", "missing RuntimeClass "+missing+" (class win)")
	wantLine(t, out, "✗ sandbox classes:", "win: Degraded ("+agentsv1alpha1.ReasonRuntimeClassNotFound+")")
}

// A node agent's report of a handler that drops the VM sizing annotations: the check names
// the node and containerd's fix. Not parallel: the annotation is on a shared Node, and the
// healthy test wants no report on any (parallel tests run after the sequential ones). The
// handler is this test's own, so the manager's classes elsewhere do not use it.
func TestDoctorNodeReportOfDroppedAnnotationsFails(t *testing.T) {
	ctx := t.Context()
	ns := env.CreateNamespace(t)
	handler := "runhcs-doctor-" + ns[len(ns)-5:]
	rc := &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: handler}, Handler: handler}
	if err := env.Client.Create(ctx, rc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), rc) })
	sb := builders.AgentSandbox(ns, "win").Replicas(0).Obj()
	sb.Spec.RuntimeClassName = ptr.To(handler)
	if err := env.Client.Create(ctx, sb); err != nil {
		t.Fatal(err)
	}

	nodes := &corev1.NodeList{}
	if err := env.Client.List(ctx, nodes, client.MatchingLabels{corev1.LabelOSStable: "windows"}); err != nil || len(nodes.Items) == 0 {
		t.Fatalf("listing Windows nodes: %d, %v", len(nodes.Items), err)
	}
	node := nodes.Items[0].Name
	report := runtimereport.Format(runtimereport.Report{ConfigVersion: 3, Handlers: []runtimereport.HandlerReport{
		{Handler: handler, Registered: true, HyperV: true, PodAnnotations: false},
	}})
	annotate := func(ctx context.Context, value any) error {
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{runtimereport.Annotation: value}}})
		return env.Client.Patch(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, client.RawPatch(types.MergePatchType, patch))
	}
	if err := annotate(ctx, report); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := annotate(context.Background(), nil); err != nil {
			t.Errorf("removing the report from node %s: %v", node, err)
		}
	})

	checks, code := doctorJSON(t, "doctor", "-n", ns)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	c := checks["node agents"]
	t.Logf("node agents: %+v", c)
	wantFix := runtimereport.AnnotationsDropped.Fix(handler)
	if c.Status != checkFail || !strings.Contains(c.Detail, "handler "+handler+": AnnotationsDropped on node "+node) || !strings.Contains(c.Fix, wantFix) {
		t.Errorf("node agents: %+v; want a failure naming handler %s, node %s and the fix %q", c, handler, node, wantFix)
	}
}

// A tenant: with no RoleBinding the rights check fails naming create agentsessions and
// the chart's role to bind, and the cluster checks say why they do not apply; bound to the
// chart's agent-backend role, every check passes or does not apply.
func TestDoctorTenantRights(t *testing.T) {
	t.Parallel()
	installSharedRelease(t)
	ns := newClass(t, "win", 0)
	user := "tenant-" + ns
	as := []string{"--as", user, "--as-group", "system:authenticated"}

	out, errOut, code := runDoctor(t, append([]string{"doctor", "-n", ns}, as...)...)
	t.Logf("doctor as %s, no binding:\n%s%s", user, out, errOut)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	wantLine(t, out, "✗ your rights:", user+" may not create agentsessions", "create pods/exec")
	wantLine(t, out, "    fix:", "--clusterrole=hyperpool-agent-backend", "--user="+user)
	wantLine(t, out, "– Windows nodes:", "you may not list nodes; run as a cluster admin for this check")
	wantLine(t, out, "– sandbox classes:", "you may not list agentsandboxes")

	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user + "-agent-backend"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "hyperpool-agent-backend"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}
	if err := env.Client.Create(t.Context(), binding); err != nil {
		t.Fatal(err)
	}
	var checks map[string]checkResult
	testbed.Eventually(t, inForceTimeout, func(context.Context) (bool, string) {
		checks, code = doctorJSON(t, append([]string{"doctor", "-n", ns}, as...)...)
		return code == 0, fmt.Sprintf("doctor as %s bound to hyperpool-agent-backend: exit %d, %+v", user, code, checks)
	})
	if c := checks["your rights"]; c.Status != checkPass || !strings.Contains(c.Detail, "get secrets too") {
		t.Errorf("your rights: %+v; want pass, with get secrets", c)
	}
	if c := checks["sandbox classes"]; c.Status != checkPass {
		t.Errorf("sandbox classes as the tenant: %+v; want pass", c)
	}
	if c := checks["manager"]; c.Status != checkNA {
		t.Errorf("manager as the tenant: %+v; want n/a", c)
	}
}

// --e2e in simulation: a throwaway namespace, class and session; the commands run; the pod
// goes; everything is deleted.
func TestDoctorE2EInSimulation(t *testing.T) {
	t.Parallel()
	out, errOut, code := runDoctor(t, "doctor", "--e2e", "--timeout", "2m")
	t.Logf("doctor --e2e:\n%s%s", out, errOut)
	if code != 0 {
		t.Errorf("exit %d, want 0", code)
	}
	wantLine(t, out, "✓ e2e namespace:", "created hyperpool-e2e-")
	wantLine(t, out, "✓ e2e class:", "HyperV", "mcr.microsoft.com/windows/servercore:ltsc2022", "build 20348")
	wantLine(t, out, "✓ e2e session:", "Ready", "Cold start")
	wantLine(t, out, "✓ e2e uname -a:", "Linux", "--sandbox-os linux")
	wantLine(t, out, "✓ e2e sh -c echo ok:", "ok")
	wantLine(t, out, "– e2e VM size:", "no node agent")
	wantLine(t, out, "✓ e2e end:", "gone")
	wantLine(t, out, "✓ e2e cleanup:", "class doctor-e2e-", "namespace hyperpool-e2e-")

	// The namespace it created is gone, or going.
	var created string
	for _, f := range strings.Fields(out) {
		if strings.HasPrefix(f, "hyperpool-e2e-") {
			created = strings.TrimRight(f, ",()")
			break
		}
	}
	ns := &corev1.Namespace{}
	err := env.Client.Get(t.Context(), client.ObjectKey{Name: created}, ns)
	if err == nil && ns.DeletionTimestamp == nil {
		t.Errorf("namespace %s is still there, not being deleted", created)
	} else if err != nil && !apierrors.IsNotFound(err) {
		t.Error(err)
	}
}

// --e2e whose session cannot start (the class's RuntimeClass is missing): the session
// check fails with the class's reason, and the class and session are deleted.
func TestDoctorE2EFailsWhenTheSessionCannotStart(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	out, errOut, code := runDoctor(t, "doctor", "--e2e", "-n", ns, "--e2e-runtime-class", "missing", "--timeout", "15s", "-o", "json")
	var results []checkResult
	if err := json.Unmarshal([]byte(out), &results); err != nil {
		t.Fatalf("doctor --e2e -o json: exit %d, %v\n%s%s", code, err, out, errOut)
	}
	var buf bytes.Buffer
	printChecklist(&buf, results)
	t.Logf("doctor --e2e:\n%s", buf.String())
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	wantLine(t, buf.String(), "✗ e2e session:", "did not become Ready", agentsv1alpha1.ReasonRuntimeClassNotFound)
	wantLine(t, buf.String(), "– e2e commands:", "the session did not start")
	wantLine(t, buf.String(), "✓ e2e cleanup:", "class doctor-e2e-")
	testbed.Eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		classes := &agentsv1alpha1.AgentSandboxList{}
		if err := env.Client.List(ctx, classes, client.InNamespace(ns)); err != nil {
			return false, err.Error()
		}
		n := sessionCount(t, ns)
		return len(classes.Items) == 0 && n == 0, fmt.Sprintf("%d classes and %d sessions left in %s", len(classes.Items), n, ns)
	})
}

// --e2e against a hostile sandbox: its uname (first on PATH, so this test does not run in
// parallel) writes terminal escape sequences and a megabyte of output. The report keeps at
// most e2eMaxOutput bytes of each stream and says how much it dropped, and its lines carry
// no control character: the sandbox cannot rewrite what the terminal shows.
func TestDoctorE2EConfinesAHostileSandboxsOutput(t *testing.T) {
	bin := t.TempDir()
	mustWrite(t, filepath.Join(bin, "uname"), []byte("#!/bin/sh\n"+
		`printf '\033[2J\033[HLinux all-is-well\r\033[31mPWNED\033]0;title\007\n'`+"\n"+
		"head -c 1048576 /dev/zero | tr '\\0' x\n"))
	if err := os.Chmod(filepath.Join(bin, "uname"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))

	ns := env.CreateNamespace(t)
	out, errOut, code := runDoctor(t, "doctor", "--e2e", "-n", ns, "--timeout", "2m")
	t.Logf("doctor --e2e:\n%.2000s%s", out, errOut)
	if code != 0 {
		t.Errorf("exit %d, want 0", code)
	}
	wantLine(t, out, "✓ e2e uname -a:", "Linux all-is-well", "bytes more than the 64 KiB kept of each stream")
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if strings.ContainsFunc(l, unicode.IsControl) {
			t.Errorf("report line with a control character: %q", l)
		}
	}
	if len(out) > 16<<10 {
		t.Errorf("the report is %d bytes: the sandbox's output went into it", len(out))
	}
}
