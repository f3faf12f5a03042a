package controllers

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/runtimereport"
)

// runtimeReports holds what the node agents found out about containerd's runtime handlers:
// the Nodes' runtimereport.Annotation, parsed, by handler and node. The Node watch feeds it,
// as it does vmSizeReports, so a pool reconcile reads it without listing Nodes. Memory only:
// a new leader's informer lists every Node again.
type runtimeReports struct {
	mu sync.Mutex
	// byNode is each node's report, as last read from its annotation.
	byNode map[string]runtimereport.Report
	// byHandler is the same handler reports by handler, then node.
	byHandler map[string]map[string]runtimereport.HandlerReport
}

func newRuntimeReports() *runtimeReports {
	return &runtimeReports{byNode: map[string]runtimereport.Report{}, byHandler: map[string]map[string]runtimereport.HandlerReport{}}
}

// set replaces a node's report (ok false: the node is gone or reports nothing) and says
// whether anything changed.
func (v *runtimeReports) set(node string, report runtimereport.Report, ok bool) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	old, had := v.byNode[node]
	if had == ok && slices.Equal(old.Handlers, report.Handlers) && old.Error == report.Error {
		return false
	}
	for _, h := range old.Handlers {
		if nodes := v.byHandler[h.Handler]; nodes != nil {
			delete(nodes, node)
			if len(nodes) == 0 {
				delete(v.byHandler, h.Handler)
			}
		}
	}
	delete(v.byNode, node)
	if !ok {
		return true
	}
	v.byNode[node] = report
	for _, h := range report.Handlers {
		if v.byHandler[h.Handler] == nil {
			v.byHandler[h.Handler] = map[string]runtimereport.HandlerReport{}
		}
		v.byHandler[h.Handler][node] = h
	}
	return true
}

// nodeHandlerReport is one node's report on one handler.
type nodeHandlerReport struct {
	node string
	runtimereport.HandlerReport
}

// of returns the nodes' reports on a handler, sorted by node.
func (v *runtimeReports) of(handler string) []nodeHandlerReport {
	v.mu.Lock()
	defer v.mu.Unlock()
	nodes := v.byHandler[handler]
	out := make([]nodeHandlerReport, 0, len(nodes))
	for _, node := range slices.Sorted(maps.Keys(nodes)) {
		out = append(out, nodeHandlerReport{node: node, HandlerReport: nodes[node]})
	}
	return out
}

// nodeHandler keeps the reports in step with the Nodes and wakes every class when one
// changes: a report changes when an agent starts or a node's containerd is reconfigured,
// rarely, and which classes use a handler only their RuntimeClasses say.
func (v *runtimeReports) nodeHandler(wakeAll func(context.Context) []reconcile.Request) handler.EventHandler {
	return nodeAnnotationHandler(runtimereport.Annotation, func(ctx context.Context, q requestQueue, node, value string) {
		report, ok, err := runtimereport.Parse(value)
		if err != nil {
			// A node agent of another version, or a hand edit: the node reports nothing.
			log.FromContext(ctx).Error(err, "ignoring a node's runtime report", "node", node)
		}
		if v.set(node, report, ok) {
			for _, req := range wakeAll(ctx) {
				q.Add(req)
			}
		}
	})
}

// runtimeReadyCondition is the RuntimeReady condition of a class whose pods use handler:
// False, with the worst problem as the reason, when any node's agent found the handler
// wrong, naming up to maxNodesNamed nodes and the fix; False (NoVerifiedNode) when the class
// requires verified nodes and none verified it; True (RuntimeVerified) when every node that
// checked it found it ready; nil when no node agent checked it, since nothing is known then.
func runtimeReadyCondition(handler string, reports []nodeHandlerReport, requireVerified bool, generation int64) *metav1.Condition {
	c := &metav1.Condition{Type: agentsv1alpha1.SandboxRuntimeReady, ObservedGeneration: generation}
	worst, verified := runtimereport.NoProblem, 0
	var bad []nodeHandlerReport
	for _, r := range reports {
		if p := r.Problem(); p != runtimereport.NoProblem {
			bad = append(bad, r)
			if p.Worse(worst) {
				worst = p
			}
		} else {
			verified++
		}
	}
	switch {
	case len(reports) == 0 && !requireVerified:
		return nil
	case len(reports) == 0:
		c.Status, c.Reason = metav1.ConditionFalse, agentsv1alpha1.ReasonNoVerifiedNode
		c.Message = fmt.Sprintf("spec.placement.requireVerifiedRuntime is set, and no node agent has checked runtime handler %q, so the class's pods have no node to go to; "+
			"run the node agent on the Windows nodes (the chart's nodeAgent.enabled), or unset spec.placement.requireVerifiedRuntime", handler)
		return c
	case len(bad) == 0:
		c.Status, c.Reason = metav1.ConditionTrue, agentsv1alpha1.ReasonRuntimeVerified
		c.Message = fmt.Sprintf("the node agents of %d node(s) found runtime handler %q registered, Hyper-V isolated and passing the VM sizing annotations", verified, handler)
		return c
	}
	var named []string
	for _, r := range bad {
		if len(named) == maxNodesNamed {
			named = append(named, fmt.Sprintf("and %d more", len(bad)-maxNodesNamed))
			break
		}
		named = append(named, fmt.Sprintf("%s (%s)", r.node, r.Problem()))
	}
	var first nodeHandlerReport
	for _, r := range bad {
		if r.Problem() == worst {
			first = r
			break
		}
	}
	placement := "its pods may be scheduled there"
	if requireVerified {
		placement = fmt.Sprintf("its pods go only to the %d verified node(s)", verified)
	}
	c.Status, c.Reason = metav1.ConditionFalse, string(worst)
	c.Message = fmt.Sprintf("runtime handler %q is not ready for Hyper-V sandboxes on %d of %d node(s) that checked it: %s; %s: %s. Fix: %s",
		handler, len(bad), len(reports), strings.Join(named, ", "), placement, first.Detail, worst.Fix(handler))
	return c
}

// setRuntimeReadyCondition sets the class's RuntimeReady condition in status from the node
// agents' reports on the handler of rc, its RuntimeClass, and returns what to do once the
// status is written: a Warning Event when the condition turned False. A class whose
// RuntimeClass does not exist (rc nil), or a Process class, has no such condition
// (Degraded says what is wrong then).
func (r *AgentSandboxReconciler) setRuntimeReadyCondition(sb *agentsv1alpha1.AgentSandbox, rc *nodev1.RuntimeClass, status *agentsv1alpha1.AgentSandboxStatus) func() {
	var c *metav1.Condition
	if rc != nil && isolationOf(sb) == agentsv1alpha1.IsolationHyperV {
		c = runtimeReadyCondition(rc.Handler, r.runtimes.of(rc.Handler), sb.Spec.Placement.RequireVerifiedRuntime, sb.Generation)
	}
	if c == nil {
		meta.RemoveStatusCondition(&status.Conditions, agentsv1alpha1.SandboxRuntimeReady)
		return func() {}
	}
	meta.SetStatusCondition(&status.Conditions, *c)
	key := client.ObjectKeyFromObject(sb)
	if c.Status != metav1.ConditionFalse {
		r.runtimeAnnounced.Delete(key)
		return func() {}
	}
	// One Event per problem, not per status write: the cached class a reconcile starts
	// from can predate the last write, so its old condition cannot tell.
	return func() {
		if last, ok := r.runtimeAnnounced.Swap(key, c.Reason); !ok || last != c.Reason {
			r.recorder.Eventf(sb, nil, corev1.EventTypeWarning, c.Reason, "CheckRuntime", "%s", c.Message)
		}
	}
}
