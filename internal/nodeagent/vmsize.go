package nodeagent

import (
	"github.com/hyperpool/hyperpool/internal/uvm"
)

// size compares the memory HCS assigned to the VM of a live pod with the size the pod asked
// for through hcsshim's MemorySizeInMB annotation. requested is 0 when there is nothing to
// compare: the pod is not live, asks for no size, or the VM's memory is unknown.
//
// A mismatch means the runtime handler did not pass the pod's annotations to the shim
// (containerd's pod_annotations), and the VM got hcsshim's default size instead.
func (f Finding) size() (requested, assigned int64, mismatch bool) {
	if f.Verdict != VerdictLive || f.PodMeta == nil || f.PodMeta.RequestedMiB <= 0 || f.VM.MemoryAssignedBytes == 0 {
		return 0, 0, false
	}
	requested, assigned = f.PodMeta.RequestedMiB, uvm.AssignedMiB(f.VM.MemoryAssignedBytes)
	return requested, assigned, !uvm.SizeApplied(requested, assigned)
}

// sizeReports groups the measured VMs of hyperpool's pods by class and (requested,
// assigned) size, for uvm.SizesAnnotation. Pods without a class are left out: the manager
// has nothing to tell about them (they still count in Summary.SizeMismatches).
func sizeReports(findings []Finding) []uvm.SizeReport {
	type key struct {
		namespace, sandbox  string
		requested, assigned int64
	}
	counts := map[key]int{}
	for _, f := range findings {
		requested, assigned, _ := f.size()
		if requested == 0 || f.Reaped || f.PodMeta.Sandbox == "" {
			continue
		}
		counts[key{f.PodMeta.Namespace, f.PodMeta.Sandbox, requested, assigned}]++
	}
	reports := make([]uvm.SizeReport, 0, len(counts))
	for k, n := range counts {
		reports = append(reports, uvm.SizeReport{Namespace: k.namespace, Sandbox: k.sandbox,
			RequestedMiB: k.requested, AssignedMiB: k.assigned, VMs: n})
	}
	return reports
}

// logSizeMismatches logs each VM whose size was not applied, once per VM. The manager turns
// the node's uvm.SizesAnnotation into the class's VMSizeApplied condition and a Warning
// Event there, where the class's owner looks; the log is for whoever looks at the node.
func (a *Agent) logSizeMismatches(findings []Finding) {
	for _, f := range findings {
		requested, assigned, mismatch := f.size()
		if !mismatch || a.sizeAnnounced[f.VM.ID] {
			continue
		}
		a.sizeAnnounced[f.VM.ID] = true
		a.Log.Info("utility VM did not get the memory its pod asked for: the runtime handler does not pass pod annotations to the shim (containerd pod_annotations)",
			"vm", f.VM.ID, "pod", f.Pod.String(), "requestedMiB", requested, "assignedMiB", assigned)
	}
}
