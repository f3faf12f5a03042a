//go:build !windows

package helm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/hyperpool/hyperpool/test/framework"
)

func TestHelmLintIsClean(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flags []string
	}{
		{"defaults", nil},
		{"all-options", []string{"-f", testdata("values-all.yaml")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := string(run(t, nil, "helm", append([]string{"lint", "--strict", chartDir()}, tc.flags...)...))
			if !strings.Contains(out, "1 chart(s) linted, 0 chart(s) failed") || strings.Contains(out, "[WARNING]") || strings.Contains(out, "[ERROR]") {
				t.Fatalf("helm lint is not clean:\n%s", out)
			}
		})
	}
}

// The schema turns typos and bad values into install errors instead of silent defaults.
// values.schema.json declares each key once: with a key twice, JSON parsers keep one
// (Helm's the last) and the other silently means nothing.
func TestValuesSchemaHasNoDuplicateKeys(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(chartDir(), "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	// The token stream, with a frame per open object or array: in an object, tokens
	// alternate between a key and its value.
	type frame struct {
		keys    map[string]bool // nil for an array
		wantKey bool
		name    string
	}
	frames := []*frame{{name: "(top)"}}
	valueDone := func() {
		if top := frames[len(frames)-1]; top.keys != nil {
			top.wantKey = true
		}
	}
	lastKey := ""
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		top := frames[len(frames)-1]
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				frames = append(frames, &frame{keys: map[string]bool{}, wantKey: true, name: lastKey})
			case '[':
				frames = append(frames, &frame{name: lastKey})
			default:
				frames = frames[:len(frames)-1]
				valueDone()
			}
		case string:
			if top.keys != nil && top.wantKey {
				if top.keys[v] {
					t.Errorf("values.schema.json declares %q twice in the object of %q", v, top.name)
				}
				top.keys[v], top.wantKey, lastKey = true, false, v
				continue
			}
			valueDone()
		default:
			valueDone()
		}
	}
}

func TestValuesSchemaRejectsMistakes(t *testing.T) {
	for _, tc := range []struct {
		set, want string
	}{
		{"replica=3", "additional properties 'replica' not allowed"},
		{"manager.warmPodReadyTimout=1m", "warmPodReadyTimout"},
		{"manager.warmPodReadyTimeout=10minutes", "warmPodReadyTimeout"},
		{"image.pullPolicy=Sometimes", "pullPolicy"},
		{"replicas=-1", "replicas"},
		{"runtimeClasses.hyperv.handlr=x", "handlr"},
		{"nodeAgent.gracePeriod=soon", "gracePeriod"},
		{"admissionPolicies.enable=false", "additional properties 'enable' not allowed"},
		{"admissionPolicies.exempt.user={x}", "additional properties 'user' not allowed"},
		{"admissionPolicies.controllers={it's}", "controllers"},
		{"admissionPolicies.allowedPriorityClasses={Not_A_Name}", "allowedPriorityClasses"},
		{"admissionPolicies.cniPolicies.resources[0].grup=x", "additional properties 'grup' not allowed"},
		{"admissionPolicies.runtimeClassGuard.enable=true", "additional properties 'enable' not allowed"},
		{"admissionPolicies.runtimeClassGuard.namespaceSelector.matchLabel.x=y", "additional properties 'matchLabel' not allowed"},
		{"manager.defaultQuota.session=3", "additional properties 'session' not allowed"},
		{"manager.defaultQuota.memory=lots", "memory"},
		{"nodeAgent.runtimeCheckInterval=often", "runtimeCheckInterval"},
	} {
		t.Run(tc.set, func(t *testing.T) {
			out, err := runErr(t, nil, "helm", "template", "x", chartDir(), "--set", tc.set)
			if err == nil {
				t.Fatalf("--set %s rendered without error:\n%.500s", tc.set, out)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("--set %s: error does not mention %q: %v", tc.set, tc.want, err)
			}
		})
	}
}

func TestTemplateDefaults(t *testing.T) {
	objs := framework.DecodeManifest(t, helmTemplate(t, "hyperpool", "hyperpool-system"))
	for _, kind := range []string{"ServiceMonitor", "RuntimeClass", "ConfigMap", "DaemonSet", "CustomResourceDefinition"} {
		if got := find(objs, kind); len(got) > 0 {
			t.Errorf("default values render %s: %s", kind, names(got))
		}
	}
	for _, o := range objs {
		if o.GetNamespace() == "" && !slices.Contains([]string{"ClusterRole", "ClusterRoleBinding", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}, o.GetKind()) {
			t.Errorf("%s/%s has no namespace", o.GetKind(), o.GetName())
		}
	}
	only(t, objs, "ServiceAccount", "hyperpool-manager")
	only(t, objs, "Service", "hyperpool-metrics")
	only(t, objs, "Role", "hyperpool-leader-election")
	only(t, objs, "RoleBinding", "hyperpool-leader-election")
	only(t, objs, "ClusterRoleBinding", "hyperpool-manager")
	if got := names(find(objs, "ValidatingAdmissionPolicy")); got != "ValidatingAdmissionPolicy/hyperpool-agent-metadata, ValidatingAdmissionPolicy/hyperpool-egress, "+
		"ValidatingAdmissionPolicy/hyperpool-sandbox-pods, ValidatingAdmissionPolicy/hyperpool-sandbox-template" {
		t.Errorf("admission policies: %s", got)
	}
	// The class template policy exempts nobody and checks what the CRD's CEL budget cannot.
	templatePolicy := policyText(t, only(t, objs, "ValidatingAdmissionPolicy", "hyperpool-sandbox-template"))
	for _, want := range []string{`"resources":["agentsandboxes"]`, "has(e.valueFrom.secretKeyRef)", "has(f.secretRef)",
		"p.hostPort != 0", "matches('[eE][-+]?[0-9]{3,}')", "variables.priorityClass in []", "the platform team allows none"} {
		if !strings.Contains(templatePolicy, want) {
			t.Errorf("policy hyperpool-sandbox-template lacks %s", want)
		}
	}
	if strings.Contains(templatePolicy, "request.userInfo") {
		t.Errorf("policy hyperpool-sandbox-template exempts an identity: %s", templatePolicy)
	}
	templateBinding := only(t, objs, "ValidatingAdmissionPolicyBinding", "hyperpool-sandbox-template")
	if actions, _, _ := unstructured.NestedStringSlice(templateBinding.Object, "spec", "validationActions"); !slices.Equal(actions, []string{"Deny"}) {
		t.Errorf("binding hyperpool-sandbox-template: validationActions %v, want [Deny]", actions)
	}
	// Sandbox pods are the manager's: their VM annotations, other owners, spec and grace.
	metadataPolicy := policyText(t, only(t, objs, "ValidatingAdmissionPolicy", "hyperpool-agent-metadata"))
	for _, want := range []string{"k.startsWith('io.microsoft.virtualmachine.')", "variables.addedForeignOwners"} {
		if !strings.Contains(metadataPolicy, want) {
			t.Errorf("policy hyperpool-agent-metadata lacks %s", want)
		}
	}
	podsPolicy := policyText(t, only(t, objs, "ValidatingAdmissionPolicy", "hyperpool-sandbox-pods"))
	for _, want := range []string{`"resources":["pods","pods/ephemeralcontainers","pods/resize"]`, `"operations":["DELETE"]`,
		"request.options.gracePeriodSeconds", "oldObject.spec.terminationGracePeriodSeconds",
		"request.userInfo.username != 'system:serviceaccount:hyperpool-system:hyperpool-manager'", "g in ['system:masters']"} {
		if !strings.Contains(podsPolicy, want) {
			t.Errorf("policy hyperpool-sandbox-pods lacks %s", want)
		}
	}
	if strings.Contains(podsPolicy, "pods/status") {
		t.Errorf("policy hyperpool-sandbox-pods matches pods/status, the kubelet's: %s", podsPolicy)
	}
	for _, name := range []string{"hyperpool-agent-metadata", "hyperpool-egress"} {
		policy := policyText(t, only(t, objs, "ValidatingAdmissionPolicy", name))
		for _, want := range []string{"request.userInfo.username != 'system:serviceaccount:hyperpool-system:hyperpool-manager'",
			"g in ['system:masters']", "'system:serviceaccount:kube-system:generic-garbage-collector'"} {
			if !strings.Contains(policy, want) {
				t.Errorf("policy %s lacks %s", name, want)
			}
		}
		binding := only(t, objs, "ValidatingAdmissionPolicyBinding", name)
		if p, _, _ := unstructured.NestedString(binding.Object, "spec", "policyName"); p != name {
			t.Errorf("binding %s binds %q", name, p)
		}
		if actions, _, _ := unstructured.NestedStringSlice(binding.Object, "spec", "validationActions"); !slices.Equal(actions, []string{"Deny"}) {
			t.Errorf("binding %s: validationActions %v, want [Deny]", name, actions)
		}
	}

	dep := only(t, objs, "Deployment", "hyperpool-manager")
	spec := podSpec(t, dep)
	if replicas := replicasOf(dep); replicas != 2 {
		t.Errorf("replicas = %d, want 2", replicas)
	}
	if spec.ServiceAccountName != "hyperpool-manager" {
		t.Errorf("serviceAccountName = %q", spec.ServiceAccountName)
	}
	if spec.NodeSelector[corev1.LabelOSStable] != "linux" {
		t.Errorf("nodeSelector = %v, want kubernetes.io/os: linux", spec.NodeSelector)
	}
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext = %+v, want runAsNonRoot and seccomp RuntimeDefault", psc)
	}
	c := spec.Containers[0]
	for _, arg := range []string{"--leader-elect", "--leader-election-namespace=hyperpool-system", "--metrics-bind-address=:8080",
		"--health-probe-bind-address=:8081", "--hyperv-runtime-class=hyperv", "--process-runtime-class=process",
		"--warm-pod-ready-timeout=10m", "--session-workers=16", "--sandbox-workers=4"} {
		if !slices.Contains(c.Args, arg) {
			t.Errorf("manager args %v lack %s", c.Args, arg)
		}
	}
	if c.Image != "ghcr.io/hyperpool/hyperpool-manager:0.1.0" || c.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("image %s (%s), want the appVersion tag, IfNotPresent", c.Image, c.ImagePullPolicy)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("probes: liveness %+v, readiness %+v", c.LivenessProbe, c.ReadinessProbe)
	}
	if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources = %+v, want memory requests and limits", c.Resources)
	}
	sc := c.SecurityContext
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container securityContext = %+v", sc)
	}
}

func TestTemplateAllOptions(t *testing.T) {
	objs := framework.DecodeManifest(t, helmTemplate(t, "hp", "ops", "-f", testdata("values-all.yaml")))
	dep := only(t, objs, "Deployment", "hp-hyperpool-manager")
	if replicas := replicasOf(dep); replicas != 3 {
		t.Errorf("replicas = %d, want 3", replicas)
	}
	args := podSpec(t, dep).Containers[0].Args
	for _, arg := range []string{"--warm-pod-ready-timeout=15m", "--session-workers=32", "--zap-log-level=debug", "--zap-encoder=console",
		"--default-quota=memory=64Gi,sessions=20", "--default-quota-namespace-selector=hyperpool.io/tenant=true",
		"--max-queued-sessions=50", "--internet-egress-except=10.0.0.0/8,169.254.0.0/16,203.0.113.0/24,fc00::/7"} {
		if !slices.Contains(args, arg) {
			t.Errorf("manager args %v lack %s", args, arg)
		}
	}

	sm := only(t, objs, "ServiceMonitor", "hp-hyperpool-manager")
	if sm.GetLabels()["release"] != "prometheus" {
		t.Errorf("ServiceMonitor labels = %v", sm.GetLabels())
	}

	hyperv := only(t, objs, "RuntimeClass", "hyperv")
	if h, _, _ := unstructured.NestedString(hyperv.Object, "handler"); h != "runhcs-wcow-hypervisor" {
		t.Errorf("hyperv handler = %q", h)
	}
	if mem, _, _ := unstructured.NestedString(hyperv.Object, "overhead", "podFixed", "memory"); mem != "512Mi" {
		t.Errorf("hyperv overhead memory = %q, want the value's 512Mi", mem)
	}
	if os, _, _ := unstructured.NestedString(hyperv.Object, "scheduling", "nodeSelector", corev1.LabelOSStable); os != "windows" {
		t.Errorf("hyperv scheduling.nodeSelector lacks kubernetes.io/os: windows: %v", hyperv.Object["scheduling"])
	}
	if tol, _, _ := unstructured.NestedSlice(hyperv.Object, "scheduling", "tolerations"); len(tol) != 1 {
		t.Errorf("hyperv tolerations = %v", tol)
	}
	if h, _, _ := unstructured.NestedString(only(t, objs, "RuntimeClass", "process").Object, "handler"); h != "runhcs-wcow-process" {
		t.Errorf("process handler = %q", h)
	}

	cm := only(t, objs, "ConfigMap", "hp-hyperpool-dashboard")
	if cm.GetLabels()["grafana_dashboard"] != "1" {
		t.Errorf("dashboard labels = %v", cm.GetLabels())
	}
	raw, _, _ := unstructured.NestedString(cm.Object, "data", "hyperpool.json")
	var dashboard map[string]any
	if err := json.Unmarshal([]byte(raw), &dashboard); err != nil {
		t.Fatalf("dashboard is not JSON: %v", err)
	}
	for _, expr := range []string{"hyperpool_warm_sandboxes", "hyperpool_sessions{", "histogram_quantile(0.5, sum by (le, start_type) (rate(hyperpool_bind_duration_seconds_bucket",
		"histogram_quantile(0.99", "rate(hyperpool_session_expirations_total", "sum by (namespace) (hyperpool_vm_memory_bytes", "hyperpool_queued_sessions"} {
		if !strings.Contains(raw, expr) {
			t.Errorf("dashboard has no query with %q", expr)
		}
	}

	ds := only(t, objs, "DaemonSet", "hp-hyperpool-node-agent")
	spec := podSpec(t, ds)
	if !spec.HostNetwork || spec.SecurityContext == nil || spec.SecurityContext.WindowsOptions == nil ||
		spec.SecurityContext.WindowsOptions.HostProcess == nil || !*spec.SecurityContext.WindowsOptions.HostProcess ||
		*spec.SecurityContext.WindowsOptions.RunAsUserName != `NT AUTHORITY\SYSTEM` {
		t.Errorf("node agent is not a HostProcess pod as SYSTEM on the host network: %+v", spec.SecurityContext)
	}
	if spec.NodeSelector[corev1.LabelOSStable] != "windows" || len(spec.Tolerations) == 0 || spec.ServiceAccountName != "hp-hyperpool-node-agent" {
		t.Errorf("node agent: nodeSelector %v, tolerations %v, serviceAccount %q", spec.NodeSelector, spec.Tolerations, spec.ServiceAccountName)
	}
	agent := spec.Containers[0]
	for _, arg := range []string{"--node-name=$(NODE_NAME)", "--reap=true", "--grace-period=15m", "--metrics-bind-address=:9090"} {
		if !slices.Contains(agent.Args, arg) {
			t.Errorf("node agent args %v lack %s", agent.Args, arg)
		}
	}
	if len(agent.Env) != 1 || agent.Env[0].ValueFrom == nil || agent.Env[0].ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("node agent env = %+v, want NODE_NAME from spec.nodeName", agent.Env)
	}
	// Least privilege: list pods, read and patch Nodes (the admission policy below narrows
	// that to its own Node's summary annotation), Events only where a Node's go.
	wantAgentRules := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}},
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "patch"}},
		{APIGroups: []string{"node.k8s.io"}, Resources: []string{"runtimeclasses"}, Verbs: []string{"get", "list"}},
	}
	if got := rules(t, only(t, objs, "ClusterRole", "hp-hyperpool-node-agent")); !reflect.DeepEqual(got, wantAgentRules) {
		t.Errorf("node agent rules = %+v, want %+v", got, wantAgentRules)
	}
	events := only(t, objs, "Role", "hp-hyperpool-node-agent-events")
	wantEventRules := []rbacv1.PolicyRule{{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}}}
	if got := rules(t, events); events.GetNamespace() != "default" || !reflect.DeepEqual(got, wantEventRules) {
		t.Errorf("node agent events Role in %q: %+v, want %+v in default", events.GetNamespace(), got, wantEventRules)
	}
	if sub, _, _ := unstructured.NestedSlice(only(t, objs, "RoleBinding", "hp-hyperpool-node-agent-events").Object, "subjects"); len(sub) != 1 ||
		sub[0].(map[string]any)["name"] != "hp-hyperpool-node-agent" || sub[0].(map[string]any)["namespace"] != "ops" {
		t.Errorf("node agent events RoleBinding subjects = %v", sub)
	}
	agentPolicy := policyText(t, only(t, objs, "ValidatingAdmissionPolicy", "hp-hyperpool-node-agent"))
	for _, want := range []string{"request.userInfo.username == 'system:serviceaccount:ops:hp-hyperpool-node-agent'",
		"authentication.kubernetes.io/node-name", "'agents.hyperpool.io/uvm-summary'"} {
		if !strings.Contains(agentPolicy, want) {
			t.Errorf("node agent policy lacks %s", want)
		}
	}
	only(t, objs, "ValidatingAdmissionPolicyBinding", "hp-hyperpool-node-agent")
	only(t, objs, "ValidatingAdmissionPolicy", "hp-hyperpool-sandbox-template")
	if p, _, _ := unstructured.NestedString(only(t, objs, "ValidatingAdmissionPolicyBinding", "hp-hyperpool-sandbox-template").Object,
		"spec", "policyName"); p != "hp-hyperpool-sandbox-template" {
		t.Errorf("binding hp-hyperpool-sandbox-template binds %q", p)
	}
	// The values' allowed priority classes, CNI-native kinds and RuntimeClass guard.
	if p := policyText(t, only(t, objs, "ValidatingAdmissionPolicy", "hp-hyperpool-sandbox-template")); !strings.Contains(p,
		"variables.priorityClass in ['sandbox-high', 'batch-low']") || !strings.Contains(p, "the platform team allows only sandbox-high, batch-low") {
		t.Errorf("policy hp-hyperpool-sandbox-template does not allow the values' priority classes: %s", p)
	}
	cni := policyText(t, only(t, objs, "ValidatingAdmissionPolicy", "hp-hyperpool-cni-policies"))
	for _, want := range []string{`"apiGroups":["crd.antrea.io"],"apiVersions":["*"],"operations":["CREATE","UPDATE"],"resources":["networkpolicies"]`,
		`"apiGroups":["projectcalico.org"]`, `"apiGroups":["crd.projectcalico.org"]`, `"resources":["ciliumnetworkpolicies"]`,
		"request.userInfo.username != 'system:serviceaccount:ops:hp-hyperpool-manager'"} {
		if !strings.Contains(cni, want) {
			t.Errorf("policy hp-hyperpool-cni-policies lacks %s: %s", want, cni)
		}
	}
	if sel, _, _ := unstructured.NestedStringMap(only(t, objs, "ValidatingAdmissionPolicyBinding", "hp-hyperpool-cni-policies").Object,
		"spec", "matchResources", "namespaceSelector", "matchLabels"); sel["hyperpool.io/tenant"] != "true" {
		t.Errorf("binding hp-hyperpool-cni-policies namespaceSelector = %v", sel)
	}
	rc := policyText(t, only(t, objs, "ValidatingAdmissionPolicy", "hp-hyperpool-runtime-classes"))
	if want := "object.spec.runtimeClassName in ['hyperv', 'process', 'hyperv-20348', 'hyperv-26100']"; !strings.Contains(rc, want) {
		t.Errorf("policy hp-hyperpool-runtime-classes lacks %s: %s", want, rc)
	}
	only(t, objs, "ValidatingAdmissionPolicyBinding", "hp-hyperpool-runtime-classes")
	// The release's manager and the values' identities.
	for _, name := range []string{"hp-hyperpool-agent-metadata", "hp-hyperpool-egress", "hp-hyperpool-sandbox-pods",
		"hp-hyperpool-cni-policies", "hp-hyperpool-runtime-classes"} {
		policy := policyText(t, only(t, objs, "ValidatingAdmissionPolicy", name))
		wants := []string{"request.userInfo.username != 'system:serviceaccount:ops:hp-hyperpool-manager'",
			"request.userInfo.username in ['ops-breakglass']", "g in ['system:masters', 'ops-admins']"}
		if name == "hp-hyperpool-agent-metadata" || name == "hp-hyperpool-egress" {
			wants = append(wants, "['system:serviceaccount:kube-system:generic-garbage-collector', 'ops-gc']")
		}
		for _, want := range wants {
			if !strings.Contains(policy, want) {
				t.Errorf("policy %s lacks %s", name, want)
			}
		}
	}
}

// admissionPolicies.enabled=false renders no policy, the node agent's neither.
func TestTemplateAdmissionPoliciesOff(t *testing.T) {
	objs := framework.DecodeManifest(t, helmTemplate(t, "hyperpool", "hyperpool-system", "--set", "admissionPolicies.enabled=false", "--set", "nodeAgent.enabled=true"))
	for _, kind := range []string{"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} {
		if got := find(objs, kind); len(got) > 0 {
			t.Errorf("admissionPolicies.enabled=false renders %s", names(got))
		}
	}
	only(t, objs, "DaemonSet", "hyperpool-node-agent")
}

// policyText is a ValidatingAdmissionPolicy's spec as JSON, to look for its CEL.
func policyText(t testing.TB, o *unstructured.Unstructured) string {
	t.Helper()
	b, err := json.Marshal(o.Object["spec"])
	if err != nil {
		t.Fatal(err)
	}
	// JSON escapes ' and & in strings: undo that for readable wants.
	return strings.NewReplacer(`\u0027`, "'", `\u0026`, "&").Replace(string(b))
}

// Every object the chart renders, with default and with all values, is accepted by the API
// server (server-side dry-run: admission, schema and CRD validation, no writes).
func TestTemplateServerSideDryRun(t *testing.T) {
	installServiceMonitorCRD(t)
	for _, tc := range []struct {
		name  string
		flags []string
	}{
		{"defaults", nil},
		{"all-options", []string{"-f", testdata("values-all.yaml")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := env.CreateNamespace(t)
			manifest := helmTemplate(t, "dry", ns, tc.flags...)
			objs := framework.DecodeManifest(t, manifest)
			out := string(run(t, manifest, "kubectl", "apply", "--server-side", "--dry-run=server", "--field-manager=helm-test", "-f", "-"))
			if got := strings.Count(out, "(server dry run)"); got != len(objs) {
				t.Fatalf("dry-run accepted %d of %d objects:\n%s", got, len(objs), out)
			}
		})
	}
}

var serviceMonitorCRD sync.Once

// installServiceMonitorCRD installs a minimal ServiceMonitor CRD (prometheus-operator's is
// not on the test bed) and waits until it is served.
func installServiceMonitorCRD(t *testing.T) {
	t.Helper()
	serviceMonitorCRD.Do(func() {
		run(t, nil, "kubectl", "apply", "--server-side", "-f", testdata("servicemonitor-crd.yaml"))
	})
	run(t, nil, "kubectl", "wait", "--for=condition=Established", "--timeout=20s", "crd/servicemonitors.monitoring.coreos.com")
}

// The chart's crds/ are config/crd/bases, byte for byte (make manifests copies them).
func TestChartCRDsEqualGenerated(t *testing.T) {
	want := filepath.Join(env.RepoRoot, "config", "crd", "bases")
	got := filepath.Join(chartDir(), "crds")
	wantFiles, gotFiles := yamlFiles(t, want), yamlFiles(t, got)
	if !slices.Equal(wantFiles, gotFiles) {
		t.Fatalf("charts/hyperpool/crds holds %v, config/crd/bases %v: run make manifests", gotFiles, wantFiles)
	}
	for _, f := range wantFiles {
		a, err := os.ReadFile(filepath.Join(want, f))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(got, f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("charts/hyperpool/crds/%s differs from config/crd/bases/%s: run make manifests", f, f)
		}
	}
}

func yamlFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".yaml") {
			out = append(out, e.Name())
		}
	}
	return out
}

// No wildcard verbs, resources or API groups, and no access to Secrets, in any role the
// chart (with every option on) or config/ installs, but get (never list or watch) in the
// agent-backend user role, which delivers a session's credentials with its caller's
// identity (TestAgentBackendRole).
func TestRBACLeastPrivilege(t *testing.T) {
	sources := map[string][]*unstructured.Unstructured{
		"chart defaults":    framework.DecodeManifest(t, helmTemplate(t, "hyperpool", "hyperpool-system")),
		"chart all options": framework.DecodeManifest(t, helmTemplate(t, "hyperpool", "hyperpool-system", "-f", testdata("values-all.yaml"))),
		"config/default":    framework.DecodeManifest(t, run(t, nil, "kubectl", "kustomize", filepath.Join(env.RepoRoot, "config", "default"))),
	}
	for _, f := range []string{"role.yaml", "leader_election_role.yaml"} {
		b, err := os.ReadFile(filepath.Join(env.RepoRoot, "config", "rbac", f))
		if err != nil {
			t.Fatal(err)
		}
		sources["config/rbac/"+f] = framework.DecodeManifest(t, b)
	}
	for source, objs := range sources {
		roles := append(find(objs, "ClusterRole"), find(objs, "Role")...)
		if len(roles) == 0 {
			t.Errorf("%s: no roles", source)
		}
		for _, role := range roles {
			if _, found := role.Object["aggregationRule"]; found {
				t.Errorf("%s: %s/%s aggregates other roles", source, role.GetKind(), role.GetName())
			}
			for _, rule := range rules(t, role) {
				where := source + ": " + role.GetKind() + "/" + role.GetName()
				for _, field := range [][]string{rule.Verbs, rule.Resources, rule.APIGroups, rule.NonResourceURLs, rule.ResourceNames} {
					for _, v := range field {
						if strings.Contains(v, "*") {
							t.Errorf("%s: wildcard %q in %+v", where, v, rule)
						}
					}
				}
				for _, r := range rule.Resources {
					if (r == "secrets" || strings.HasPrefix(r, "secrets/")) && !agentBackendSecretsRule(role, rule) {
						t.Errorf("%s: access to %s: %+v", where, r, rule)
					}
				}
				for _, v := range rule.Verbs {
					if v == "escalate" || v == "bind" || v == "impersonate" {
						t.Errorf("%s: verb %s: %+v", where, v, rule)
					}
				}
			}
		}
	}
}

// The chart's manager ClusterRole is config/rbac/role.yaml's (the markers'), rule for rule.
func TestChartManagerRulesEqualGenerated(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(env.RepoRoot, "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	generated := only(t, framework.DecodeManifest(t, b), "ClusterRole", "hyperpool-manager")
	chart := only(t, framework.DecodeManifest(t, helmTemplate(t, "hyperpool", "hyperpool-system")), "ClusterRole", "hyperpool-manager")
	if want, got := rules(t, generated), rules(t, chart); !reflect.DeepEqual(want, got) {
		t.Fatalf("chart rules differ from config/rbac/role.yaml (run make manifests):\nchart: %+v\nrole.yaml: %+v", got, want)
	}
}

// config/default installs what the chart installs with default values (release hyperpool
// in hyperpool-system), and the API server accepts it.
func TestKustomizeDefaultMatchesChartAndDryRuns(t *testing.T) {
	kustomized := framework.DecodeManifest(t, run(t, nil, "kubectl", "kustomize", filepath.Join(env.RepoRoot, "config", "default")))
	chart := framework.DecodeManifest(t, helmTemplate(t, "hyperpool", "hyperpool-system"))

	key := func(o *unstructured.Unstructured) string {
		return o.GetKind() + " " + o.GetNamespace() + "/" + o.GetName()
	}
	var kustomizeKeys, chartKeys []string
	for _, o := range kustomized {
		if o.GetKind() != "Namespace" && o.GetKind() != "CustomResourceDefinition" {
			kustomizeKeys = append(kustomizeKeys, key(o))
		}
	}
	for _, o := range chart {
		chartKeys = append(chartKeys, key(o))
	}
	slices.Sort(kustomizeKeys)
	slices.Sort(chartKeys)
	if !slices.Equal(kustomizeKeys, chartKeys) {
		t.Errorf("config/default installs\n  %v\nthe chart\n  %v", kustomizeKeys, chartKeys)
	}
	if n := len(find(kustomized, "CustomResourceDefinition")); n != len(yamlFiles(t, filepath.Join(chartDir(), "crds"))) {
		t.Errorf("config/default installs %d CRDs", n)
	}
	for _, kind := range []string{"ClusterRole", "Role"} {
		for _, o := range find(chart, kind) {
			if want, got := rules(t, o), rules(t, only(t, kustomized, kind, o.GetName())); !reflect.DeepEqual(want, got) {
				t.Errorf("%s %s: config/ rules %+v, chart %+v", kind, o.GetName(), got, want)
			}
		}
	}
	// config/policy is the chart's admission policies at default values, CEL for CEL.
	for _, kind := range []string{"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} {
		if len(find(chart, kind)) == 0 {
			t.Errorf("the chart renders no %s", kind)
		}
		for _, o := range find(chart, kind) {
			if want, got := o.Object["spec"], only(t, kustomized, kind, o.GetName()).Object["spec"]; !reflect.DeepEqual(want, got) {
				t.Errorf("%s %s: config/policy differs from the chart's:\n  config/: %s\n  chart:   %s", kind, o.GetName(), mustJSON(t, got), mustJSON(t, want))
			}
		}
	}
	chartDep, kustDep := only(t, chart, "Deployment", "hyperpool-manager"), only(t, kustomized, "Deployment", "hyperpool-manager")
	cs, ks := podSpec(t, chartDep), podSpec(t, kustDep)
	// The chart names the Lease's namespace; config/ leaves it to the manager (its own).
	chartArgs := slices.DeleteFunc(slices.Clone(cs.Containers[0].Args), func(a string) bool { return strings.HasPrefix(a, "--leader-election-namespace=") })
	if !slices.Equal(chartArgs, ks.Containers[0].Args) {
		t.Errorf("manager args: config/ %v, chart %v", ks.Containers[0].Args, chartArgs)
	}
	cc, kc := cs.Containers[0], ks.Containers[0]
	for what, pair := range map[string][2]any{
		"image":                     {cc.Image, kc.Image},
		"resources":                 {cc.Resources, kc.Resources},
		"container securityContext": {cc.SecurityContext, kc.SecurityContext},
		"pod securityContext":       {cs.SecurityContext, ks.SecurityContext},
		"probes":                    {[]any{cc.LivenessProbe, cc.ReadinessProbe}, []any{kc.LivenessProbe, kc.ReadinessProbe}},
		"ports":                     {cc.Ports, kc.Ports},
		"nodeSelector":              {cs.NodeSelector, ks.NodeSelector},
		"serviceAccountName":        {cs.ServiceAccountName, ks.ServiceAccountName},
		"pod labels":                {chartDep.Object["spec"].(map[string]any)["selector"], kustDep.Object["spec"].(map[string]any)["selector"]},
	} {
		if !reflect.DeepEqual(pair[0], pair[1]) {
			t.Errorf("%s: chart %+v, config/ %+v", what, pair[0], pair[1])
		}
	}

	// Server-side dry-run of namespaced objects needs their namespace to exist.
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "hyperpool-system"}}
	if err := env.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), ns) })
	out := string(run(t, nil, "kubectl", "apply", "--server-side", "--dry-run=server", "--field-manager=kustomize-test", "-k", filepath.Join(env.RepoRoot, "config", "default")))
	if got := strings.Count(out, "(server dry run)"); got != len(kustomized) {
		t.Fatalf("dry-run accepted %d of %d objects:\n%s", got, len(kustomized), out)
	}
}

// replicasOf returns a Deployment's spec.replicas (JSON numbers decode as float64).
func replicasOf(o *unstructured.Unstructured) int64 {
	v, _, _ := unstructured.NestedFieldNoCopy(o.Object, "spec", "replicas")
	switch n := v.(type) {
	case int64:
		return n
	case float64:
		return int64(n)
	}
	return -1
}

// podSpec decodes the pod template of a Deployment or DaemonSet.
func podSpec(t testing.TB, o *unstructured.Unstructured) corev1.PodSpec {
	t.Helper()
	raw, found, err := unstructured.NestedMap(o.Object, "spec", "template", "spec")
	if err != nil || !found {
		t.Fatalf("%s/%s has no pod template: %v", o.GetKind(), o.GetName(), err)
	}
	var spec corev1.PodSpec
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(raw, &spec, true); err != nil {
		t.Fatalf("%s/%s pod template: %v", o.GetKind(), o.GetName(), err)
	}
	if len(spec.Containers) == 0 {
		t.Fatalf("%s/%s has no containers", o.GetKind(), o.GetName())
	}
	return spec
}

// rules decodes a Role's or ClusterRole's rules.
func rules(t testing.TB, o *unstructured.Unstructured) []rbacv1.PolicyRule {
	t.Helper()
	var role rbacv1.ClusterRole
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, &role, true); err != nil {
		t.Fatalf("%s/%s: %v", o.GetKind(), o.GetName(), err)
	}
	return role.Rules
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
