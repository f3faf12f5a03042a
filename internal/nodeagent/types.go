// Package nodeagent is the brain of the hyperpool node agent: it takes inventory of the
// Hyper-V utility VMs (UVMs) on one Windows node, attributes each to the pod it was started
// for, and decides which ones have outlived their pod (leaked, "orphans") and may be reaped.
//
// Everything here is platform-neutral and talks to the node through small interfaces:
// Host (the HCS; host_windows.go implements it with github.com/Microsoft/hcsshim),
// SandboxResolver (the container runtime's CRI; cri.go), PodLister and NodeReporter (the
// API server; kube.go); the runtime preflight (runtime.go) adds RuntimeConfigReader
// (`containerd config dump`; runtimeconfig.go) and RuntimeClassLister. The decisions are pure functions (Classify, Summary) so they are
// table-tested without Windows or a control plane.
//
// Safety rules, in order (see Classify):
//   - a VM that cannot be attributed to a pod UID is never reaped;
//   - a VM whose pod (same UID) exists on the API server for this node is never reaped; a
//     static pod counts by the UID in its mirror pod's kubernetes.io/config.mirror annotation;
//   - a VM whose pod sandbox the container runtime lists as ready (in its last successful
//     list) is never reaped, whatever the API server says: the kubelet still runs it (a
//     force-deleted pod, a static pod without its mirror, an incomplete API read). It is
//     reported as VerdictSandboxReady;
//   - a VM of unknown age, younger than the grace period, or whose pod was first seen
//     missing (with its sandbox not ready) less than a grace period ago, is never reaped;
//   - without --reap (the default) nothing is ever reaped: orphans are only reported.
package nodeagent

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// UtilityVM is one Hyper-V compute system of type VirtualMachine on the node.
type UtilityVM struct {
	// ID is the HCS compute system ID. The runhcs shim names a pod's UVM "<sandboxID>@vm".
	ID string
	// Owner is the HCS owner, normally "containerd-shim-runhcs-v1.exe".
	Owner string
	// State is the HCS state ("Running", "Paused", ...), for logs only.
	State string
	// Created is when the VM started; zero when the host could not tell (never reaped then).
	Created time.Time
	// MemoryAssignedBytes is the memory the hypervisor has assigned to the VM: its size,
	// compared with the size its pod asked for.
	MemoryAssignedBytes uint64
	// HostMemoryBytes is the host memory the VM holds: the working set of its vmmem
	// process; 0 when unknown. For a VM backed by virtual memory (hcsshim's default) it is
	// less than its size.
	HostMemoryBytes uint64
	// ScratchDiskBytes is the size on disk of the VM's scratch VHDX, 0 when unknown.
	ScratchDiskBytes uint64
}

// HostBytes is the host memory the VM holds: its vmmem working set when the host measured
// one, else its assigned memory (an upper bound for a VM backed by virtual memory).
func (vm UtilityVM) HostBytes() uint64 {
	if vm.HostMemoryBytes > 0 {
		return vm.HostMemoryBytes
	}
	return vm.MemoryAssignedBytes
}

// SandboxID returns the pod sandbox ID the runhcs shim encoded in the VM ID, and false when
// the ID does not have the "<sandboxID>@vm" form (such a VM is not a pod's UVM we know of).
func (vm UtilityVM) SandboxID() (string, bool) { return SandboxIDFromVMID(vm.ID) }

// Host is the node's compute service. Implementations must be safe for use by one goroutine.
type Host interface {
	// ListUtilityVMs returns the utility VMs of the pod runtime now on the node.
	ListUtilityVMs(ctx context.Context) ([]UtilityVM, error)
	// TerminateUtilityVM hard-stops a VM and returns when it is gone (or an error).
	TerminateUtilityVM(ctx context.Context, id string) error
}

// ScratchReporter is optionally implemented by a Host that can only measure the node's UVM
// scratch disks as a whole, not per VM. When the Host implements it, the node's scratch
// total comes from here instead of the sum of UtilityVM.ScratchDiskBytes.
type ScratchReporter interface {
	ScratchDiskBytes(ctx context.Context) (uint64, error)
}

// PodRef is the pod a pod sandbox was created for, as the container runtime recorded it,
// and the sandbox's state.
type PodRef struct {
	Namespace string
	Name      string
	UID       types.UID
	// SandboxID is the CRI pod sandbox ID.
	SandboxID string
	// State is the sandbox's state in the runtime's last successful list. Unlike the pod, it
	// changes: SandboxStateUnknown once the runtime no longer lists the sandbox.
	State SandboxState
}

// SandboxState is a pod sandbox's state as the container runtime reports it.
type SandboxState string

const (
	// SandboxStateUnknown means the runtime does not list the sandbox (it forgot it), or never said.
	SandboxStateUnknown SandboxState = ""
	// SandboxReady means CRI SANDBOX_READY; the kubelet runs the pod. Its VM is never reaped.
	SandboxReady SandboxState = "Ready"
	// SandboxNotReady means CRI SANDBOX_NOTREADY; stopped, or being torn down.
	SandboxNotReady SandboxState = "NotReady"
)

// String is "namespace/name (uid)".
func (p PodRef) String() string { return p.Namespace + "/" + p.Name + " (" + string(p.UID) + ")" }

// SandboxResolver maps the pod sandboxes the container runtime knows to their pods and states.
type SandboxResolver interface {
	// ResolveSandboxes returns every pod sandbox the runtime currently knows, ready or not, by
	// sandbox ID, each with its pod and its state (PodRef.State).
	ResolveSandboxes(ctx context.Context) (map[string]PodRef, error)
}

// PodMeta is what the agent needs of a pod on the API server, besides its UID.
type PodMeta struct {
	Namespace string
	Name      string
	// Sandbox is the pod's agents.hyperpool.io/sandbox label: its class, "" for a pod that
	// is not hyperpool's.
	Sandbox string
	// RequestedMiB is the UVM size the pod asks for (hcsshim's MemorySizeInMB annotation),
	// 0 when it asks for none.
	RequestedMiB int64
}

// PodLister returns the pods bound to this node, as the API server has them now, by UID.
// For a mirror pod it returns it under the UID of the static pod too (the UID the kubelet
// and the runtime know it by).
type PodLister interface {
	ListPods(ctx context.Context) (map[types.UID]PodMeta, error)
}

// NodeReporter writes to this node's Node object.
type NodeReporter interface {
	// Annotation returns the current value of one annotation on the Node ("" when absent).
	Annotation(ctx context.Context, key string) (string, error)
	// SetAnnotation sets one annotation on the Node; "" removes it.
	SetAnnotation(ctx context.Context, key, value string) error
	// Labels returns the Node's labels as the API server has them now.
	Labels(ctx context.Context) (map[string]string, error)
	// SetLabels makes the Node's labels under prefix exactly want (every key of want starts
	// with prefix): it adds and changes those of want and removes the other labels under
	// prefix, and reports whether the Node changed. Labels outside prefix are kept.
	SetLabels(ctx context.Context, prefix string, want map[string]string) (bool, error)
	// SetTaint adds the taint to the Node (present) or removes every taint with its key, and
	// reports whether the Node changed. Other taints are kept.
	SetTaint(ctx context.Context, taint corev1.Taint, present bool) (bool, error)
	// Event records an Event about the Node. eventType is "Normal" or "Warning".
	Event(eventType, reason, action, note string)
}
