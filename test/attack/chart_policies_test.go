//go:build !windows

package attack

// The chart's optional admission policies (charts/hyperpool/templates/
// admission-policies-optional.yaml, off by default), rendered by helm for release hyperpool
// in the manager's namespace and installed as they are, except that each binding selects
// only the namespaces labelled guardLabel (the values' namespaceSelector), so the other
// tests of this package see none of them.

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/builders"
	"github.com/hyperpool/hyperpool/test/framework"
)

// guardLabel marks the namespaces the optional policies apply to in these tests.
const guardLabel = "hyperpool.io/chart-guards"

// cniPolicyKinds are the CNI-native policy kinds the chart's values list (minimal CRDs of
// their group and resource stand in for the CNIs' own).
var cniPolicyKinds = []struct {
	group, version, kind, resource string
}{
	{"crd.antrea.io", "v1beta1", "NetworkPolicy", "networkpolicies"},
	{"projectcalico.org", "v3", "NetworkPolicy", "networkpolicies"},
	{"crd.projectcalico.org", "v1", "NetworkPolicy", "networkpolicies"},
	{"cilium.io", "v2", "CiliumNetworkPolicy", "ciliumnetworkpolicies"},
}

// A tenant with edit, and the CNI's own grant on its policy kind (Antrea aggregates its
// networkpolicies into edit), cannot write a policy of a guarded CNI-native kind: its rules
// would widen a sandbox's egress past the class's spec.egress.
func TestChartPolicyTenantCannotWriteCNINativePolicies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	installChartOptionalPolicies(t)
	ns := guardedNamespace(t)
	c := policyTenant(t, ns)
	grantCNIPolicies(t, ns, "tenant-"+ns)
	probe := cniPolicyKinds[0]
	waitRefusedBy(t, "hyperpool-cni-policies", func(ctx context.Context) error {
		gvk := schema.GroupVersionKind{Group: probe.group, Version: probe.version, Kind: probe.kind}
		return c.Create(ctx, cniPolicy(gvk, ns, "probe", map[string]any{}), client.DryRunAll)
	})

	for _, k := range cniPolicyKinds {
		gvk := schema.GroupVersionKind{Group: k.group, Version: k.version, Kind: k.kind}
		// An allow-all egress policy for every pod of the namespace, sandboxes included.
		allowAll := cniPolicy(gvk, ns, "allow-all", map[string]any{"egress": []any{map[string]any{"action": "Allow"}}})
		wantRefused(t, k.group+"/"+k.resource+": create", c.Create(ctx, allowAll),
			"spec: only the hyperpool manager and the platform team may create or change a "+k.kind,
			k.resource+"."+k.group, "widen a sandbox's egress", "agents.hyperpool.io/sandbox")
		wantRefused(t, k.group+"/"+k.resource+": create (dry run)", c.Create(ctx, allowAll.DeepCopy(), client.DryRunAll), "only the hyperpool manager")

		// One the platform team wrote: the tenant may not change its spec; metadata and
		// deletes pass (the garbage collector's and finalizers' updates are metadata).
		platform := cniPolicy(gvk, ns, "platform", map[string]any{"egress": []any{map[string]any{"action": "Deny"}}})
		mustCreate(t, admin, platform)
		widened := platform.DeepCopy()
		_ = unstructured.SetNestedSlice(widened.Object, []any{map[string]any{"action": "Allow"}}, "spec", "egress")
		wantRefused(t, k.group+"/"+k.resource+": widen the platform's", c.Update(ctx, widened), "only the hyperpool manager", k.kind)
		if err := c.Patch(ctx, platform.DeepCopy(), mergePatch(`{"metadata":{"labels":{"team":"blue"}}}`)); err != nil {
			t.Errorf("%s/%s: a label on the platform's policy: %v", k.group, k.resource, err)
		}
		if err := c.Delete(ctx, platform.DeepCopy()); err != nil {
			t.Errorf("%s/%s: deleting a policy: %v", k.group, k.resource, err)
		}
	}

	// The binding's namespaceSelector scopes the guard: elsewhere the kinds are the tenant's.
	other := env.CreateNamespace(t)
	oc := tenant(t, other, "edit")
	grantCNIPolicies(t, other, "tenant-"+other)
	k := cniPolicyKinds[0]
	pol := cniPolicy(schema.GroupVersionKind{Group: k.group, Version: k.version, Kind: k.kind}, other, "allow-all", map[string]any{})
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		err := oc.Create(ctx, pol.DeepCopy(), client.DryRunAll)
		return err == nil, fmt.Sprintf("%s in an unguarded namespace: %v", k.kind, err)
	})
}

// A pod with hyperpool's Hyper-V RuntimeClass, made by the tenant itself, would run a VM
// outside hyperpool's quota: with runtimeClassGuard only the manager makes such pods.
func TestChartPolicyTenantCannotCreateHyperVPods(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	installChartOptionalPolicies(t)
	ns := guardedNamespace(t)
	c := policyTenant(t, ns)
	waitRefusedBy(t, "hyperpool-runtime-classes", func(ctx context.Context) error {
		pod := plainPod(ns, "probe", nil)
		pod.Spec.RuntimeClassName = ptr.To("hyperv")
		return c.Create(ctx, pod, client.DryRunAll)
	})

	// (Per-build classes, hyperv-<build>, are in the list too, but this test bed has none: the
	// RuntimeClass admission plugin refuses a pod of a missing class first.)
	for _, rc := range []string{"hyperv", "process"} {
		pod := plainPod(ns, "vm-"+rc, nil)
		pod.Spec.RuntimeClassName = ptr.To(rc)
		wantRefused(t, "a pod of RuntimeClass "+rc, c.Create(ctx, pod, client.DryRunAll),
			"spec.runtimeClassName "+rc, "only the hyperpool manager may create pods with hyperpool's RuntimeClasses", "create an AgentSession instead")
	}
	if err := c.Create(ctx, plainPod(ns, "own", nil), client.DryRunAll); err != nil {
		t.Errorf("tenant creating a pod without a RuntimeClass: %v", err)
	}

	// The manager's path: it makes the class's Hyper-V pods and binds a session to one.
	mustCreate(t, admin, builders.AgentSandbox(ns, "pool").Replicas(1).Obj())
	mustCreate(t, c, builders.AgentSession(ns, "s1", "pool").Obj())
	s := waitSession(t, ns, "s1", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
	if pod := getPod(t, ns, s.Status.PodName); pod.Spec.RuntimeClassName == nil || *pod.Spec.RuntimeClassName != "hyperv" {
		t.Errorf("bound pod's RuntimeClass = %v, want hyperv", pod.Spec.RuntimeClassName)
	}
}

// ---- Helpers of the chart policy tests. ----

var chartOptionalPolicies struct {
	once sync.Once
	err  error
}

// installChartOptionalPolicies renders the chart's optional policies with every CNI kind
// listed, runtimeClassGuard on (and hypervBuilds, for the per-build class names), both
// scoped to namespaces labelled guardLabel, and creates them and the CNI kinds' CRDs.
func installChartOptionalPolicies(t testing.TB) {
	t.Helper()
	chartOptionalPolicies.once.Do(func() {
		chartOptionalPolicies.err = func() error {
			ctx := context.Background()
			for _, k := range cniPolicyKinds {
				if err := admin.Create(ctx, cniPolicyCRD(k.group, k.version, k.kind, k.resource)); err != nil && !apierrors.IsAlreadyExists(err) {
					return err
				}
			}
			var resources []string
			for _, k := range cniPolicyKinds {
				resources = append(resources, fmt.Sprintf(`{"group":%q,"resource":%q}`, k.group, k.resource))
			}
			selector := fmt.Sprintf(`{"matchLabels":{%q:"true"}}`, guardLabel)
			out, err := renderChart("templates/admission-policies-optional.yaml",
				"--set-json", "admissionPolicies.cniPolicies.resources=["+strings.Join(resources, ",")+"]",
				"--set-json", "admissionPolicies.cniPolicies.namespaceSelector="+selector,
				"--set", "admissionPolicies.runtimeClassGuard.enabled=true",
				"--set", "runtimeClasses.hypervBuilds.enabled=true",
				"--set-json", "admissionPolicies.runtimeClassGuard.namespaceSelector="+selector)
			if err != nil {
				return err
			}
			return createAll(ctx, out)
		}()
	})
	if chartOptionalPolicies.err != nil {
		t.Fatalf("installing the chart's optional policies: %v", chartOptionalPolicies.err)
	}
}

// renderChart renders one template of the chart as release hyperpool in the manager's
// namespace.
func renderChart(template string, flags ...string) ([]byte, error) {
	return framework.RenderChart(env, "hyperpool", managerNamespace, append([]string{"--show-only", template}, flags...)...)
}

// createAll creates, as admin, every object of a YAML stream.
func createAll(ctx context.Context, manifest []byte) error {
	_, err := framework.CreateManifest(ctx, admin, manifest)
	return err
}

// cniPolicyCRD is a minimal namespaced CRD for a CNI's policy kind: any spec.
func cniPolicyCRD(group, version, kind, resource string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1",
		"kind":       "CustomResourceDefinition",
		"metadata":   map[string]any{"name": resource + "." + group},
		"spec": map[string]any{
			"group": group,
			"scope": "Namespaced",
			"names": map[string]any{"kind": kind, "listKind": kind + "List", "plural": resource, "singular": strings.ToLower(kind)},
			"versions": []any{map[string]any{"name": version, "served": true, "storage": true,
				"schema": map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "properties": map[string]any{
					"spec": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}},
		},
	}}
}

func cniPolicy(gvk schema.GroupVersionKind, ns, name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetGroupVersionKind(gvk)
	u.SetNamespace(ns)
	u.SetName(name)
	return u
}

// guardedNamespace is a new namespace that the optional policies' bindings select.
func guardedNamespace(t testing.TB) string {
	t.Helper()
	ns := env.CreateNamespace(t)
	if err := admin.Patch(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		mergePatch(fmt.Sprintf(`{"metadata":{"labels":{%q:"true"}}}`, guardLabel))); err != nil {
		t.Fatal(err)
	}
	return ns
}

// grantCNIPolicies gives user write access to the CNI kinds in ns, as Antrea's
// aggregate-antrea-policies-edit gives every holder of edit.
func grantCNIPolicies(t testing.TB, ns, user string) {
	t.Helper()
	ctx := context.Background()
	var rules []rbacv1.PolicyRule
	for _, k := range cniPolicyKinds {
		rules = append(rules, rbacv1.PolicyRule{APIGroups: []string{k.group}, Resources: []string{k.resource},
			Verbs: []string{"get", "list", "create", "update", "patch", "delete"}})
	}
	if err := admin.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cni-policies-edit"}, Rules: rules}); err != nil {
		t.Fatal(err)
	}
	if err := admin.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cni-policies-edit"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "cni-policies-edit"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}}); err != nil {
		t.Fatal(err)
	}
}

// waitRefusedBy waits until the API server refuses probe with the named policy (a new
// policy, CRD or binding takes it a moment).
func waitRefusedBy(t testing.TB, policy string, probe func(ctx context.Context) error) {
	t.Helper()
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		err := probe(ctx)
		return err != nil && strings.Contains(err.Error(), "ValidatingAdmissionPolicy '"+policy+"'"),
			fmt.Sprintf("policy %s not in force yet: probe %v", policy, err)
	})
}
