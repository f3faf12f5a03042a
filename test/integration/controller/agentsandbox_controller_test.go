//go:build !windows

package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	hcsannotations "github.com/Microsoft/hcsshim/pkg/annotations"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	nodev1 "k8s.io/api/node/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/podstate"
	"github.com/hyperpool/hyperpool/test/builders"
	"github.com/hyperpool/hyperpool/test/testbed"
)

func TestPoolFillsWithWindowsPods(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	create(t, builders.AgentSandbox(ns, "pool").Replicas(3).Obj())
	got := waitPoolReady(t, ns, "pool", 3, waitTimeout)

	if got.Status.Footprint == nil || got.Status.Footprint.PerSandbox.Memory.String() != "1536Mi" || got.Status.Footprint.PerSandbox.VCPUs != 2 {
		t.Errorf("footprint per sandbox = %+v, want 1536Mi (1Gi limit + 256 MB, rounded up to 512 MB) and 2 vCPUs", got.Status.Footprint)
	}
	if got.Status.Footprint != nil && got.Status.Footprint.Total.Memory.String() != "4608Mi" {
		t.Errorf("footprint total = %s, want 4608Mi for 3 sandboxes", got.Status.Footprint.Total.Memory.String())
	}
	if c := condition(got.Status.Conditions, agentsv1alpha1.SandboxReady); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Ready condition = %+v, want True", c)
	}

	for _, p := range warmPods(t, ns, "pool") {
		checkSandboxPod(t, &p, "hyperv", []string{build2022})
		if p.Annotations[hcsannotations.MemorySizeInMB] != "1536" {
			t.Errorf("pod %s: annotation %s = %q, want 1536", p.Name, hcsannotations.MemorySizeInMB, p.Annotations[hcsannotations.MemorySizeInMB])
		}
		if owner := metav1.GetControllerOf(&p); owner == nil || owner.Kind != "AgentSandbox" || owner.Name != "pool" {
			t.Errorf("pod %s: controller = %+v, want AgentSandbox pool", p.Name, owner)
		}
	}
}

// checkSandboxPod asserts what every sandbox pod gets on top of its template.
func checkSandboxPod(t *testing.T, p *corev1.Pod, runtimeClass string, builds []string) {
	t.Helper()
	if p.Spec.RuntimeClassName == nil || *p.Spec.RuntimeClassName != runtimeClass {
		t.Errorf("pod %s: runtimeClassName = %v, want %s", p.Name, p.Spec.RuntimeClassName, runtimeClass)
	}
	if p.Spec.NodeSelector["kubernetes.io/os"] != "windows" {
		t.Errorf("pod %s: nodeSelector = %v, want kubernetes.io/os=windows", p.Name, p.Spec.NodeSelector)
	}
	if !slices.ContainsFunc(p.Spec.Tolerations, func(tol corev1.Toleration) bool { return tol.Key == "os" && tol.Value == "windows" }) {
		t.Errorf("pod %s: tolerations %v lack os=windows:NoSchedule", p.Name, p.Spec.Tolerations)
	}
	terms := p.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	for _, term := range terms {
		i := slices.IndexFunc(term.MatchExpressions, func(r corev1.NodeSelectorRequirement) bool { return r.Key == "node.kubernetes.io/windows-build" })
		if i < 0 {
			t.Errorf("pod %s: node affinity term %v has no windows-build requirement", p.Name, term)
			continue
		}
		for _, b := range builds {
			if !slices.Contains(term.MatchExpressions[i].Values, b) {
				t.Errorf("pod %s: windows-build affinity %v lacks %s", p.Name, term.MatchExpressions[i].Values, b)
			}
		}
	}
	if p.Spec.AutomountServiceAccountToken == nil || *p.Spec.AutomountServiceAccountToken {
		t.Errorf("pod %s: automountServiceAccountToken = %v, want false", p.Name, p.Spec.AutomountServiceAccountToken)
	}
	if sc := p.Spec.SecurityContext; sc == nil || sc.WindowsOptions == nil || ptr.Deref(sc.WindowsOptions.RunAsUserName, "") != "ContainerUser" {
		t.Errorf("pod %s: runAsUserName is not ContainerUser: %+v", p.Name, p.Spec.SecurityContext)
	}
	if p.Labels[agentsv1alpha1.TemplateHashLabel] == "" {
		t.Errorf("pod %s: no template-hash label", p.Name)
	}
}

func TestScaleToZeroAndBack(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	create(t, builders.AgentSandbox(ns, "pool").Replicas(3).Obj())
	waitPoolReady(t, ns, "pool", 3, waitTimeout)

	scale(t, ns, "pool", 0)
	waitPoolReady(t, ns, "pool", 0, waitTimeout)
	scale(t, ns, "pool", 2)
	waitPoolReady(t, ns, "pool", 2, waitTimeout)
}

// scale sets the class's replicas through its /scale subresource, as kubectl scale, an HPA
// or KEDA do, and fails the test if the subresource refuses or does not take the value.
func scale(t *testing.T, ns, name string, replicas int32) {
	t.Helper()
	sb := &agentsv1alpha1.AgentSandbox{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	patch := client.RawPatch(types.MergePatchType, fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, replicas))
	got := &autoscalingv1.Scale{}
	if err := k8s.SubResource("scale").Patch(context.Background(), sb, patch, client.WithSubResourceBody(got)); err != nil {
		t.Fatalf("scaling %s to %d through the /scale subresource: %v", name, replicas, err)
	}
	if got.Name != name || got.Spec.Replicas != replicas {
		t.Fatalf("the /scale subresource of %s answered %s with spec.replicas %d, want %d", name, got.Name, got.Spec.Replicas, replicas)
	}
}

func TestBuildFiltering(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)

	// A 2019 image with Hyper-V runs on 2019 and 2022 nodes.
	create(t, builders.AgentSandbox(ns, "hyperv-2019").Replicas(2).ImageBuild(17763).Obj())
	// A 2022 image with process isolation runs on 2022 nodes only.
	create(t, builders.AgentSandbox(ns, "process-2022").Replicas(2).Isolation(agentsv1alpha1.IsolationProcess).Obj())
	// A 2025 image runs nowhere here.
	create(t, builders.AgentSandbox(ns, "hyperv-2025").Replicas(1).ImageBuild(26100).Obj())

	waitPoolReady(t, ns, "hyperv-2019", 2, waitTimeout)
	for _, p := range warmPods(t, ns, "hyperv-2019") {
		checkSandboxPod(t, &p, "hyperv", []string{build2019, build2022})
	}
	waitPoolReady(t, ns, "process-2022", 2, waitTimeout)
	for _, p := range warmPods(t, ns, "process-2022") {
		checkSandboxPod(t, &p, "process", []string{build2022})
		if _, ok := p.Annotations[hcsannotations.MemorySizeInMB]; ok {
			t.Errorf("process-isolated pod %s has a VM memory annotation", p.Name)
		}
		if !strings.HasPrefix(p.Spec.NodeName, "win2022") {
			t.Errorf("process-isolated 2022 pod %s landed on node %s", p.Name, p.Spec.NodeName)
		}
	}

	sb := waitDegraded(t, ns, "hyperv-2025", agentsv1alpha1.ReasonNoCompatibleNodes)
	msg := condition(sb.Status.Conditions, agentsv1alpha1.SandboxDegraded).Message
	for _, want := range []string{"26100", "HyperV", "17763", "20348"} {
		if !strings.Contains(msg, want) {
			t.Errorf("NoCompatibleNodes message %q does not name %s", msg, want)
		}
	}
	if n := len(warmPods(t, ns, "hyperv-2025")); n != 0 {
		t.Errorf("pool with no compatible node created %d pods, want 0", n)
	}
	assertSettled(t, "agentsandbox", ns, "hyperv-2025")
}

func waitDegraded(t *testing.T, ns, name, reason string) *agentsv1alpha1.AgentSandbox {
	t.Helper()
	sb := &agentsv1alpha1.AgentSandbox{}
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, sb); err != nil {
			return false, err.Error()
		}
		c := condition(sb.Status.Conditions, agentsv1alpha1.SandboxDegraded)
		return c != nil && c.Status == metav1.ConditionTrue && c.Reason == reason, fmt.Sprintf("Degraded = %+v, want reason %s", c, reason)
	})
	return sb
}

func TestRuntimeClassNotFoundThenCreated(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	rcName := "hyperv-" + ns
	create(t, builders.AgentSandbox(ns, "pool").Replicas(1).RuntimeClass(rcName).Obj())

	got := waitDegraded(t, ns, "pool", agentsv1alpha1.ReasonRuntimeClassNotFound)
	if msg := condition(got.Status.Conditions, agentsv1alpha1.SandboxDegraded).Message; !strings.Contains(msg, rcName) {
		t.Errorf("message %q does not name the RuntimeClass %s", msg, rcName)
	}
	rc := &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: rcName}, Handler: "runhcs-wcow-hypervisor"}
	create(t, rc)
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), rc) })
	waitPoolReady(t, ns, "pool", 1, waitTimeout)
}

// A RuntimeClass deleted while its pool serves sessions: running sandboxes are left alone,
// the pool stops creating (Degraded, RuntimeClassNotFound) without looping, a session that
// needs a new sandbox waits with the reason, and all recovers when the class is back.
func TestRuntimeClassDeletedMidFlight(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	rcName := "hyperv-" + ns
	rc := &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: rcName}, Handler: "runhcs-wcow-hypervisor"}
	create(t, rc)
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), rc) })
	create(t, builders.AgentSandbox(ns, "pool").Replicas(2).RuntimeClass(rcName).Obj())
	waitPoolReady(t, ns, "pool", 2, waitTimeout)
	create(t, builders.AgentSession(ns, "before", "pool").Obj())
	before := waitSession(t, ns, "before", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
	waitPoolReady(t, ns, "pool", 2, waitTimeout) // refilled: no creation in flight

	if err := k8s.Delete(context.Background(), rc); err != nil {
		t.Fatal(err)
	}
	waitDegraded(t, ns, "pool", agentsv1alpha1.ReasonRuntimeClassNotFound)
	// The warm pods left still bind; the next session needs a new pod and waits.
	for _, name := range []string{"warm-left-0", "warm-left-1"} {
		create(t, builders.AgentSession(ns, name, "pool").Obj())
		if s := waitSession(t, ns, name, waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady)); s.Status.StartType != agentsv1alpha1.StartWarm {
			t.Errorf("session %s: start %s, want Warm (a pod left in the pool)", name, s.Status.StartType)
		}
	}
	create(t, builders.AgentSession(ns, "stuck", "pool").Obj())
	stuck := waitSession(t, ns, "stuck", waitTimeout, "Pending with RuntimeClassNotFound", pendingWith(agentsv1alpha1.ReasonRuntimeClassNotFound))
	if msg := condition(stuck.Status.Conditions, agentsv1alpha1.SessionReadyCondition).Message; !strings.Contains(msg, rcName) {
		t.Errorf("message %q does not name the RuntimeClass %s", msg, rcName)
	}
	assertSettled(t, "agentsandbox", ns, "pool")
	assertSettled(t, "agentsession", ns, "stuck")
	if s := getSession(t, ns, "before"); s.Status.Phase != agentsv1alpha1.SessionReady || s.Status.PodName != before.Status.PodName {
		t.Errorf("session before is %s on pod %s; want still Ready on %s", s.Status.Phase, s.Status.PodName, before.Status.PodName)
	}
	getPod(t, ns, before.Status.PodName)

	create(t, &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: rcName}, Handler: "runhcs-wcow-hypervisor"})
	waitSession(t, ns, "stuck", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
	waitPoolReady(t, ns, "pool", 2, waitTimeout)
}

// With spec.replenish.quietPeriod, taken sandboxes are replaced once sessions stop taking
// them; below minReady Ready warm sandboxes, at once.
func TestReplenishWaitsForAQuietPool(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	const quiet = 4 * time.Second
	create(t, builders.AgentSandbox(ns, "quiet").Replicas(4).Replenish(quiet, 1).Obj())
	waitPoolReady(t, ns, "quiet", 4, waitTimeout)
	original := map[string]bool{}
	for _, p := range warmPods(t, ns, "quiet") {
		original[p.Name] = true
	}
	var lastBind time.Time
	for _, name := range []string{"take-0", "take-1"} {
		create(t, builders.AgentSession(ns, name, "quiet").Obj())
		s := waitSession(t, ns, name, waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
		lastBind = s.Status.PreciseBoundTime.Time
	}
	waitPoolReady(t, ns, "quiet", 4, waitTimeout)
	for _, p := range warmPods(t, ns, "quiet") {
		if original[p.Name] {
			continue
		}
		// Created at least quiet after the last take; creationTimestamp is rounded down to
		// the second (and the bind time written a moment after the take), hence 3 s of
		// slack. Without the quiet period a replacement comes within a second of its take.
		if earliest := lastBind.Add(quiet - 3*time.Second); p.CreationTimestamp.Time.Before(earliest) {
			t.Errorf("replacement %s created at %s, before the quiet period after the last take (%s + %s)",
				p.Name, p.CreationTimestamp.Format(time.RFC3339), lastBind.Format(time.RFC3339), quiet)
		}
	}

	// minReady: a pool that would fall below it refills at once, however long the quiet period.
	create(t, builders.AgentSandbox(ns, "busy").Replicas(2).Replenish(5*time.Minute, 2).Obj())
	waitPoolReady(t, ns, "busy", 2, waitTimeout)
	create(t, builders.AgentSession(ns, "take-busy", "busy").Obj())
	waitSession(t, ns, "take-busy", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
	waitPoolReady(t, ns, "busy", 2, waitTimeout)
}

func TestTemplateChangeRecreate(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	create(t, builders.AgentSandbox(ns, "pool").Replicas(3).
		UpdateStrategy(agentsv1alpha1.UpdateStrategy{Type: agentsv1alpha1.RecreateUpdateStrategy, MaxConcurrent: ptr.To[int32](1)}).Obj())
	waitPoolReady(t, ns, "pool", 3, waitTimeout)

	// A session holds one pod of the old template; the rollout must not touch it.
	create(t, builders.AgentSession(ns, "holder", "pool").Obj())
	held := waitSession(t, ns, "holder", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
	heldPod := getPod(t, ns, held.Status.PodName)
	oldHash := heldPod.Labels[agentsv1alpha1.TemplateHashLabel]

	changeTemplate(t, ns, "pool")
	eventually(t, 2*waitTimeout, func(context.Context) (bool, string) {
		pods := warmPods(t, ns, "pool")
		fresh := 0
		for _, p := range pods {
			if p.Labels[agentsv1alpha1.TemplateHashLabel] != oldHash && podstate.Ready(&p) {
				fresh++
			}
		}
		return fresh == 3 && len(pods) == 3, fmt.Sprintf("%d warm pods, %d of the new template and Ready; want 3 and 3", len(pods), fresh)
	})
	if p := getPod(t, ns, heldPod.Name); p.UID != heldPod.UID || !p.DeletionTimestamp.IsZero() {
		t.Errorf("the bound pod %s was replaced or deleted by the rollout", heldPod.Name)
	}
}

func TestTemplateChangeOnReplenish(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	create(t, builders.AgentSandbox(ns, "pool").Replicas(2).
		UpdateStrategy(agentsv1alpha1.UpdateStrategy{Type: agentsv1alpha1.OnReplenishUpdateStrategy}).Obj())
	before := waitPoolReady(t, ns, "pool", 2, waitTimeout)
	oldHash := before.Status.TemplateHash

	changeTemplate(t, ns, "pool")
	// Once the pool has seen the new template, its old warm pods are still there.
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		cur := &agentsv1alpha1.AgentSandbox{}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "pool"}, cur); err != nil {
			return false, err.Error()
		}
		return cur.Status.ObservedGeneration == cur.Generation && cur.Status.TemplateHash != oldHash, "pool has not observed the new template"
	})
	for _, p := range warmPods(t, ns, "pool") {
		if p.Labels[agentsv1alpha1.TemplateHashLabel] != oldHash {
			t.Fatalf("OnReplenish replaced warm pod %s before any session took it", p.Name)
		}
	}

	// A session takes an old pod; its replacement has the new template.
	create(t, builders.AgentSession(ns, "s1", "pool").Obj())
	s := waitSession(t, ns, "s1", waitTimeout, "Ready", inPhase(agentsv1alpha1.SessionReady))
	if p := getPod(t, ns, s.Status.PodName); p.Labels[agentsv1alpha1.TemplateHashLabel] != oldHash {
		t.Errorf("session took pod %s of the new template; OnReplenish hands out old pods first", p.Name)
	}
	eventually(t, waitTimeout, func(context.Context) (bool, string) {
		pods := warmPods(t, ns, "pool")
		old, fresh := 0, 0
		for _, p := range pods {
			if p.Labels[agentsv1alpha1.TemplateHashLabel] == oldHash {
				old++
			} else if podstate.Ready(&p) {
				fresh++
			}
		}
		return old == 1 && fresh == 1 && len(pods) == 2, fmt.Sprintf("warm pods: %d old, %d new Ready, %d in all; want 1, 1, 2", old, fresh, len(pods))
	})
}

func changeTemplate(t *testing.T, ns, name string) {
	t.Helper()
	sb := &agentsv1alpha1.AgentSandbox{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	patch := client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"template":{"metadata":{"labels":{"revision":"2"}}}}}`))
	if err := k8s.Patch(context.Background(), sb, patch); err != nil {
		t.Fatalf("changing the template of %s: %v", name, err)
	}
}

func getPod(t *testing.T, ns, name string) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, p); err != nil {
		t.Fatalf("getting pod %s: %v", name, err)
	}
	return p
}

func TestWarmPodsThatNeverBecomeReadyAreReplaced(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	// kwok holds these pods un-Ready far longer than the manager's deadline.
	create(t, builders.AgentSandbox(ns, "slow").Replicas(1).TemplateAnnotation(testbed.PodReadyDelayAnnotation, "600000").Obj())
	first := ""
	eventually(t, waitTimeout, func(context.Context) (bool, string) {
		pods := warmPods(t, ns, "slow")
		if len(pods) == 1 {
			first = pods[0].Name
		}
		return first != "", "no warm pod yet"
	})
	waitDegraded(t, ns, "slow", agentsv1alpha1.ReasonPodsNotReady)
	eventually(t, 2*waitTimeout, func(context.Context) (bool, string) {
		pods := warmPods(t, ns, "slow")
		return len(pods) == 1 && pods[0].Name != first, fmt.Sprintf("warm pods %d, first %s still there", len(pods), first)
	})
}

func TestEgressPolicyFollowsTheClass(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	create(t, builders.AgentSandbox(ns, "pool").Replicas(0).Egress(agentsv1alpha1.EgressNone).Obj())
	key := client.ObjectKey{Namespace: ns, Name: "pool-egress"}
	np := &networkingv1.NetworkPolicy{}
	waitPolicy := func(what string, ok func() bool) {
		t.Helper()
		eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
			err := k8s.Get(ctx, key, np)
			if err != nil {
				np = &networkingv1.NetworkPolicy{}
			}
			return ok(), fmt.Sprintf("NetworkPolicy %s: want %s; got %+v (get: %v)", key.Name, what, np.Spec, err)
		})
	}
	waitPolicy("deny all egress", func() bool {
		return np.UID != "" && len(np.Spec.Egress) == 0 && slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) &&
			np.Spec.PodSelector.MatchLabels[agentsv1alpha1.ClassLabel] == "pool"
	})

	patchEgress := func(egress string) {
		t.Helper()
		p := client.RawPatch("application/merge-patch+json", fmt.Appendf(nil, `{"spec":{"egress":%q}}`, egress))
		if err := k8s.Patch(context.Background(), &agentsv1alpha1.AgentSandbox{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pool"}}, p); err != nil {
			t.Fatal(err)
		}
	}
	patchEgress("Internet")
	waitPolicy("public addresses only, cluster and metadata ranges excepted", func() bool {
		if len(np.Spec.Egress) == 0 || len(np.Spec.Egress[0].To) == 0 || np.Spec.Egress[0].To[0].IPBlock == nil {
			return false
		}
		block := np.Spec.Egress[0].To[0].IPBlock
		return block.CIDR == "0.0.0.0/0" && slices.Contains(block.Except, "169.254.0.0/16") && slices.Contains(block.Except, "10.0.0.0/8")
	})

	// The policy stays for spec.ingress (TestIngressPolicyFollowsTheClass), without egress.
	patchEgress("Unrestricted")
	waitPolicy("no egress restriction", func() bool {
		return np.UID != "" && !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) && len(np.Spec.Egress) == 0
	})
}
