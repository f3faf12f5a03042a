package controllers

import (
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"

	agentsv1alpha1 "github.com/hyperpool/hyperpool/api/v1alpha1"
	"github.com/hyperpool/hyperpool/internal/uvm"
	"github.com/hyperpool/hyperpool/test/builders"
)

func TestVMSizeCondition(t *testing.T) {
	report := func(node string, requested, assigned int64, vms int) nodeSizeReport {
		return nodeSizeReport{node: node, SizeReport: uvm.SizeReport{Namespace: "team-a", Sandbox: "win2022",
			RequestedMiB: requested, AssignedMiB: assigned, VMs: vms}}
	}
	var many []nodeSizeReport
	for _, n := range []string{"n1", "n2", "n3", "n4", "n5", "n6", "n7"} {
		many = append(many, report(n, 1536, 1024, 1))
	}
	tests := []struct {
		name       string
		reports    []nodeSizeReport
		want       metav1.ConditionStatus // "": no condition
		wantReason string
		wantText   []string
	}{
		{name: "nothing measured: no condition"},
		{name: "every VM at its size", reports: []nodeSizeReport{report("win-0", 1536, 1536, 2), report("win-1", 1537, 1538, 1)},
			want: metav1.ConditionTrue, wantReason: agentsv1alpha1.ReasonVMSizeMeasured, wantText: []string{"3 VM(s)", "2 node(s)"}},
		{name: "one node gives the default size", reports: []nodeSizeReport{report("win-0", 1536, 1536, 2), report("win-1", 1536, 1024, 1)},
			want: metav1.ConditionFalse, wantReason: agentsv1alpha1.ReasonVMSizeNotApplied,
			wantText: []string{"1 of 3 measured VM(s)", "win-1 (1 VM(s) at 1024Mi, asked 1536Mi)", "pod_annotations", "memory.sizeinmb"}},
		{name: "many nodes: five named", reports: many, want: metav1.ConditionFalse, wantReason: agentsv1alpha1.ReasonVMSizeNotApplied,
			wantText: []string{"n5 (1 VM(s)", "and 2 more"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := vmSizeCondition(tc.reports, 3)
			if tc.want == "" {
				if c != nil {
					t.Fatalf("condition = %+v, want none", c)
				}
				return
			}
			if c == nil || c.Type != agentsv1alpha1.SandboxVMSizeApplied || c.Status != tc.want || c.Reason != tc.wantReason || c.ObservedGeneration != 3 {
				t.Fatalf("condition = %+v, want %s %s", c, tc.want, tc.wantReason)
			}
			for _, s := range tc.wantText {
				if !strings.Contains(c.Message, s) {
					t.Errorf("message %q lacks %q", c.Message, s)
				}
			}
			if strings.Contains(c.Message, "n6") {
				t.Errorf("message names more than %d nodes: %s", maxNodesNamed, c.Message)
			}
		})
	}
}

// The reports follow the nodes: a node's new annotation replaces its reports, and the classes
// whose reports changed (the old and the new ones) are the ones to wake.
func TestVMSizeReportsFollowNodes(t *testing.T) {
	v := newVMSizeReports()
	a := types.NamespacedName{Namespace: "team-a", Name: "win2022"}
	b := types.NamespacedName{Namespace: "team-b", Name: "nano"}
	ra := uvm.SizeReport{Namespace: a.Namespace, Sandbox: a.Name, RequestedMiB: 1536, AssignedMiB: 1024, VMs: 1}
	rb := uvm.SizeReport{Namespace: b.Namespace, Sandbox: b.Name, RequestedMiB: 2048, AssignedMiB: 2048, VMs: 2}

	if got := v.set("win-0", []uvm.SizeReport{ra}); !slices.Equal(got, []types.NamespacedName{a}) {
		t.Errorf("first report wakes %v", got)
	}
	if got := v.set("win-0", []uvm.SizeReport{ra}); got != nil {
		t.Errorf("an unchanged report wakes %v", got)
	}
	v.set("win-1", []uvm.SizeReport{ra, rb})
	if got := v.of(a); len(got) != 2 || got[0].node != "win-0" || got[1].node != "win-1" {
		t.Errorf("reports of %s = %+v", a, got)
	}
	if got := v.set("win-1", []uvm.SizeReport{rb}); !slices.Equal(got, []types.NamespacedName{a, b}) {
		t.Errorf("a class leaving a node wakes %v, want both", got)
	}
	if got := v.set("win-0", nil); !slices.Equal(got, []types.NamespacedName{a}) || len(v.of(a)) != 0 {
		t.Errorf("node gone: woke %v, reports left %+v", got, v.of(a))
	}
	if len(v.byClass) != 1 || len(v.byNode) != 1 {
		t.Errorf("state not pruned: %d classes, %d nodes", len(v.byClass), len(v.byNode))
	}
}

// The condition is set from the reports, the gauge follows, and the Warning Event is queued
// only when the condition turns False (not again while it stays False), to be emitted
// after the status write.
func TestSetVMSizeCondition(t *testing.T) {
	rec := events.NewFakeRecorder(10)
	r := &AgentSandboxReconciler{vmSizes: newVMSizeReports(), recorder: rec}
	sb := builders.AgentSandbox("team-a", "win2022").Obj()
	key := types.NamespacedName{Namespace: sb.Namespace, Name: sb.Name}
	bad := uvm.SizeReport{Namespace: key.Namespace, Sandbox: key.Name, RequestedMiB: 1536, AssignedMiB: 1024, VMs: 3}
	good := bad
	good.AssignedMiB = 1536

	step := func(reports []uvm.SizeReport) (*metav1.Condition, int) {
		t.Helper()
		r.vmSizes.set("win-0", reports)
		status := sb.Status.DeepCopy()
		announce := r.setVMSizeCondition(sb, status)
		sb.Status = *status // written
		announce()
		return meta.FindStatusCondition(sb.Status.Conditions, agentsv1alpha1.SandboxVMSizeApplied), len(rec.Events)
	}
	if c, n := step(nil); c != nil || n != 0 {
		t.Fatalf("nothing measured: condition %+v, %d events", c, n)
	}
	c, n := step([]uvm.SizeReport{bad})
	if c == nil || c.Status != metav1.ConditionFalse || n != 1 {
		t.Fatalf("mismatch: condition %+v, %d events; want False and one Event", c, n)
	}
	if e := <-rec.Events; !strings.Contains(e, "Warning "+agentsv1alpha1.ReasonVMSizeNotApplied) || !strings.Contains(e, "win-0") {
		t.Errorf("event %q", e)
	}
	if got := testutil.ToFloat64(vmSizeNotApplied.WithLabelValues(key.Namespace, key.Name)); got != 3 {
		t.Errorf("gauge = %v, want 3", got)
	}
	bad.VMs = 4
	if c, n := step([]uvm.SizeReport{bad}); c.Status != metav1.ConditionFalse || n != 0 {
		t.Errorf("still not applied: condition %+v, %d new events; want no second Event", c, n)
	}
	if c, _ := step([]uvm.SizeReport{good}); c.Status != metav1.ConditionTrue || c.Reason != agentsv1alpha1.ReasonVMSizeMeasured {
		t.Errorf("fixed: condition %+v", c)
	}
	if got := testutil.ToFloat64(vmSizeNotApplied.WithLabelValues(key.Namespace, key.Name)); got != 0 {
		t.Errorf("gauge after the fix = %v, want 0", got)
	}
	forgetSandboxSeries(key)
}
