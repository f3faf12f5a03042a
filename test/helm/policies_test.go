//go:build !windows

package helm_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hyperpool/hyperpool/test/builders"
	"github.com/hyperpool/hyperpool/test/framework"
)

// With admissionPolicies.allowedPriorityClasses, the chart's sandbox-template policy lets a
// class name a listed priority class and refuses any other, naming it and the list. The
// policy is installed as rendered; only its binding is narrowed to this test's namespace,
// and the class author is an impersonated user who may create classes there, never admin.
func TestChartPriorityClassAllowList(t *testing.T) {
	ctx := context.Background()
	ns := env.CreateNamespace(t)
	const policy = "prio-hyperpool-sandbox-template"
	objs := framework.DecodeManifest(t, helmTemplate(t, "prio", "prio-system", "--show-only", "templates/admission-policies.yaml",
		"--set", "admissionPolicies.allowedPriorityClasses={sandbox-high,batch-low}"))
	vap, binding := only(t, objs, "ValidatingAdmissionPolicy", policy), only(t, objs, "ValidatingAdmissionPolicyBinding", policy)
	if err := unstructured.SetNestedField(binding.Object, map[string]any{"matchLabels": map[string]any{"kubernetes.io/metadata.name": ns}},
		"spec", "matchResources", "namespaceSelector"); err != nil {
		t.Fatal(err)
	}
	for _, o := range []*unstructured.Unstructured{vap, binding} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatalf("creating %s %s: %v", o.GetKind(), o.GetName(), err)
		}
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), o) })
	}

	author := classAuthor(t, ns)
	class := func(priorityClass string) client.Object {
		return builders.AgentSandbox(ns, "c-"+priorityClass).PodSpec(func(p *corev1.PodSpec) { p.PriorityClassName = priorityClass }).Obj()
	}
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		err := author.Create(ctx, class("probe"), client.DryRunAll)
		return err != nil && strings.Contains(err.Error(), "ValidatingAdmissionPolicy '"+policy+"'"), fmt.Sprintf("%s not in force yet: %v", policy, err)
	})
	for _, name := range []string{"preempt-everything", "sandbox"} {
		err := author.Create(ctx, class(name), client.DryRunAll)
		if err == nil || !strings.Contains(err.Error(), "spec.template.spec.priorityClassName "+name+" is not allowed") ||
			!strings.Contains(err.Error(), "allows only sandbox-high, batch-low") {
			t.Errorf("priorityClassName %s: %v, want refused naming it and the list", name, err)
		}
	}
	for _, name := range []string{"sandbox-high", "batch-low"} {
		if err := author.Create(ctx, class(name), client.DryRunAll); err != nil {
			t.Errorf("priorityClassName %s, listed: %v", name, err)
		}
	}
}

// classAuthor returns a client for a user who may create AgentSandboxes in ns, once RBAC
// lets it.
func classAuthor(t testing.TB, ns string) client.Client {
	t.Helper()
	ctx := context.Background()
	user := "author-" + ns
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "class-author"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"agents.hyperpool.io"}, Resources: []string{"agentsandboxes"}, Verbs: []string{"create", "get"}}}}
	bindingObj := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "class-author"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}}
	for _, o := range []client.Object{role, bindingObj} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:authenticated"}}
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
