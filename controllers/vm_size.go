package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/uvm"
)

// vmSizeReports holds what the node agents measured of each class's utility VMs: the
// Nodes' uvm.SizesAnnotation, parsed, by class and node. The Node watch feeds it (every
// Node, as the informer lists them at start and as they change), so a pool reconcile reads
// it without listing Nodes. It is memory only: a new leader's informer lists every Node
// again, and the reports with them.
type vmSizeReports struct {
	mu sync.Mutex
	// byNode is each node's reports, as last read from its annotation.
	byNode map[string][]uvm.SizeReport
	// byClass is the same reports by class, then node.
	byClass map[types.NamespacedName]map[string][]uvm.SizeReport
}

func newVMSizeReports() *vmSizeReports {
	return &vmSizeReports{byNode: map[string][]uvm.SizeReport{}, byClass: map[types.NamespacedName]map[string][]uvm.SizeReport{}}
}

// set replaces a node's reports (nil: the node is gone or reports nothing) and returns the
// classes whose reports changed.
func (v *vmSizeReports) set(node string, reports []uvm.SizeReport) []types.NamespacedName {
	v.mu.Lock()
	defer v.mu.Unlock()
	old := v.byNode[node]
	if slices.Equal(old, reports) {
		return nil
	}
	var changed []types.NamespacedName
	for _, r := range old {
		class := types.NamespacedName{Namespace: r.Namespace, Name: r.Sandbox}
		if nodes := v.byClass[class]; nodes != nil {
			delete(nodes, node)
			if len(nodes) == 0 {
				delete(v.byClass, class)
			}
		}
		changed = append(changed, class)
	}
	if len(reports) == 0 {
		delete(v.byNode, node)
	} else {
		v.byNode[node] = reports
	}
	for _, r := range reports {
		class := types.NamespacedName{Namespace: r.Namespace, Name: r.Sandbox}
		if v.byClass[class] == nil {
			v.byClass[class] = map[string][]uvm.SizeReport{}
		}
		v.byClass[class][node] = append(v.byClass[class][node], r)
		changed = append(changed, class)
	}
	slices.SortFunc(changed, func(a, b types.NamespacedName) int { return strings.Compare(a.String(), b.String()) })
	return slices.Compact(changed)
}

// nodeSizeReport is one node's report on a class.
type nodeSizeReport struct {
	node string
	uvm.SizeReport
}

// of returns a class's reports, sorted by node.
func (v *vmSizeReports) of(class types.NamespacedName) []nodeSizeReport {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []nodeSizeReport
	for node, reports := range v.byClass[class] {
		for _, r := range reports {
			out = append(out, nodeSizeReport{node: node, SizeReport: r})
		}
	}
	slices.SortFunc(out, func(a, b nodeSizeReport) int {
		if c := strings.Compare(a.node, b.node); c != 0 {
			return c
		}
		return int(a.RequestedMiB - b.RequestedMiB)
	})
	return out
}

// nodeHandler keeps the reports in step with the Nodes (metadata only, as the manager
// caches them) and wakes the classes whose reports changed.
func (v *vmSizeReports) nodeHandler() handler.EventHandler {
	return nodeAnnotationHandler(uvm.SizesAnnotation, func(ctx context.Context, q requestQueue, node, value string) {
		reports, err := uvm.ParseSizeReports(value)
		if err != nil {
			// A node agent of another version, or a hand edit: the node reports nothing.
			log.FromContext(ctx).Error(err, "ignoring a node's utility VM sizes", "node", node)
		}
		for _, class := range v.set(node, reports) {
			q.Add(reconcile.Request{NamespacedName: class})
		}
	})
}

// nodeAnnotationHandler calls apply with a Node's value of one annotation (a node agent's
// report) when the Node appears, when the value changes, and with "" when the Node goes.
// Updates that leave the annotation alone, the bulk of Node events, cost one map lookup.
func nodeAnnotationHandler(key string, apply func(ctx context.Context, q requestQueue, node, value string)) handler.EventHandler {
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q requestQueue) {
			apply(ctx, q, e.Object.GetName(), e.Object.GetAnnotations()[key])
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q requestQueue) {
			if value := e.ObjectNew.GetAnnotations()[key]; value != e.ObjectOld.GetAnnotations()[key] {
				apply(ctx, q, e.ObjectNew.GetName(), value)
			}
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q requestQueue) {
			apply(ctx, q, e.Object.GetName(), "")
		},
	}
}

// maxNodesNamed is how many nodes a VMSizeApplied message names before "and N more".
const maxNodesNamed = 5

// vmSizeCondition is the VMSizeApplied condition of a class from its nodes' reports: False
// (VMSizeNotApplied) when any node measured VMs of the class at another size than their
// pods ask for, naming the nodes and sizes; True (VMSizeMeasured) when every measured VM
// got its size; nil when no node agent measured any, since nothing is known then.
func vmSizeCondition(reports []nodeSizeReport, generation int64) *metav1.Condition {
	if len(reports) == 0 {
		return nil
	}
	var bad []string
	vms, badVMs, nodes := 0, 0, map[string]bool{}
	for _, r := range reports {
		vms += r.VMs
		nodes[r.node] = true
		if !r.Applied() {
			badVMs += r.VMs
			bad = append(bad, fmt.Sprintf("%s (%d VM(s) at %dMi, asked %dMi)", r.node, r.VMs, r.AssignedMiB, r.RequestedMiB))
		}
	}
	c := &metav1.Condition{Type: agentsv1alpha1.SandboxVMSizeApplied, ObservedGeneration: generation}
	if badVMs == 0 {
		c.Status, c.Reason = metav1.ConditionTrue, agentsv1alpha1.ReasonVMSizeMeasured
		c.Message = fmt.Sprintf("the node agents measured %d VM(s) of the class on %d node(s), each at the memory its pod asks for", vms, len(nodes))
		return c
	}
	if len(bad) > maxNodesNamed {
		bad = append(bad[:maxNodesNamed], fmt.Sprintf("and %d more", len(bad)-maxNodesNamed))
	}
	c.Status, c.Reason = metav1.ConditionFalse, agentsv1alpha1.ReasonVMSizeNotApplied
	c.Message = fmt.Sprintf("%d of %d measured VM(s) did not get the memory their pod asks for in %s: %s. "+
		"The nodes' containerd runtime handler does not pass pod annotations to the runhcs shim, so the VMs get hcsshim's default (1024 MB, 2 vCPUs) "+
		"and status.footprint is not what they use; add \"io.microsoft.virtualmachine.*\" to the handler's pod_annotations (docs/install.md), restart containerd and replace the pods",
		badVMs, vms, "io.microsoft.virtualmachine.computetopology.memory.sizeinmb", strings.Join(bad, ", "))
	return c
}

// setVMSizeCondition sets the class's VMSizeApplied condition in status from the node
// agents' reports (removing it when none measured the class), and returns what to do once
// the status is written: a Warning Event when the condition turned False. Events follow
// the write they describe.
func (r *AgentSandboxReconciler) setVMSizeCondition(sb *agentsv1alpha1.AgentSandbox, status *agentsv1alpha1.AgentSandboxStatus) func() {
	reports := r.vmSizes.of(client.ObjectKeyFromObject(sb))
	notApplied := 0
	for _, rep := range reports {
		if !rep.Applied() {
			notApplied += rep.VMs
		}
	}
	vmSizeNotApplied.WithLabelValues(sb.Namespace, sb.Name).Set(float64(notApplied))
	c := vmSizeCondition(reports, sb.Generation)
	if c == nil {
		meta.RemoveStatusCondition(&status.Conditions, agentsv1alpha1.SandboxVMSizeApplied)
		return func() {}
	}
	wasFalse := meta.IsStatusConditionFalse(sb.Status.Conditions, agentsv1alpha1.SandboxVMSizeApplied)
	meta.SetStatusCondition(&status.Conditions, *c)
	if c.Status != metav1.ConditionFalse || wasFalse {
		return func() {}
	}
	return func() {
		r.recorder.Eventf(sb, nil, corev1.EventTypeWarning, agentsv1alpha1.ReasonVMSizeNotApplied, "Measure", "%s", c.Message)
	}
}
