//go:build !windows

package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/runtimereport"
	"github.com/hyperpool/hyperpool/test/builders"
	"github.com/hyperpool/hyperpool/test/testbed"
)

// A class that requires verified nodes, against node agents' reports written to the Nodes
// as the agent writes them (annotation and label): its pods wait while no node verified the
// handler (RuntimeReady False, NoVerifiedNode), then go only to the verified node while
// another reports dropped annotations (AnnotationsDropped, naming that node and the fix,
// with one Warning Event); once every node verified it, RuntimeReady is True.
//
// The test has nodes, a handler and a RuntimeClass of its own: only its class uses the
// handler, and only its pods run on its nodes.
func TestRequireVerifiedRuntimePlacesPodsAndReportsTheHandler(t *testing.T) {
	t.Parallel()
	ns := env.CreateNamespace(t)
	handler := "runhcs-wcow-hypervisor-t" + ns[len(ns)-5:] // the namespace's random suffix; a handler is a DNS label
	rcName := "verified-" + ns
	env.CreateRuntimeClass(t, rcName, handler)
	nodes := env.CreateOwnWindowsNodes(t, ns, 2, build2022)
	bad, good := nodes[0].Name, nodes[1].Name

	create(t, builders.AgentSandbox(ns, "verified").Replicas(1).RuntimeClass(rcName).RequireVerifiedRuntime().
		OnNodesOf(testbed.OwnNodesKey, ns).Obj())

	// No node verified the handler: the pod carries the requirement and is not scheduled.
	waitRuntimeReady(t, ns, "verified", agentsv1alpha1.ReasonNoVerifiedNode, "no node agent has checked runtime handler")
	var pod corev1.Pod
	eventually(t, waitTimeout, func(context.Context) (bool, string) {
		pods := warmPods(t, ns, "verified")
		if len(pods) != 1 {
			return false, fmt.Sprintf("%d warm pods, want 1", len(pods))
		}
		pod = pods[0]
		return true, ""
	})
	want := corev1.NodeSelectorRequirement{Key: runtimereport.LabelKey(handler), Operator: corev1.NodeSelectorOpIn, Values: []string{runtimereport.LabelValue}}
	terms := pod.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	for i, term := range terms {
		if !slices.ContainsFunc(term.MatchExpressions, func(r corev1.NodeSelectorRequirement) bool {
			return r.Key == want.Key && r.Operator == want.Operator && slices.Equal(r.Values, want.Values)
		}) {
			t.Fatalf("pod %s's node affinity term %d lacks %+v: %+v", pod.Name, i, want, term.MatchExpressions)
		}
	}
	if pod.Spec.NodeName != "" {
		t.Fatalf("pod %s was scheduled to %s before any node verified handler %s", pod.Name, pod.Spec.NodeName, handler)
	}

	// One node's containerd drops the sizing annotations, the other's is right.
	dropped := runtimereport.HandlerReport{Handler: handler, Registered: true, HyperV: true,
		Detail: "pod_annotations [] drop io.microsoft.virtualmachine.computetopology.memory.sizeinmb"}
	ready := runtimereport.HandlerReport{Handler: handler, Registered: true, HyperV: true, PodAnnotations: true}
	reportOn(t, bad, dropped)
	reportOn(t, good, ready)

	// Both reports count once the message says 2 nodes checked the handler.
	c := waitRuntimeReady(t, ns, "verified", agentsv1alpha1.ReasonAnnotationsDropped, "on 1 of 2 node(s)")
	for _, text := range []string{bad + " (AnnotationsDropped)", "pod_annotations = ['io.microsoft.virtualmachine.*']", "its pods go only to the 1 verified node(s)"} {
		if !strings.Contains(c.Message, text) {
			t.Errorf("RuntimeReady message %q does not say %q", c.Message, text)
		}
	}
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		p := &corev1.Pod{}
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(&pod), p); err != nil {
			return false, err.Error()
		}
		return p.Spec.NodeName == good, fmt.Sprintf("pod %s on node %q, want the verified node %s", p.Name, p.Spec.NodeName, good)
	})
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		n, err := classWarnings(ctx, ns, "verified", agentsv1alpha1.ReasonAnnotationsDropped)
		return n == 1, fmt.Sprintf("%d AnnotationsDropped Warnings, want 1 (%v)", n, err)
	})

	// The bad node is fixed: every node that checked the handler verified it.
	reportOn(t, bad, ready)
	waitRuntimeReady(t, ns, "verified", agentsv1alpha1.ReasonRuntimeVerified, "the node agents of 2 node(s)")
}

// reportOn writes a node agent's runtime report on one handler to a Node, with the label
// the agent keeps for a ready handler (and without it for one that is not).
func reportOn(t *testing.T, node string, h runtimereport.HandlerReport) {
	t.Helper()
	label := any(nil)
	if h.Ready() {
		label = runtimereport.LabelValue
	}
	patch := map[string]any{"metadata": map[string]any{
		"annotations": map[string]any{runtimereport.Annotation: runtimereport.Format(runtimereport.Report{ConfigVersion: 3, Handlers: []runtimereport.HandlerReport{h}})},
		"labels":      map[string]any{runtimereport.LabelKey(h.Handler): label},
	}}
	body, err := json.Marshal(patch)
	if err != nil {
		t.Fatal(err)
	}
	if err := k8s.Patch(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, client.RawPatch(types.MergePatchType, body)); err != nil {
		t.Fatalf("reporting on node %s: %v", node, err)
	}
}

// waitRuntimeReady waits for the class's RuntimeReady condition with the reason and a
// message containing text.
func waitRuntimeReady(t *testing.T, ns, name, reason, text string) *metav1.Condition {
	t.Helper()
	var c *metav1.Condition
	eventually(t, waitTimeout, func(ctx context.Context) (bool, string) {
		sb := &agentsv1alpha1.AgentSandbox{}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, sb); err != nil {
			return false, err.Error()
		}
		c = meta.FindStatusCondition(sb.Status.Conditions, agentsv1alpha1.SandboxRuntimeReady)
		return c != nil && c.Reason == reason && strings.Contains(c.Message, text),
			fmt.Sprintf("%s condition = %+v, want reason %s and %q", agentsv1alpha1.SandboxRuntimeReady, c, reason, text)
	})
	return c
}

// runtimeWarnings counts the Warnings of a reason about a class, repeats included.
func classWarnings(ctx context.Context, ns, class, reason string) (int, error) {
	events := &eventsv1.EventList{}
	if err := k8s.List(ctx, events, client.InNamespace(ns)); err != nil {
		return 0, err
	}
	n := 0
	for _, e := range events.Items {
		if e.Type != corev1.EventTypeWarning || e.Reason != reason || e.Regarding.Name != class {
			continue
		}
		n++
		if e.Series != nil && e.Series.Count > 1 {
			n += int(e.Series.Count) - 1
		}
	}
	return n, nil
}
