//go:build !windows

package attack

// What the AgentSandbox CRD cannot refuse in a class's pod template (its CEL cost estimate
// refuses rules that walk a list inside a list), the shipped hyperpool-sandbox-template
// admission policy (config/policy/sandbox-template.yaml) refuses at apply: a Secret in a
// container's env or envFrom, a hostPort, a quantity whose exponent would stall the
// manager's decoding. Each attempt is made as the namespace's class author, never as admin.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/test/builders"
)

const templatePolicy = "hyperpool-sandbox-template"

// A class author cannot put a Secret key in a container's or an init container's env.
func TestTemplateSecretEnvIsRefused(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	c := templateAuthor(t, ns)
	secretEnv := corev1.EnvVar{Name: "TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "token"}}}

	class := builders.AgentSandbox(ns, "secret-env").PodSpec(func(p *corev1.PodSpec) {
		p.Containers[0].Env = []corev1.EnvVar{{Name: "PLAIN", Value: "x"}, secretEnv}
	}).Obj()
	wantTemplateRefused(t, c, "a Secret key in a container's env", class,
		"spec.template.spec.containers[].env[].valueFrom.secretKeyRef", "container sandbox, env TOKEN",
		"credentials come with the session, never in a warm pod")

	class = builders.AgentSandbox(ns, "secret-init-env").PodSpec(func(p *corev1.PodSpec) {
		p.InitContainers = []corev1.Container{{Name: "setup", Image: builders.DefaultImage, Env: []corev1.EnvVar{secretEnv}}}
	}).Obj()
	wantTemplateRefused(t, c, "a Secret key in an init container's env", class,
		"spec.template.spec.initContainers[].env[].valueFrom.secretKeyRef", "container setup, env TOKEN",
		"credentials come with the session, never in a warm pod")
}

// A class author cannot load a whole Secret into a container's environment.
func TestTemplateSecretEnvFromIsRefused(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	c := templateAuthor(t, ns)
	fromSecret := corev1.EnvFromSource{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}}}
	fromConfigMap := corev1.EnvFromSource{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}}

	class := builders.AgentSandbox(ns, "secret-envfrom").PodSpec(func(p *corev1.PodSpec) {
		p.Containers[0].EnvFrom = []corev1.EnvFromSource{fromConfigMap, fromSecret}
	}).Obj()
	wantTemplateRefused(t, c, "a Secret in a container's envFrom", class,
		"spec.template.spec.containers[].envFrom[].secretRef", "container sandbox",
		"credentials come with the session, never in a warm pod")

	class = builders.AgentSandbox(ns, "secret-init-envfrom").PodSpec(func(p *corev1.PodSpec) {
		p.InitContainers = []corev1.Container{{Name: "setup", Image: builders.DefaultImage, EnvFrom: []corev1.EnvFromSource{fromSecret}}}
	}).Obj()
	wantTemplateRefused(t, c, "a Secret in an init container's envFrom", class,
		"spec.template.spec.initContainers[].envFrom[].secretRef", "container setup",
		"credentials come with the session, never in a warm pod")
}

// A class author cannot make a sandbox bind a port of its node.
func TestTemplateHostPortIsRefused(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	c := templateAuthor(t, ns)

	class := builders.AgentSandbox(ns, "host-port").PodSpec(func(p *corev1.PodSpec) {
		p.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80}, {ContainerPort: 8080, HostPort: 8080}}
	}).Obj()
	wantTemplateRefused(t, c, "a hostPort in a container", class,
		"spec.template.spec.containers[].ports[].hostPort", "container sandbox, hostPort 8080",
		"a sandbox never binds a node port")

	class = builders.AgentSandbox(ns, "host-port-init").PodSpec(func(p *corev1.PodSpec) {
		p.InitContainers = []corev1.Container{{Name: "setup", Image: builders.DefaultImage,
			Ports: []corev1.ContainerPort{{ContainerPort: 53, HostPort: 53, Protocol: corev1.ProtocolUDP}}}}
	}).Obj()
	wantTemplateRefused(t, c, "a hostPort in an init container", class,
		"spec.template.spec.initContainers[].ports[].hostPort", "container setup, hostPort 53",
		"a sandbox never binds a node port")
}

// A class author cannot write a resource quantity whose exponent has three digits or more:
// the manager would take tens of seconds, or hours, to decode it. The class is sent as
// JSON: resource.MustParse of such a value would stall this test the same way.
func TestTemplateHugeExponentQuantityIsRefused(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	c := templateAuthor(t, ns)

	for _, tc := range []struct {
		name, init, list, resource, value string
		want                              []string
	}{
		{"limit", "", "limits", "memory", "1e-2147483647",
			[]string{"spec.template.spec.containers[].resources.limits[memory]", "container sandbox"}},
		{"request", "", "requests", "cpu", "5E+100",
			[]string{"spec.template.spec.containers[].resources.requests[cpu]", "container sandbox"}},
		{"init-limit", "setup", "limits", "memory", "0.5e-0000001",
			[]string{"spec.template.spec.initContainers[].resources.limits[memory]", "container setup"}},
	} {
		u := sandboxJSON(t, builders.AgentSandbox(ns, "huge-"+tc.name).PodSpec(func(p *corev1.PodSpec) {
			if tc.init != "" {
				p.InitContainers = []corev1.Container{{Name: tc.init, Image: builders.DefaultImage}}
			}
		}).Obj())
		field := "containers"
		if tc.init != "" {
			field = "initContainers"
		}
		containers, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", field)
		first := containers[0].(map[string]any)
		if err := unstructured.SetNestedField(first, tc.value, "resources", tc.list, tc.resource); err != nil {
			t.Fatal(err)
		}
		if err := unstructured.SetNestedSlice(u.Object, containers, "spec", "template", "spec", field); err != nil {
			t.Fatal(err)
		}
		wantTemplateRefused(t, c, fmt.Sprintf("%s.%s %s: %s", field, tc.list, tc.resource, tc.value), u,
			append(tc.want, "exponent of three digits or more", "512Mi")...)
	}
}

// A class without any of them is accepted, as are quantities with short exponents and
// containerPort without hostPort; an UPDATE of that class that adds a Secret to an env is
// refused, one that leaves the template as it was is not.
func TestTemplateCleanClassIsAcceptedAndUpdatesAreChecked(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := env.CreateNamespace(t)
	c := templateAuthor(t, ns)

	u := sandboxJSON(t, builders.AgentSandbox(ns, "clean").Replicas(0).PodSpec(func(p *corev1.PodSpec) {
		p.InitContainers = []corev1.Container{{Name: "setup", Image: builders.DefaultImage,
			Env: []corev1.EnvVar{{Name: "MODE", Value: "init"}}}}
		ctr := &p.Containers[0]
		ctr.Env = []corev1.EnvVar{
			{Name: "PLAIN", Value: "x"},
			{Name: "FROM_CONFIG", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}, Key: "k"}}},
			{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		}
		ctr.EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}}}
		ctr.Ports = []corev1.ContainerPort{{ContainerPort: 8080}}
	}).Obj())
	containers, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
	sandbox := containers[0].(map[string]any)
	// An explicit hostPort: 0 is no host port; exponents of one and two digits are fine.
	sandbox["ports"] = []any{map[string]any{"containerPort": int64(8080), "hostPort": int64(0)}}
	sandbox["resources"] = map[string]any{"limits": map[string]any{"memory": "1Gi", "cpu": "2e0"},
		"requests": map[string]any{"memory": "5e+08", "cpu": int64(1)}}
	if err := unstructured.SetNestedSlice(u.Object, containers, "spec", "template", "spec", "containers"); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, u); err != nil {
		t.Fatalf("class author creating a class with none of the refused fields: %v", err)
	}

	sb := &agentsv1alpha1.AgentSandbox{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "clean"}, sb); err != nil {
		t.Fatal(err)
	}
	withSecret := sb.DeepCopy()
	withSecret.Spec.Template.Spec.Containers[0].Env = append(withSecret.Spec.Template.Spec.Containers[0].Env,
		corev1.EnvVar{Name: "TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "token"}}})
	wantRefused(t, "an update that adds a Secret key to the env", c.Patch(ctx, withSecret, client.MergeFrom(sb)),
		"ValidatingAdmissionPolicy '"+templatePolicy+"'", "spec.template.spec.containers[].env[].valueFrom.secretKeyRef",
		"container sandbox, env TOKEN", "credentials come with the session, never in a warm pod")
	withHostPort := sb.DeepCopy()
	withHostPort.Spec.Template.Spec.Containers[0].Ports[0].HostPort = 8080
	wantRefused(t, "an update that adds a hostPort", c.Patch(ctx, withHostPort, client.MergeFrom(sb)),
		"spec.template.spec.containers[].ports[].hostPort", "a sandbox never binds a node port")

	// Updates that leave the template alone, or change it within the rules, pass. (Patches:
	// the manager writes the class's status meanwhile, and an Update would conflict.)
	relabelled := sb.DeepCopy()
	relabelled.Labels = map[string]string{"team": "agents"}
	if err := c.Patch(ctx, relabelled, client.MergeFrom(sb)); err != nil {
		t.Fatalf("relabelling the class: %v", err)
	}
	changed := sb.DeepCopy()
	changed.Spec.Template.Spec.Containers[0].Env = append(changed.Spec.Template.Spec.Containers[0].Env, corev1.EnvVar{Name: "MORE", Value: "y"})
	if err := c.Patch(ctx, changed, client.MergeFrom(sb)); err != nil {
		t.Fatalf("adding a plain env var to the class: %v", err)
	}

	if err := admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: "clean"}, sb); err != nil {
		t.Fatal(err)
	}
	for _, e := range sb.Spec.Template.Spec.Containers[0].Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			t.Errorf("stored class has a Secret in its env: %+v", e)
		}
	}
	if p := sb.Spec.TemplateProblem(); p != "" {
		t.Errorf("stored class has a template problem: %s", p)
	}
}

// ---- Helpers of the template tests. ----

// templateAuthor returns the namespace's class author once hyperpool-sandbox-template is in
// force (the API server loads a new policy a moment after it is created): a dry-run class
// with a hostPort is refused by it.
func templateAuthor(t testing.TB, ns string) client.Client {
	t.Helper()
	c := classAuthor(t, ns)
	probe := builders.AgentSandbox(ns, "probe").PodSpec(func(p *corev1.PodSpec) {
		p.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80, HostPort: 80}}
	}).Obj()
	eventually(t, inForceTimeout, func(ctx context.Context) (bool, string) {
		err := c.Create(ctx, probe.DeepCopy(), client.DryRunAll)
		return err != nil && strings.Contains(err.Error(), "ValidatingAdmissionPolicy '"+templatePolicy+"'"),
			fmt.Sprintf("%s not in force yet: a dry-run class with a hostPort: %v", templatePolicy, err)
	})
	return c
}

// wantTemplateRefused creates the class as c and wants it refused by
// hyperpool-sandbox-template with a message naming every one of parts, and not stored.
func wantTemplateRefused(t testing.TB, c client.Client, what string, class client.Object, parts ...string) {
	t.Helper()
	err := c.Create(context.Background(), class)
	wantRefused(t, what, err, append([]string{"ValidatingAdmissionPolicy '" + templatePolicy + "'"}, parts...)...)
	got := &unstructured.Unstructured{}
	got.SetGroupVersionKind(agentsv1alpha1.GroupVersion.WithKind("AgentSandbox"))
	if err := admin.Get(context.Background(), client.ObjectKeyFromObject(class), got); !apierrors.IsNotFound(err) {
		t.Errorf("%s: class %s stored (%v)", what, class.GetName(), err)
		_ = admin.Delete(context.Background(), got)
	}
}

// sandboxJSON returns the class as unstructured JSON, to hold values its Go types would
// parse (a resource quantity) or leave out (hostPort: 0).
func sandboxJSON(t testing.TB, sb *agentsv1alpha1.AgentSandbox) *unstructured.Unstructured {
	t.Helper()
	b, err := json.Marshal(sb)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{}
	if err := json.Unmarshal(b, &u.Object); err != nil {
		t.Fatal(err)
	}
	u.SetGroupVersionKind(agentsv1alpha1.GroupVersion.WithKind("AgentSandbox"))
	return u
}
