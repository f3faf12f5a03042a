//go:build !windows

package attack

// A sandbox pod is the manager's alone (config/policy/agent-metadata.yaml and
// config/policy/sandbox-pods.yaml). A tenant with session-user and edit, impersonated,
// cannot resize a pod's VM through its annotations, forge what the manager recorded on it,
// change its spec, hand it to a controller of its own, or delete it with a grace period
// longer than its class's; and the manager's own path (create, bind, delete) still works.

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/builders"
)

const (
	vmMemoryAnnotation    = "io.microsoft.virtualmachine.computetopology.memory.sizeinmb"
	vmProcessorAnnotation = "io.microsoft.virtualmachine.computetopology.processor.count"
)

// sandboxPodsOf starts a class of two warm pods in ns and binds one session, s1, made by
// the tenant c. It returns the session, its bound pod and the other, warm, pod.
func sandboxPodsOf(t *testing.T, c client.Client, ns string) (*agentsv1alpha1.AgentSession, *corev1.Pod, *corev1.Pod) {
	t.Helper()
	mustCreate(t, admin, builders.AgentSandbox(ns, "pool").Replicas(2).Obj())
	mustCreate(t, c, builders.AgentSession(ns, "s1", "pool").Obj())
	s := waitSession(t, ns, "s1", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
	bound := getPod(t, ns, s.Status.PodName)
	var warm *corev1.Pod
	eventually(t, waitTimeout, func(context.Context) (bool, string) {
		for _, p := range sandboxPods(t, ns, "pool") {
			if _, taken := p.Labels[agentsv1alpha1.SessionLabel]; !taken {
				warm = &p
				return true, ""
			}
		}
		return false, "no warm pod of pool"
	})
	return s, bound, warm
}

func mergePatch(p string) client.Patch { return client.RawPatch(types.MergePatchType, []byte(p)) }

func jsonPatch(p string) client.Patch { return client.RawPatch(types.JSONPatchType, []byte(p)) }

// The attack: stripping the VM sizing annotations from a bound pod made the quota
// count nothing for it while its VM kept its size.
func TestPolicyTenantCannotResizeSandboxVMByAnnotations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := env.CreateNamespace(t)
	c := policyTenant(t, ns)
	_, bound, warm := sandboxPodsOf(t, c, ns)
	if bound.Annotations[vmMemoryAnnotation] == "" || bound.Annotations[vmProcessorAnnotation] == "" {
		t.Fatalf("bound pod lacks the VM sizing annotations: %v", bound.Annotations)
	}
	cases := []struct {
		name, patch, key string
		pod              *corev1.Pod
	}{
		{"strip the memory size of a bound pod", `{"metadata":{"annotations":{"` + vmMemoryAnnotation + `":null}}}`, vmMemoryAnnotation, bound},
		{"strip the processor count of a bound pod", `{"metadata":{"annotations":{"` + vmProcessorAnnotation + `":null}}}`, vmProcessorAnnotation, bound},
		{"shrink the memory size of a bound pod", `{"metadata":{"annotations":{"` + vmMemoryAnnotation + `":"1"}}}`, vmMemoryAnnotation, bound},
		{"grow the memory size of a warm pod", `{"metadata":{"annotations":{"` + vmMemoryAnnotation + `":"65536"}}}`, vmMemoryAnnotation, warm},
		{"add a VM annotation to a warm pod", `{"metadata":{"annotations":{"io.microsoft.virtualmachine.computetopology.processor.limit":"100000"}}}`,
			"io.microsoft.virtualmachine.computetopology.processor.limit", warm},
		{"forge what the manager recorded", `{"metadata":{"annotations":{"agents.hyperpool.io/footprint":"forged"}}}`, "agents.hyperpool.io/footprint", bound},
		{"add an agents.hyperpool.io annotation", `{"metadata":{"annotations":{"agents.hyperpool.io/anything":"x"}}}`, "agents.hyperpool.io/anything", warm},
	}
	// Whatever the manager records under agents.hyperpool.io/, the tenant cannot remove it.
	for k := range bound.Annotations {
		if strings.HasPrefix(k, "agents.hyperpool.io/") {
			cases = append(cases, struct {
				name, patch, key string
				pod              *corev1.Pod
			}{"remove " + k, fmt.Sprintf(`{"metadata":{"annotations":{%q:null}}}`, k), k, bound})
		}
	}
	for _, tc := range cases {
		err := c.Patch(ctx, tc.pod.DeepCopy(), mergePatch(tc.patch))
		wantRefused(t, tc.name, err, "metadata.annotations["+tc.key+"]", "only the hyperpool manager", "sandbox pod")
	}
	if got := getPod(t, ns, bound.Name); got.Annotations[vmMemoryAnnotation] != bound.Annotations[vmMemoryAnnotation] ||
		got.Annotations[vmProcessorAnnotation] != bound.Annotations[vmProcessorAnnotation] {
		t.Errorf("bound pod's sizing after the attacks: %v, want %v", got.Annotations, bound.Annotations)
	}

	// The policy is that narrow: other annotations of a sandbox pod, and the tenant's own
	// pods, are the tenant's business (a Hyper-V pod of its own is issue 11's, the chart's
	// optional runtimeClassGuard).
	if err := c.Patch(ctx, bound.DeepCopy(), mergePatch(`{"metadata":{"annotations":{"example.com/note":"mine"}}}`)); err != nil {
		t.Errorf("tenant annotating a sandbox pod with its own key: %v", err)
	}
	own := plainPod(ns, "own", nil)
	own.Annotations = map[string]string{vmMemoryAnnotation: "2048"}
	if err := c.Create(ctx, own, client.DryRunAll); err != nil {
		t.Errorf("tenant creating its own pod with a VM annotation: %v", err)
	}
}

// The attack: a JSON patch of a warm pod's image was accepted, and that very pod
// was handed to the next session.
func TestPolicyTenantCannotChangeSandboxPodSpec(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := env.CreateNamespace(t)
	c := policyTenant(t, ns)
	_, bound, warm := sandboxPodsOf(t, c, ns)
	container := warm.Spec.Containers[0].Name

	for _, tc := range []struct {
		name  string
		pod   *corev1.Pod
		patch client.Patch
		field string
	}{
		{"JSON patch of a warm pod's image", warm, jsonPatch(`[{"op":"replace","path":"/spec/containers/0/image","value":"example.com/evil:1"}]`), "spec.containers"},
		{"set image on a bound pod (strategic merge)", bound, client.RawPatch(types.StrategicMergePatchType,
			[]byte(fmt.Sprintf(`{"spec":{"containers":[{"name":%q,"image":"example.com/evil:1"}]}}`, container))), "spec.containers"},
		{"an active deadline on a warm pod", warm, mergePatch(`{"spec":{"activeDeadlineSeconds":5}}`), "spec.activeDeadlineSeconds"},
		{"a toleration on a warm pod", warm, jsonPatch(`[{"op":"add","path":"/spec/tolerations/-","value":{"key":"example.com/any","operator":"Exists"}}]`),
			"spec.tolerations"},
	} {
		wantRefused(t, tc.name, c.Patch(ctx, tc.pod.DeepCopy(), tc.patch), tc.field, "only the hyperpool manager may change a sandbox pod's spec")
	}

	// edit does not grant pods/ephemeralcontainers or pods/resize (Kubernetes 1.37), but a
	// platform that lets tenants `kubectl debug` does: the policy holds there too.
	grantPodSubresources(t, ns, "tenant-"+ns, "ephemeralcontainers", "resize")
	debug := getPod(t, ns, warm.Name)
	debug.Spec.EphemeralContainers = append(debug.Spec.EphemeralContainers, corev1.EphemeralContainer{
		EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debugger", Image: "example.com/evil:1"}})
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		err := c.SubResource("ephemeralcontainers").Update(ctx, debug.DeepCopy())
		return err == nil || !strings.Contains(err.Error(), "cannot update resource"), fmt.Sprintf("RBAC for pods/ephemeralcontainers not in force: %v", err)
	})
	wantRefused(t, "an ephemeral container in a warm pod", c.SubResource("ephemeralcontainers").Update(ctx, debug.DeepCopy()),
		"spec.ephemeralContainers", "only the hyperpool manager may change a sandbox pod's spec")
	resize := mergePatch(fmt.Sprintf(`{"spec":{"containers":[{"name":%q,"resources":{"limits":{"memory":"64Gi"},"requests":{"memory":"64Gi"}}}]}}`, container))
	err := c.SubResource("resize").Patch(ctx, bound.DeepCopy(), resize)
	if err == nil {
		t.Errorf("resize of a bound pod: accepted, want refused")
	} else if strings.Contains(err.Error(), "ValidatingAdmissionPolicy") {
		wantRefused(t, "resize of a bound pod", err, "spec.containers", "only the hyperpool manager may change a sandbox pod's spec")
	} else {
		t.Logf("resize of a bound pod refused before admission, by the pod's validation: %v", err)
	}

	for _, p := range []*corev1.Pod{bound, warm} {
		got := getPod(t, ns, p.Name)
		if got.Spec.Containers[0].Image != p.Spec.Containers[0].Image || len(got.Spec.EphemeralContainers) > 0 ||
			got.Spec.ActiveDeadlineSeconds != nil || len(got.Spec.Tolerations) != len(p.Spec.Tolerations) {
			t.Errorf("pod %s's spec after the attacks: %+v", p.Name, got.Spec)
		}
	}

	// Status is another resource (pods/status): a kubelet-like identity, neither manager nor
	// exempt, still reports on a sandbox pod.
	kubelet := "kubelet-like-" + ns
	grantPodSubresources(t, ns, kubelet, "status")
	sw := impersonate(t, rest.ImpersonationConfig{UserName: kubelet, Groups: []string{"system:authenticated"}}, nil)
	condition := `{"status":{"conditions":[{"type":"example.com/Probed","status":"True"}]}}`
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		err := sw.Status().Patch(ctx, bound.DeepCopy(), client.RawPatch(types.StrategicMergePatchType, []byte(condition)))
		return err == nil, fmt.Sprintf("a status write on a sandbox pod: %v", err)
	})

	// The manager's path still works, and metadata edits that leave the spec alone pass:
	// the warm pod binds the next session, as its class made it.
	if err := c.Patch(ctx, warm.DeepCopy(), mergePatch(`{"metadata":{"labels":{"team":"blue"}}}`)); err != nil {
		t.Errorf("tenant labelling a warm pod: %v", err)
	}
	mustCreate(t, c, builders.AgentSession(ns, "s2", "pool").Obj())
	s2 := waitSession(t, ns, "s2", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
	if got := getPod(t, ns, s2.Status.PodName); got.Spec.Containers[0].Image != builders.DefaultImage {
		t.Errorf("session s2 bound pod %s with image %s", got.Name, got.Spec.Containers[0].Image)
	}
}

// The attack: a delete of a bound pod with a grace period of one year was accepted
// (dry run): its VM would outlive the session's deadline by that much.
func TestPolicyTenantCannotDeleteSandboxPodWithLongerGrace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := env.CreateNamespace(t)
	c := policyTenant(t, ns)
	s, bound, warm := sandboxPodsOf(t, c, ns)
	own := ptr.Deref(bound.Spec.TerminationGracePeriodSeconds, 30)
	const year = int64(365 * 24 * 3600)
	want := []string{"gracePeriodSeconds", "spec.terminationGracePeriodSeconds " + fmt.Sprint(own), "only the hyperpool manager"}

	wantRefused(t, "a one-year grace on a bound pod (dry run)", c.Delete(ctx, bound.DeepCopy(), client.GracePeriodSeconds(year), client.DryRunAll),
		append(want, fmt.Sprintf("gracePeriodSeconds %d", year))...)
	wantRefused(t, "a one-year grace on a bound pod", c.Delete(ctx, bound.DeepCopy(), client.GracePeriodSeconds(year)), want...)
	wantRefused(t, "one second more than the class's on a warm pod", c.Delete(ctx, warm.DeepCopy(), client.GracePeriodSeconds(own+1)), want...)
	wantRefused(t, "a one-year grace on every sandbox pod", c.DeleteAllOf(ctx, &corev1.Pod{}, client.InNamespace(ns),
		client.MatchingLabels{agentsv1alpha1.ClassLabel: "pool"}, client.GracePeriodSeconds(year)), "gracePeriodSeconds", "only the hyperpool manager")
	for _, p := range []*corev1.Pod{bound, warm} {
		if got := getPod(t, ns, p.Name); got.DeletionTimestamp != nil {
			t.Errorf("pod %s is terminating after the refused deletes (grace %v)", p.Name, ptr.Deref(got.DeletionGracePeriodSeconds, -1))
		}
	}

	// A delete with the pod's own grace, or none, is the tenant's to make: the pool replaces
	// a deleted warm pod.
	if err := c.Delete(ctx, bound.DeepCopy(), client.GracePeriodSeconds(own), client.DryRunAll); err != nil {
		t.Errorf("tenant deleting a bound pod with its own grace (dry run): %v", err)
	}
	if err := c.Delete(ctx, warm.DeepCopy()); err != nil {
		t.Errorf("tenant deleting a warm pod without a grace period: %v", err)
	}
	// The manager deletes with the class's grace when the session ends.
	if err := c.Delete(ctx, s.DeepCopy()); err != nil {
		t.Fatalf("tenant deleting its session: %v", err)
	}
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		got := &corev1.Pod{}
		err := admin.Get(ctx, client.ObjectKeyFromObject(bound), got)
		return err != nil || got.DeletionTimestamp != nil, fmt.Sprintf("the manager has not deleted bound pod %s: %v", bound.Name, err)
	})
}

// The attack: a foreign controller reference on an orphaned session pod made the
// manager skip destroying it. No reference of another kind may be added to a sandbox pod,
// controller or not.
func TestPolicyTenantCannotAddForeignOwnerToSandboxPod(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := env.CreateNamespace(t)
	c := policyTenant(t, ns)
	s, bound, warm := sandboxPodsOf(t, c, ns)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "owner"}}
	mustCreate(t, c, cm)

	// Orphan the session's pod: the tenant orphan-deletes its session and the garbage
	// collector strips the session's reference. A finalizer (set up as admin) keeps the pod
	// for the attack however soon the manager deletes it.
	keepPod(t, bound)
	if err := c.Delete(ctx, s.DeepCopy(), client.PropagationPolicy(metav1.DeletePropagationOrphan)); err != nil {
		t.Fatalf("tenant orphan-deleting its session: %v", err)
	}
	orphan := &corev1.Pod{}
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		if err := admin.Get(ctx, client.ObjectKeyFromObject(bound), orphan); err != nil {
			return false, err.Error()
		}
		return metav1.GetControllerOf(orphan) == nil, fmt.Sprintf("pod %s still has its controller %+v", bound.Name, orphan.OwnerReferences)
	})

	addOwner := func(apiVersion, kind, name, uid string, controller bool) client.Patch {
		return jsonPatch(fmt.Sprintf(`[{"op":"add","path":"/metadata/ownerReferences","value":[]},`+
			`{"op":"add","path":"/metadata/ownerReferences/-","value":{"apiVersion":%q,"kind":%q,"name":%q,"uid":%q,"controller":%t}}]`,
			apiVersion, kind, name, uid, controller))
	}
	addOwnerKeeping := func(apiVersion, kind, name, uid string, controller bool) client.Patch {
		return jsonPatch(fmt.Sprintf(`[{"op":"add","path":"/metadata/ownerReferences/-","value":{"apiVersion":%q,"kind":%q,"name":%q,"uid":%q,"controller":%t}}]`,
			apiVersion, kind, name, uid, controller))
	}
	orphanPatch := addOwnerKeeping
	if len(orphan.OwnerReferences) == 0 {
		orphanPatch = addOwner
	}
	for _, tc := range []struct {
		name  string
		pod   *corev1.Pod
		patch client.Patch
		owner string
	}{
		{"a ConfigMap as controller of an orphaned session pod", orphan, orphanPatch("v1", "ConfigMap", cm.Name, string(cm.UID), true), "ConfigMap owner"},
		{"a Deployment as an owner of a warm pod", warm, addOwnerKeeping("apps/v1", "Deployment", "web", "00000000-0000-0000-0000-0000000000d1", false), "Deployment web"},
		{"a ConfigMap as an owner of a warm pod", warm, addOwnerKeeping("v1", "ConfigMap", cm.Name, string(cm.UID), false), "ConfigMap owner"},
	} {
		wantRefused(t, tc.name, c.Patch(ctx, tc.pod.DeepCopy(), tc.patch), "metadata.ownerReferences", "only the hyperpool manager", tc.owner)
	}
	for _, p := range []*corev1.Pod{orphan, warm} {
		if got := getPod(t, ns, p.Name); len(got.OwnerReferences) != len(p.OwnerReferences) {
			t.Errorf("pod %s's owners after the attacks: %+v", p.Name, got.OwnerReferences)
		}
	}
	// The tenant's own pods may have owners of its choosing.
	own := plainPod(ns, "own", nil)
	own.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: cm.Name, UID: cm.UID, Controller: ptr.To(true)}}
	if err := c.Create(ctx, own, client.DryRunAll); err != nil {
		t.Errorf("tenant creating its own pod owned by its ConfigMap: %v", err)
	}
}

// keepPod puts a finalizer of the test's on the pod (as admin, setup) and removes it when
// the test ends, so that the pod outlives a delete for as long as the test needs it.
func keepPod(t testing.TB, pod *corev1.Pod) {
	t.Helper()
	const hold = "hyperpool.io/test-hold"
	ctx := context.Background()
	if err := admin.Patch(ctx, pod.DeepCopy(), jsonPatch(`[{"op":"add","path":"/metadata/finalizers","value":["`+hold+`"]}]`)); err != nil {
		t.Fatalf("holding pod %s: %v", pod.Name, err)
	}
	t.Cleanup(func() {
		_ = admin.Patch(context.Background(), pod.DeepCopy(), mergePatch(`{"metadata":{"finalizers":null}}`))
	})
}

// grantPodSubresources lets user patch and update the given pod subresources in ns (what a
// platform adds for `kubectl debug`), and get pods.
func grantPodSubresources(t testing.TB, ns, user string, subresources ...string) {
	t.Helper()
	var resources []string
	for _, s := range subresources {
		resources = append(resources, "pods/"+s)
	}
	ctx := context.Background()
	name := user + "-pod-subresources"
	if err := admin.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: resources, Verbs: []string{"get", "patch", "update"}}}}); err != nil {
		t.Fatal(err)
	}
	if err := admin.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}}); err != nil {
		t.Fatal(err)
	}
}

// A tenant may fill a sandbox pod's annotations with keys of its own (the API allows 256
// KiB): the policies must still decide within their CEL cost budget, refusing a forged VM
// size by its rule (not by a cost error) and letting a kubelet-like status write through.
// 20,000 keys (about 160 KB) keep the test quick; 40,000 (about 240 KB) held too, by hand.
func TestPolicySandboxPodWithHugeAnnotationsStillDecided(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := env.CreateNamespace(t)
	c := policyTenant(t, ns)
	_, bound, _ := sandboxPodsOf(t, c, ns)

	var b strings.Builder
	b.WriteString(`{"metadata":{"annotations":{`)
	for i := range 20000 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"k%05d":""`, i)
	}
	b.WriteString(`}}}`)
	if err := c.Patch(ctx, bound.DeepCopy(), mergePatch(b.String())); err != nil {
		t.Fatalf("tenant adding 20,000 annotations of its own to a sandbox pod: %v", err)
	}
	wantRefused(t, "strip the memory size of the bloated pod", c.Patch(ctx, bound.DeepCopy(),
		mergePatch(`{"metadata":{"annotations":{"`+vmMemoryAnnotation+`":null}}}`)),
		"metadata.annotations["+vmMemoryAnnotation+"]", "only the hyperpool manager")

	kubelet := "kubelet-like-" + ns
	grantPodSubresources(t, ns, kubelet, "status")
	sw := impersonate(t, rest.ImpersonationConfig{UserName: kubelet, Groups: []string{"system:authenticated"}}, nil)
	condition := `{"status":{"conditions":[{"type":"example.com/Probed","status":"True"}]}}`
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		err := sw.Status().Patch(ctx, bound.DeepCopy(), client.RawPatch(types.StrategicMergePatchType, []byte(condition)))
		return err == nil, fmt.Sprintf("a status write on the bloated sandbox pod: %v", err)
	})
}
