package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/podstate"
	"github.com/hyperpool/hyperpool/internal/windows"
	"github.com/hyperpool/hyperpool/test/builders"
)

func TestBuildAppliesSandboxRules(t *testing.T) {
	base := func(mutate func(*corev1.PodSpec)) *agentsv1alpha1.AgentSandbox {
		sb := builders.AgentSandbox("ns", "pool").ImageBuild(20348).Container(corev1.Container{Name: "c", Image: "img"})
		if mutate != nil {
			sb.PodSpec(mutate)
		}
		return sb.Obj()
	}
	tests := []struct {
		name  string
		sb    *agentsv1alpha1.AgentSandbox
		check func(t *testing.T, p *corev1.Pod)
	}{
		{"defaults", base(nil), func(t *testing.T, p *corev1.Pod) {
			if ptr.Deref(p.Spec.SecurityContext.WindowsOptions.RunAsUserName, "") != "ContainerUser" {
				t.Error("runAsUserName not ContainerUser")
			}
			if ptr.Deref(p.Spec.AutomountServiceAccountToken, true) || ptr.Deref(p.Spec.EnableServiceLinks, true) {
				t.Error("service account token or service links left on")
			}
			if len(p.Spec.Tolerations) != 1 || p.Spec.Tolerations[0] != windowsToleration {
				t.Errorf("tolerations = %v", p.Spec.Tolerations)
			}
			if p.Labels[agentsv1alpha1.ClassLabel] != "pool" || p.Labels[agentsv1alpha1.TemplateHashLabel] != "hash" {
				t.Errorf("labels = %v", p.Labels)
			}
		}},
		{"a container's user is kept, and the pod-level user is set for the others", base(func(s *corev1.PodSpec) {
			s.Containers[0].SecurityContext = &corev1.SecurityContext{WindowsOptions: &corev1.WindowsSecurityContextOptions{RunAsUserName: ptr.To("ContainerAdministrator")}}
		}), func(t *testing.T, p *corev1.Pod) {
			if got := ptr.Deref(p.Spec.SecurityContext.WindowsOptions.RunAsUserName, ""); got != "ContainerUser" {
				t.Errorf("pod-level user = %q, want ContainerUser", got)
			}
			if got := ptr.Deref(p.Spec.Containers[0].SecurityContext.WindowsOptions.RunAsUserName, ""); got != "ContainerAdministrator" {
				t.Errorf("container user = %q, want the template's ContainerAdministrator", got)
			}
		}},
		{"a template's pod-level user is kept", base(func(s *corev1.PodSpec) {
			s.SecurityContext = &corev1.PodSecurityContext{WindowsOptions: &corev1.WindowsSecurityContextOptions{RunAsUserName: ptr.To("Builder")}}
		}), func(t *testing.T, p *corev1.Pod) {
			if got := ptr.Deref(p.Spec.SecurityContext.WindowsOptions.RunAsUserName, ""); got != "Builder" {
				t.Errorf("pod-level user = %q, want the template's Builder", got)
			}
		}},
		{"allowPrivilegeEscalation is never set: the API server refuses it on Windows pods", base(func(s *corev1.PodSpec) {
			s.OS = &corev1.PodOS{Name: corev1.Windows}
			s.Containers[0].SecurityContext = &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false),
				WindowsOptions: &corev1.WindowsSecurityContextOptions{RunAsUserName: ptr.To("ContainerUser")}}
		}), func(t *testing.T, p *corev1.Pod) {
			if v := p.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation; v != nil {
				t.Errorf("allowPrivilegeEscalation = %v, want unset", *v)
			}
		}},
		{"a service account token asked for is refused", base(func(s *corev1.PodSpec) {
			s.AutomountServiceAccountToken = ptr.To(true)
		}), func(t *testing.T, p *corev1.Pod) {
			if ptr.Deref(p.Spec.AutomountServiceAccountToken, true) {
				t.Error("automountServiceAccountToken left true")
			}
		}},
		{"host access is stripped", base(func(s *corev1.PodSpec) {
			s.HostNetwork = true
			s.SecurityContext = &corev1.PodSecurityContext{WindowsOptions: &corev1.WindowsSecurityContextOptions{HostProcess: ptr.To(true)}}
			s.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true),
				WindowsOptions: &corev1.WindowsSecurityContextOptions{HostProcess: ptr.To(true)}}
		}), func(t *testing.T, p *corev1.Pod) {
			c := p.Spec.Containers[0].SecurityContext
			if p.Spec.HostNetwork || p.Spec.SecurityContext.WindowsOptions.HostProcess != nil || c.Privileged != nil || c.WindowsOptions.HostProcess != nil {
				t.Errorf("host access left: hostNetwork %v, pod %+v, container %+v", p.Spec.HostNetwork, p.Spec.SecurityContext, c)
			}
		}},
		{"an existing toleration is not duplicated", base(func(s *corev1.PodSpec) {
			s.Tolerations = []corev1.Toleration{{Key: "os", Operator: corev1.TolerationOpExists}}
		}), func(t *testing.T, p *corev1.Pod) {
			if len(p.Spec.Tolerations) != 1 {
				t.Errorf("tolerations = %v", p.Spec.Tolerations)
			}
		}},
		{"the build requirement joins every affinity term", base(func(s *corev1.PodSpec) {
			s.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{
					{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"a"}}}},
					{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"b"}}}},
				}}}}
		}), func(t *testing.T, p *corev1.Pod) {
			for i, term := range p.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
				if len(term.MatchExpressions) != 2 || term.MatchExpressions[1].Values[0] != "10.0.20348" {
					t.Errorf("term %d = %+v", i, term)
				}
			}
		}},
	}
	reserved := base(nil)
	reserved.Spec.Template.Labels = map[string]string{agentsv1alpha1.SessionLabel: "forged", agentsv1alpha1.ClassLabel: "other", "app": "x"}
	reserved.Spec.Template.Annotations = map[string]string{agentsv1alpha1.LastActivityAnnotation: "2099-01-01T00:00:00Z", "note": "kept"}
	tests = append(tests, struct {
		name  string
		sb    *agentsv1alpha1.AgentSandbox
		check func(t *testing.T, p *corev1.Pod)
	}{"reserved template labels and annotations are dropped (a class stored before the CRD refused them)", reserved, func(t *testing.T, p *corev1.Pod) {
		if _, ok := p.Labels[agentsv1alpha1.SessionLabel]; ok || p.Labels[agentsv1alpha1.ClassLabel] != "pool" || p.Labels["app"] != "x" {
			t.Errorf("labels = %v, want the class's own sandbox label, no session label, app kept", p.Labels)
		}
		if _, ok := p.Annotations[agentsv1alpha1.LastActivityAnnotation]; ok || p.Annotations["note"] != "kept" {
			t.Errorf("annotations = %v", p.Annotations)
		}
	}})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &podRecipe{sandbox: tt.sb, templateHash: "hash", runtimeClass: "hyperv", hostBuilds: []string{"10.0.20348"}}
			p := r.build()
			if ptr.Deref(p.Spec.RuntimeClassName, "") != "hyperv" || p.Spec.NodeSelector[osLabel] != "windows" {
				t.Errorf("runtimeClassName %v, nodeSelector %v", p.Spec.RuntimeClassName, p.Spec.NodeSelector)
			}
			tt.check(t, p)
			if tt.sb.Spec.Template.Spec.Tolerations != nil && len(tt.sb.Spec.Template.Spec.Tolerations) != 1 {
				t.Error("build changed the class's template")
			}
		})
	}
}

func TestTemplateHashIgnoresPoolSizeAndLifetimes(t *testing.T) {
	sb := builders.AgentSandbox("ns", "pool").Replicas(1).Container(corev1.Container{Name: "c", Image: "a"}).Obj()
	h := templateHash(sb)
	sb.Spec.Replicas = ptr.To[int32](9)
	sb.Spec.Lifetime.MaxLifetime = &agentsv1alpha1.Duration{Duration: time.Minute}
	sb.Spec.Egress = agentsv1alpha1.EgressNone
	if templateHash(sb) != h {
		t.Error("pool size, lifetime or egress changed the template hash")
	}
	sb.Spec.Template.Spec.Containers[0].Image = "b"
	if templateHash(sb) == h {
		t.Error("a new image did not change the template hash")
	}
}

// A class without spec.placement keeps the hash it had before the field existed, so a
// manager upgrade replaces no warm pod; requiring verified nodes changes it, so the pool's
// pods get the new node affinity.
func TestTemplateHashOfPlacement(t *testing.T) {
	sb := builders.AgentSandbox("ns", "pool").Container(corev1.Container{Name: "c", Image: "a"}).Obj()
	before := struct { // the hashed shape before spec.placement
		Template         corev1.PodTemplateSpec
		Isolation        agentsv1alpha1.IsolationMode
		RuntimeClassName *string
		Windows          agentsv1alpha1.WindowsSpec
		VM               *agentsv1alpha1.VMSpec
	}{sb.Spec.Template, isolationOf(sb), sb.Spec.RuntimeClassName, sb.Spec.Windows, sb.Spec.VM}
	data, _ := json.Marshal(before)
	h := fnv.New32a()
	_, _ = h.Write(data)
	if got, want := templateHash(sb), rand.SafeEncodeString(fmt.Sprint(h.Sum32())); got != want {
		t.Errorf("template hash without placement = %s, want the old %s", got, want)
	}
	unplaced := templateHash(sb)
	sb.Spec.Placement.RequireVerifiedRuntime = true
	if templateHash(sb) == unplaced {
		t.Error("requireVerifiedRuntime did not change the template hash")
	}
}

func TestOnlyCountsDiffer(t *testing.T) {
	ready := func(status metav1.ConditionStatus, reason, msg string) metav1.Condition {
		return metav1.Condition{Type: agentsv1alpha1.SandboxReady, Status: status, Reason: reason, Message: msg, ObservedGeneration: 1}
	}
	base := agentsv1alpha1.AgentSandboxStatus{ObservedGeneration: 1, Replicas: 5, ReadyReplicas: 5, TemplateHash: "abc",
		Conditions: []metav1.Condition{ready(metav1.ConditionTrue, agentsv1alpha1.ReasonPoolReady, "5 of 5 warm sandboxes Ready"),
			{Type: agentsv1alpha1.SandboxDegraded, Status: metav1.ConditionFalse, Reason: agentsv1alpha1.ReasonAsExpected, ObservedGeneration: 1}}}
	tests := []struct {
		name   string
		change func(s *agentsv1alpha1.AgentSandboxStatus)
		want   bool
	}{
		{"counts and the message that quotes them", func(s *agentsv1alpha1.AgentSandboxStatus) {
			s.Replicas, s.ActiveSessions = 4, 1
			s.Conditions[0].Message = "4 of 5 warm sandboxes Ready"
		}, true},
		// A take turns a full pool's Ready to PoolFilling, its refill turns it back (the
		// table is checked both ways): counts.
		{"Ready: PoolReady and PoolFilling (a take, a refill)", func(s *agentsv1alpha1.AgentSandboxStatus) {
			s.ReadyReplicas, s.ActiveSessions = 4, 1
			s.Conditions[0] = ready(metav1.ConditionFalse, agentsv1alpha1.ReasonPoolFilling, "4 of 5")
		}, true},
		{"Ready: PoolReady to a degraded reason", func(s *agentsv1alpha1.AgentSandboxStatus) {
			s.Conditions[0] = ready(metav1.ConditionFalse, agentsv1alpha1.ReasonPodsNotReady, "4 of 5")
		}, false},
		{"Ready: PoolFilling to a degraded reason", func(s *agentsv1alpha1.AgentSandboxStatus) {
			s.Conditions[0] = ready(metav1.ConditionFalse, agentsv1alpha1.ReasonQuotaLimited, "4 of 5")
		}, false},
		{"Ready: a pairing no reconcile writes (True, PoolFilling)", func(s *agentsv1alpha1.AgentSandboxStatus) {
			s.Conditions[0] = ready(metav1.ConditionTrue, agentsv1alpha1.ReasonPoolFilling, "5 of 5")
		}, false},
		{"Ready: condition reason", func(s *agentsv1alpha1.AgentSandboxStatus) {
			s.Conditions[0].Reason = agentsv1alpha1.ReasonRuntimeClassNotFound
		}, false},
		{"Degraded: status and reason", func(s *agentsv1alpha1.AgentSandboxStatus) {
			s.Conditions[1].Status, s.Conditions[1].Reason = metav1.ConditionTrue, agentsv1alpha1.ReasonPodsNotReady
		}, false},
		{"Degraded and Ready together (a pod that timed out)", func(s *agentsv1alpha1.AgentSandboxStatus) {
			s.Conditions[0] = ready(metav1.ConditionFalse, agentsv1alpha1.ReasonPodsNotReady, "4 of 5")
			s.Conditions[1].Status, s.Conditions[1].Reason = metav1.ConditionTrue, agentsv1alpha1.ReasonPodsNotReady
		}, false},
		{"a new condition", func(s *agentsv1alpha1.AgentSandboxStatus) {
			s.Conditions = append(s.Conditions, metav1.Condition{Type: agentsv1alpha1.SandboxDegraded, Status: metav1.ConditionFalse})
		}, false},
		{"condition observedGeneration", func(s *agentsv1alpha1.AgentSandboxStatus) { s.Conditions[0].ObservedGeneration = 2 }, false},
		{"generation", func(s *agentsv1alpha1.AgentSandboxStatus) { s.ObservedGeneration = 2 }, false},
		{"template", func(s *agentsv1alpha1.AgentSandboxStatus) { s.TemplateHash = "def" }, false},
		{"selector", func(s *agentsv1alpha1.AgentSandboxStatus) { s.Selector = "x=y" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := base.DeepCopy()
			tt.change(next)
			if got := onlyCountsDiffer(&base, next); got != tt.want {
				t.Errorf("onlyCountsDiffer(base, changed) = %v, want %v", got, tt.want)
			}
			if got := onlyCountsDiffer(next, &base); got != tt.want {
				t.Errorf("onlyCountsDiffer(changed, base) = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTrimPodKeepsWhatTheControllersRead(t *testing.T) {
	pod := builders.Pod("", "p").Label(agentsv1alpha1.ClassLabel, "pool").
		Annotation("io.microsoft.virtualmachine.computetopology.memory.sizeinmb", "1536").
		Node("win-0").Container("sandbox", "servercore").Ready().Obj()
	pod.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	pod.Spec.RuntimeClassName = ptr.To("hyperv")
	pod.Status.Phase, pod.Status.PodIP, pod.Status.Reason, pod.Status.Message = corev1.PodRunning, "10.0.0.1", "r", "m"
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "sandbox"}}
	got, err := trimPod(pod.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	p := got.(*corev1.Pod)
	if p.ManagedFields != nil || p.Spec.Containers != nil || p.Status.ContainerStatuses != nil {
		t.Errorf("trimPod kept managed fields, containers or container statuses: %+v", p)
	}
	if p.Labels[agentsv1alpha1.ClassLabel] != "pool" || p.Annotations["io.microsoft.virtualmachine.computetopology.memory.sizeinmb"] != "1536" || p.Spec.NodeName != "win-0" ||
		*p.Spec.RuntimeClassName != "hyperv" || !podstate.Ready(p) || p.Status.PodIP != "10.0.0.1" ||
		p.Status.Reason != "r" || p.Status.Message != "m" {
		t.Errorf("trimPod dropped something the controllers read: %+v", p)
	}
	tombstone := "not a pod"
	if got, err := trimPod(tombstone); err != nil || got != tombstone {
		t.Errorf("trimPod(non-pod) = %v, %v; want it unchanged", got, err)
	}
}

// The nodes' builds are listed once and remembered until a node watch says they changed.
func TestNodeBuildsAreListedAgainOnlyAfterAChange(t *testing.T) {
	node := func(name, build string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{osLabel: "windows", windows.BuildLabel: build}}}
	}
	c := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(node("a", "10.0.20348")).Build()
	builds := &nodeBuilds{}
	ctx := context.Background()
	get := func() []uint16 {
		t.Helper()
		b, err := builds.get(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if got := get(); !slices.Equal(got, []uint16{20348}) {
		t.Fatalf("builds = %v, want [20348]", got)
	}
	if err := c.Create(ctx, node("b", "10.0.26100")); err != nil {
		t.Fatal(err)
	}
	if got := get(); !slices.Equal(got, []uint16{20348}) {
		t.Errorf("builds = %v before any change was signalled, want the remembered [20348]", got)
	}
	builds.changed()
	if got := get(); !slices.Equal(got, []uint16{20348, 26100}) {
		t.Errorf("builds = %v after a change, want [20348 26100]", got)
	}
}

func TestIsolationMismatch(t *testing.T) {
	tests := []struct {
		isolation agentsv1alpha1.IsolationMode
		handler   string
		mismatch  bool
	}{
		{agentsv1alpha1.IsolationHyperV, "runhcs-wcow-hypervisor", false},
		{agentsv1alpha1.IsolationHyperV, "runhcs-wcow-hypervisor-17763", false},
		{"", "runhcs-wcow-hypervisor", false}, // HyperV is the default
		{agentsv1alpha1.IsolationHyperV, "runhcs-wcow-process", true},
		{agentsv1alpha1.IsolationHyperV, "runc", true},
		{agentsv1alpha1.IsolationProcess, "runhcs-wcow-process", false},
		{agentsv1alpha1.IsolationProcess, "runhcs-wcow-hypervisor", true},
	}
	for _, tt := range tests {
		t.Run(string(tt.isolation)+"/"+tt.handler, func(t *testing.T) {
			sb := builders.AgentSandbox("ns", "pool").Isolation(tt.isolation).Obj()
			blk := isolationMismatch(sb, &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "rc"}, Handler: tt.handler})
			if (blk != nil) != tt.mismatch {
				t.Fatalf("isolationMismatch = %v, want mismatch %v", blk, tt.mismatch)
			}
			if blk != nil && (blk.Reason != agentsv1alpha1.ReasonRuntimeClassMismatch || !strings.Contains(blk.Message, tt.handler)) {
				t.Errorf("blocker %+v: want reason RuntimeClassMismatch and a message naming handler %q", blk, tt.handler)
			}
		})
	}
}

func TestInternetEgressExcept(t *testing.T) {
	tests := []struct {
		name    string
		flag    string
		want    []string
		wantErr bool
	}{
		{"empty: none", "", nil, false},
		{"both families, spaces, host bits masked", " 10.1.2.3/8, fd00:ec2::254/128 ", []string{"10.0.0.0/8", "fd00:ec2::254/128"}, false},
		{"not a CIDR", "10.0.0.0", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCIDRs(tt.flag)
			if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
				t.Fatalf("ParseCIDRs(%q) = %v, %v; want %v, error %v", tt.flag, got, err, tt.want, tt.wantErr)
			}
		})
	}

	sb := builders.AgentSandbox("ns", "pool").Obj()
	np := desiredEgressPolicy(sb, DefaultInternetEgressExcept)
	byCIDR := map[string][]string{}
	for _, peer := range np.Spec.Egress[0].To {
		byCIDR[peer.IPBlock.CIDR] = peer.IPBlock.Except
	}
	for _, must := range []struct{ block, except string }{
		{"0.0.0.0/0", "169.254.0.0/16"},   // cloud metadata
		{"0.0.0.0/0", "168.63.129.16/32"}, // Azure WireServer
		{"0.0.0.0/0", "10.0.0.0/8"},       // cluster networks
		{"::/0", "fc00::/7"},              // AWS IPv6 metadata among them
	} {
		if !slices.Contains(byCIDR[must.block], must.except) {
			t.Errorf("egress Internet: %s does not except %s (excepts %v)", must.block, must.except, byCIDR[must.block])
		}
	}
	for block, except := range byCIDR {
		for _, e := range except {
			if strings.Contains(e, ":") != strings.Contains(block, ":") {
				t.Errorf("%s excepts %s, of the other address family: the API server refuses that", block, e)
			}
		}
	}
}

func TestSpecProblems(t *testing.T) {
	var overflow agentsv1alpha1.Duration
	if err := overflow.UnmarshalJSON([]byte(`"3000000h"`)); err != nil {
		t.Fatal(err)
	}
	valid := &agentsv1alpha1.Duration{Duration: time.Minute}
	tests := []struct {
		name    string
		session agentsv1alpha1.AgentSessionSpec
		class   agentsv1alpha1.AgentSandboxSpec
		want    string // a part of the problem, "" for none
	}{
		{"valid", agentsv1alpha1.AgentSessionSpec{MaxLifetime: valid}, agentsv1alpha1.AgentSandboxSpec{Lifetime: agentsv1alpha1.LifetimeSpec{IdleTimeout: valid}}, ""},
		{"session ttl", agentsv1alpha1.AgentSessionSpec{MaxLifetime: valid, TTLAfterFinished: &overflow}, agentsv1alpha1.AgentSandboxSpec{}, `spec.ttlAfterFinished "3000000h"`},
		{"class idle", agentsv1alpha1.AgentSessionSpec{}, agentsv1alpha1.AgentSandboxSpec{Lifetime: agentsv1alpha1.LifetimeSpec{IdleTimeout: &overflow}}, `spec.lifetime.idleTimeout "3000000h"`},
		{"a Secret in a template's env (beyond the CRD's CEL budget)", agentsv1alpha1.AgentSessionSpec{}, agentsv1alpha1.AgentSandboxSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c",
			Env: []corev1.EnvVar{{Name: "TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "s"}, Key: "k"}}}}}}}}}, "secretKeyRef"},
		{"a hostPort (beyond the CRD's CEL budget)", agentsv1alpha1.AgentSessionSpec{}, agentsv1alpha1.AgentSandboxSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c",
			Ports: []corev1.ContainerPort{{ContainerPort: 80, HostPort: 8080}}}}}}}, "hostPort"},
		{"class quiet period", agentsv1alpha1.AgentSessionSpec{}, agentsv1alpha1.AgentSandboxSpec{Replenish: agentsv1alpha1.ReplenishSpec{QuietPeriod: &overflow}}, `spec.replenish.quietPeriod "3000000h"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := sessionSpecProblem(&agentsv1alpha1.AgentSession{Spec: tt.session}) + sandboxSpecProblem(&agentsv1alpha1.AgentSandbox{Spec: tt.class})
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("problem = %q, want one naming %q", got, tt.want)
			}
		})
	}
}
