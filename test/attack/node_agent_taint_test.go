//go:build !windows

package attack

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/nodeagent"
	"github.com/hyperpool/hyperpool/internal/nodeagent/nodeagenttest"
	"github.com/hyperpool/hyperpool/internal/uvm"
	"github.com/hyperpool/hyperpool/test/framework"
)

// taintRelease is the chart release whose node agent has nodeAgent.leakTaint.enabled; its
// service account, RBAC and admission policy are its own, apart from the default release's.
const taintRelease = "taint"

var taintAgentUser = "system:serviceaccount:" + managerNamespace + ":" + taintRelease + "-hyperpool-node-agent"

// The node agent, as its own identity with the chart's RBAC and admission policy
// (nodeAgent.leakTaint.enabled), against the real API server, over a fake HCS: no leak
// taint while every VM belongs to a live pod; the taint once a deleted pod's VM stays (from
// the agent's second look); gone once the VM's memory is freed; the Node's other taint kept
// throughout. The policy lets the agent write its taint and its size report, and nothing
// else of the kind: no NoSchedule, no other key, no other taint removed. With the taint off
// (the default release) it may not set even its own key.
func TestNodeAgentLeakTaint(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	installTaintAgentPolicy(t)
	ns := env.CreateNamespace(t)
	name := fmt.Sprintf("leak-agent-%d", time.Now().UnixNano()%1_000_000)
	keep := corev1.Taint{Key: "example.com/dedicated", Value: "agents", Effect: corev1.TaintEffectNoSchedule}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"hyperpool.io/test": "leak-taint"}},
		Spec: corev1.NodeSpec{Unschedulable: true, Taints: []corev1.Taint{keep}}}
	mustCreate(t, admin, node)
	t.Cleanup(func() { _ = admin.Delete(context.Background(), node) })

	// Two pods bound to the node (no kubelet runs them): one of a class, one that will go.
	pods := map[string]*corev1.Pod{}
	for _, p := range []string{"live", "gone"} {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: p,
			Labels:      map[string]string{agentsv1alpha1.ClassLabel: "win2022"},
			Annotations: map[string]string{"io.microsoft.virtualmachine.computetopology.memory.sizeinmb": "1536"}},
			Spec: corev1.PodSpec{NodeName: name, Containers: []corev1.Container{{Name: "c", Image: "example.com/agent"}}}}
		mustCreate(t, admin, pod)
		pods[p] = pod
	}
	host, cri := &nodeagenttest.Host{}, nodeagenttest.Runtime{}
	for _, p := range pods {
		sandbox := "sb-" + p.Name
		cri[sandbox] = nodeagent.PodRef{Namespace: ns, Name: p.Name, UID: p.UID, SandboxID: sandbox, State: nodeagent.SandboxReady}
		host.VMs = append(host.VMs, nodeagent.UtilityVM{ID: sandbox + "@vm", Created: time.Now().Add(-time.Hour), MemoryAssignedBytes: 3 << 30})
	}

	agentClient := impersonate(t, nodeAgentIdentity(taintAgentUser, name),
		func(ctx context.Context, c client.Client) error {
			_, err := nodeagent.CheckNode(ctx, c, name)
			return err
		})
	now := time.Now()
	recorder := events.NewFakeRecorder(10)
	agent := &nodeagent.Agent{
		Config: nodeagent.Config{NodeName: name, GracePeriod: 10 * time.Minute, Interval: time.Second,
			LeakTaintKey: nodeagent.DefaultLeakTaintKey, LeakTaintThreshold: 2 << 30},
		Host: host, Resolver: cri,
		Pods:    nodeagent.APIPodLister{Reader: agentClient, NodeName: name},
		Node:    nodeagent.KubeNode{Reader: agentClient, Client: agentClient, Recorder: recorder, NodeName: name, NodeUID: node.UID},
		Metrics: nodeagent.NewMetrics(prometheus.NewRegistry()),
		Log:     logr.Discard(),
		Now:     func() time.Time { return now },
	}
	// round runs the agent once, 30 s after the last, and returns the node's taints.
	round := func(what string) []corev1.Taint {
		t.Helper()
		now = now.Add(30 * time.Second)
		if _, err := agent.RunOnce(ctx); err != nil {
			t.Fatalf("%s: agent round: %v", what, err)
		}
		n := &corev1.Node{}
		if err := admin.Get(ctx, client.ObjectKey{Name: name}, n); err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(n.Spec.Taints, func(x corev1.Taint) bool { return x.MatchTaint(&keep) && x.Value == keep.Value }) {
			t.Errorf("%s: the node's own taint is gone: %v", what, n.Spec.Taints)
		}
		return n.Spec.Taints
	}
	leak := corev1.Taint{Key: nodeagent.DefaultLeakTaintKey, Effect: corev1.TaintEffectPreferNoSchedule}
	tainted := func(taints []corev1.Taint) bool {
		return slices.ContainsFunc(taints, func(x corev1.Taint) bool { return x.MatchTaint(&leak) })
	}

	for i := range 3 {
		if taints := round("every VM's pod live"); tainted(taints) {
			t.Fatalf("round %d, every VM attributed to a live pod: tainted %v", i, taints)
		}
	}
	// The size report went through the policy: the VMs got 3Gi where their pods asked 1536Mi.
	n := &corev1.Node{}
	if err := admin.Get(ctx, client.ObjectKey{Name: name}, n); err != nil {
		t.Fatal(err)
	}
	if reports, err := uvm.ParseSizeReports(n.Annotations[uvm.SizesAnnotation]); err != nil || len(reports) != 1 || reports[0].Applied() || reports[0].VMs != 2 {
		t.Errorf("size report on the node = %q (%v), want 2 VMs not at their size", n.Annotations[uvm.SizesAnnotation], err)
	}

	// The pod goes; its VM stays (the shim crashed). Seen gone once: a teardown, not a leak.
	if err := admin.Delete(ctx, pods["gone"], client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	delete(cri, "sb-gone") // the kubelet removed the sandbox; the runtime forgot it
	waitPodGone(t, ns, "gone")
	if taints := round("the pod just deleted"); tainted(taints) {
		t.Fatalf("tainted in the round the pod was first seen gone: %v", taints)
	}
	if taints := round("the VM still there"); !tainted(taints) {
		t.Fatalf("3Gi leaked over a 2Gi threshold, not tainted: %v", taints)
	}
	select {
	case e := <-recorder.Events:
		if !strings.Contains(e, nodeagent.ReasonLeakTainted) {
			t.Errorf("event %q, want %s", e, nodeagent.ReasonLeakTainted)
		}
	default:
		t.Error("no LeakedMemoryTainted Event")
	}

	// The policy holds the agent to that one taint, PreferNoSchedule, on its own node.
	patch := func(p string) error {
		return agentClient.Patch(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, client.RawPatch(types.MergePatchType, []byte(p)))
	}
	taintsJSON := func(extra string) string {
		return fmt.Sprintf(`{"spec":{"taints":[{"key":%q,"value":%q,"effect":"NoSchedule"}%s]}}`, keep.Key, keep.Value, extra)
	}
	wantRefused(t, "its key as NoSchedule", patch(taintsJSON(fmt.Sprintf(`,{"key":%q,"effect":"NoSchedule"}`, leak.Key))),
		"spec.taints", "only its own PreferNoSchedule taint "+leak.Key)
	wantRefused(t, "another key", patch(taintsJSON(fmt.Sprintf(`,{"key":%q,"effect":"PreferNoSchedule"},{"key":"example.com/x","effect":"PreferNoSchedule"}`, leak.Key))),
		"spec.taints")
	wantRefused(t, "remove the node's other taint", patch(fmt.Sprintf(`{"spec":{"taints":[{"key":%q,"effect":"PreferNoSchedule"}]}}`, leak.Key)),
		"spec.taints", "may not change the other taints")
	wantRefused(t, "cordon change with the taint", patch(`{"spec":{"unschedulable":false}}`), "spec")

	// The VM is terminated by hand (hcsdiag kill): the memory is free, the taint goes.
	host.VMs = slices.DeleteFunc(host.VMs, func(vm nodeagent.UtilityVM) bool { return vm.ID == "sb-gone@vm" })
	if taints := round("the VM freed"); tainted(taints) {
		t.Fatalf("taint kept after the leaked memory was freed: %v", taints)
	}

	// With nodeAgent.leakTaint.enabled false (the default release), not even its key.
	installNodeAgentPolicy(t)
	off := impersonate(t, rest.ImpersonationConfig{UserName: nodeAgentUser, Groups: []string{"system:authenticated"},
		Extra: map[string][]string{"authentication.kubernetes.io/node-name": {name}}}, nil)
	_, err := nodeagent.KubeNode{Reader: off, Client: off, NodeName: name}.SetTaint(ctx, leak, true)
	wantRefused(t, "the leak taint with the taint off", err, "has none (nodeAgent.leakTaint.enabled is false)")
}

func waitPodGone(t *testing.T, ns, name string) {
	t.Helper()
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		err := admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &corev1.Pod{})
		return apierrors.IsNotFound(err), fmt.Sprintf("pod %s/%s: %v", ns, name, err)
	})
}

// installTaintAgentPolicy applies what the chart renders for release taintRelease with
// nodeAgent.leakTaint.enabled, but its DaemonSet, and waits until its policy is enforced.
func installTaintAgentPolicy(t *testing.T) {
	t.Helper()
	out, err := framework.RenderChart(env, taintRelease, managerNamespace, "--set", "nodeAgent.enabled=true",
		"--set", "nodeAgent.leakTaint.enabled=true", "--show-only", "templates/node-agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte("--leak-taint-threshold=4Gi")) {
		t.Errorf("the DaemonSet does not pass the taint flags:\n%s", out)
	}
	// Everything but the DaemonSet: the test's agent runs in-process.
	if _, err := framework.CreateManifest(context.Background(), admin, out, "DaemonSet"); err != nil {
		t.Fatal(err)
	}
	nodes := &corev1.NodeList{}
	if err := admin.List(context.Background(), nodes); err != nil || len(nodes.Items) == 0 {
		t.Fatalf("listing nodes: %v (%d)", err, len(nodes.Items))
	}
	agent := impersonate(t, rest.ImpersonationConfig{UserName: taintAgentUser, Groups: []string{"system:authenticated"}}, nil)
	policy := taintRelease + "-hyperpool-node-agent"
	eventually(t, inForceTimeout, func(ctx context.Context) (bool, string) {
		err := agent.Patch(ctx, nodes.Items[0].DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"probe":"x"}}}`)), client.DryRunAll)
		return err != nil && strings.Contains(err.Error(), "ValidatingAdmissionPolicy '"+policy+"'"), fmt.Sprintf("policy %s not in force yet: %v", policy, err)
	})
}
