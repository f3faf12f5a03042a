package nodeagent

import (
	"strings"
	"time"
)

// vmIDSuffix is what the runhcs shim appends to the pod sandbox ID to name the pod's utility
// VM (hcsshim cmd/containerd-shim-runhcs-v1/pod.go and task_hcs.go: fmt.Sprintf("%s@vm", req.ID)).
const vmIDSuffix = "@vm"

// SandboxIDFromVMID returns the pod sandbox ID in a runhcs UVM ID "<sandboxID>@vm", and
// false for any other ID.
func SandboxIDFromVMID(id string) (string, bool) {
	sandboxID, ok := strings.CutSuffix(id, vmIDSuffix)
	if !ok || sandboxID == "" || strings.Contains(sandboxID, vmIDSuffix) {
		return "", false
	}
	return sandboxID, true
}

// Verdict is what the agent concludes about one utility VM.
type Verdict string

const (
	// VerdictLive means the VM's pod exists on the API server.
	VerdictLive Verdict = "Live"
	// VerdictUnattributed means the VM cannot be tied to a pod UID (not a "<sandboxID>@vm" VM, or
	// the runtime does not know its sandbox and the agent never saw it). Never reaped.
	VerdictUnattributed Verdict = "Unattributed"
	// VerdictSandboxReady means the VM's pod is not on the API server, but the container runtime
	// lists its sandbox as ready, so the kubelet still runs it (the pod was force-deleted, a
	// static pod has no mirror pod, or the API read was incomplete). Never reaped; reported.
	VerdictSandboxReady Verdict = "SandboxReady"
	// VerdictPending means the pod is gone, but the VM or the pod's absence is younger than the
	// grace period, or the VM's age is unknown: the runtime may still be tearing it down.
	VerdictPending Verdict = "Pending"
	// VerdictOrphan means leaked. The pod is gone for at least the grace period and the VM is
	// older than the grace period. Reported; reaped only with --reap.
	VerdictOrphan Verdict = "Orphan"
)

// Classify decides about one VM, applying the package's safety rules in order. pod is the
// VM's attribution (nil: none) with its sandbox's state in the runtime; podExists tells
// whether a pod with pod.UID (or a mirror pod of that static pod) is bound to this node on
// the API server; missingSince is when the agent first saw that pod missing with its sandbox
// not ready (zero: not missing before this round, so now).
func Classify(vm UtilityVM, pod *PodRef, podExists bool, missingSince, now time.Time, grace time.Duration) Verdict {
	switch {
	case pod == nil || pod.UID == "":
		return VerdictUnattributed
	case podExists:
		return VerdictLive
	case pod.State == SandboxReady:
		return VerdictSandboxReady
	case vm.Created.IsZero():
		return VerdictPending
	}
	if missingSince.IsZero() || missingSince.After(now) {
		missingSince = now
	}
	if now.Sub(vm.Created) < grace || now.Sub(missingSince) < grace {
		return VerdictPending
	}
	return VerdictOrphan
}
