//go:build !windows

package attack

import (
	"context"
	"fmt"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/hyperpool/hyperpool/internal/runtimereport"
	"github.com/hyperpool/hyperpool/test/builders"
	"github.com/hyperpool/hyperpool/test/testbed"
)

// A class author asks for verified nodes (spec.placement.requireVerifiedRuntime) and writes
// a template whose node affinity has a second term that every node of the test matches:
// node affinity terms are ORed, so a requirement added to one term only would let the pods
// out through the other. While no node is verified the four warm pods are unschedulable;
// then all of them land on the one node whose agent verified the handler, none on the other.
func TestClassAuthorCannotWriteAPlacementAroundVerifiedNodes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ns := env.CreateNamespace(t)
	handler := "runhcs-wcow-hypervisor-p" + ns[len(ns)-5:] // a DNS label of its own
	rcName := "verified-" + ns
	env.CreateRuntimeClass(t, rcName, handler)
	nodes := env.CreateOwnWindowsNodes(t, ns, 2, build2022)
	verified, unverified := nodes[0].Name, nodes[1].Name

	escape := corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
		{Key: testbed.OwnNodesKey, Operator: corev1.NodeSelectorOpIn, Values: []string{ns}}}}
	mustCreate(t, classAuthor(t, ns), builders.AgentSandbox(ns, "placed").Replicas(4).RuntimeClass(rcName).RequireVerifiedRuntime().
		OnNodesOf(testbed.OwnNodesKey, ns).
		PodSpec(func(spec *corev1.PodSpec) {
			spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{escape, escape}}}}
		}).Obj())

	// No node has verified the handler yet: the scheduler finds no node for any of them,
	// though both nodes match the author's own terms.
	placed := func(want string, n int) func(context.Context) (bool, string) {
		return func(context.Context) (bool, string) {
			matching := 0
			for _, p := range sandboxPods(t, ns, "placed") {
				if p.Spec.NodeName == unverified {
					t.Fatalf("pod %s was scheduled to %s, whose agent did not verify handler %s", p.Name, unverified, handler)
				}
				unschedulable := slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool {
					return c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable
				})
				if (want == "" && unschedulable) || (want != "" && p.Spec.NodeName == want) {
					matching++
				}
			}
			return matching == n, fmt.Sprintf("%d of %d warm pods on node %q (\"\": unschedulable)", matching, n, want)
		}
	}
	eventually(t, 2*waitTimeout, placed("", 4))

	// What the node agent writes on a node whose containerd runs the handler right.
	nodes[0].Labels[runtimereport.LabelKey(handler)] = runtimereport.LabelValue
	if err := admin.Update(ctx, &nodes[0]); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*waitTimeout, placed(verified, 4))
}
