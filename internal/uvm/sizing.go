// Package uvm sizes the Hyper-V utility VM (UVM) behind a sandbox pod and accounts for it.
//
// With Hyper-V isolation every pod runs in its own UVM, sized by pod annotations that the
// runhcs shim reads (the keys are hcsshim's own constants). hyperpool always writes the
// memory size and processor count, so the footprint it charges to pools and quotas is the
// size the VM really gets, not whatever the shim would default to on that node.
package uvm

import (
	"math"
	"strconv"

	"github.com/Microsoft/hcsshim/pkg/annotations"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/hyperpool/hyperpool/api/v1alpha1"
)

// DefaultProcessorCount is the vCPU count of a UVM when the sandbox does not set one. It is
// hcsshim's own default (internal/vm/vmutils.DefaultProcessorCountForUVM, which only drops
// to 1 on single-CPU hosts); that function is internal to hcsshim, hence the copy.
const DefaultProcessorCount = 2

// NoLimitMemoryMB is the UVM memory, in MB, when no container sets a memory limit: hcsshim's
// default UVM size (internal/uvm newDefaultOptions). Without limits there is nothing to
// derive a size from, and keeping the shim's default changes nothing for such pods.
const NoLimitMemoryMB = 1024

const (
	// mebibyte is the MB of the hcsshim memory annotation: a binary megabyte.
	mebibyte = 1 << 20

	// guestOverheadMB is added to the containers' limits for the UVM's own Windows kernel and
	// guest services, which run beside the containers inside the VM.
	guestOverheadMB = 256

	// memoryStepMB is what derived sizes are rounded up to: the common sizing rule for
	// Hyper-V containers. It keeps sizes in few buckets and even (Hyper-V allocates UVM
	// memory in 2 MB pages, so an odd size would be rounded by the shim anyway).
	memoryStepMB = 512
)

// MemoryMB returns the UVM memory in MB (MiB): vm.MemoryMB when set; otherwise the sum of
// the containers' memory limits plus guestOverheadMB, rounded up to memoryStepMB; and
// NoLimitMemoryMB when no container has a (positive) memory limit. Init containers are
// ignored: they run before the others, so they never add to the peak.
//
// Example: one container limited to 1Gi gives 1024+256 = 1280, rounded up to 1536.
func MemoryMB(vm *v1alpha1.VMSpec, containers []corev1.Container) int64 {
	if vm != nil && vm.MemoryMB != nil {
		return int64(*vm.MemoryMB)
	}
	var limitBytes int64
	anyLimit := false
	for i := range containers {
		limit, ok := containers[i].Resources.Limits[corev1.ResourceMemory]
		if !ok || limit.Sign() <= 0 {
			continue
		}
		anyLimit = true
		limitBytes = saturatingAdd(limitBytes, bytesOf(limit))
	}
	if !anyLimit {
		return NoLimitMemoryMB
	}
	limitMB := ceilDiv(limitBytes, mebibyte)
	return ceilDiv(limitMB+guestOverheadMB, memoryStepMB) * memoryStepMB
}

// bytesOf returns a positive quantity in whole bytes, rounded up, capped at math.MaxInt64
// so that an absurd limit cannot wrap around into a small VM.
func bytesOf(q resource.Quantity) int64 {
	if q.CmpInt64(math.MaxInt64) >= 0 {
		return math.MaxInt64
	}
	return q.Value()
}

// saturatingAdd adds two non-negative int64s, stopping at math.MaxInt64 instead of wrapping.
func saturatingAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// ceilDiv divides a non-negative n by a positive d, rounding up.
func ceilDiv(n, d int64) int64 {
	return n/d + min(n%d, 1)
}

// ProcessorCount returns the UVM vCPU count: vm.ProcessorCount when set, else
// DefaultProcessorCount.
func ProcessorCount(vm *v1alpha1.VMSpec) int32 {
	if vm != nil && vm.ProcessorCount != nil {
		return *vm.ProcessorCount
	}
	return DefaultProcessorCount
}

// isHyperV reports whether pods of this isolation get a UVM. An empty isolation counts as
// HyperV, the API default, so objects that skipped defaulting are still sized.
func isHyperV(isolation v1alpha1.IsolationMode) bool {
	return isolation != v1alpha1.IsolationProcess
}

// Annotations returns the hcsshim pod annotations that size the UVM. For HyperV they always
// hold the memory size (MemoryMB) and processor count (ProcessorCount), so the VM matches the
// footprint hyperpool accounts for; processor limit and weight, memory overcommit and storage
// QoS are added only when set, leaving hcsshim's defaults otherwise. Process isolation has no
// VM, so it gets nil.
func Annotations(isolation v1alpha1.IsolationMode, vm *v1alpha1.VMSpec, containers []corev1.Container) map[string]string {
	if !isHyperV(isolation) {
		return nil
	}
	sizing := map[string]string{
		annotations.MemorySizeInMB: strconv.FormatInt(MemoryMB(vm, containers), 10),
		annotations.ProcessorCount: strconv.FormatInt(int64(ProcessorCount(vm)), 10),
	}
	if vm == nil {
		return sizing
	}
	setInt32 := func(key string, value *int32) {
		if value != nil {
			sizing[key] = strconv.FormatInt(int64(*value), 10)
		}
	}
	setInt32(annotations.ProcessorLimit, vm.ProcessorLimit)
	setInt32(annotations.ProcessorWeight, vm.ProcessorWeight)
	if vm.AllowOvercommit != nil {
		sizing[annotations.AllowOvercommit] = strconv.FormatBool(*vm.AllowOvercommit)
	}
	if qos := vm.StorageQoS; qos != nil {
		setInt32(annotations.StorageQoSIopsMaximum, qos.IOPSMaximum)
		if qos.BandwidthMaximum != nil {
			sizing[annotations.StorageQoSBandwidthMaximum] = strconv.FormatInt(*qos.BandwidthMaximum, 10)
		}
	}
	return sizing
}

// FootprintOf returns the UVM size of one sandbox: for HyperV, MemoryMB as a binary
// quantity (e.g. 1536Mi, 2Gi) and ProcessorCount vCPUs; for Process, the zero Footprint.
func FootprintOf(isolation v1alpha1.IsolationMode, vm *v1alpha1.VMSpec, containers []corev1.Container) v1alpha1.Footprint {
	if !isHyperV(isolation) {
		return v1alpha1.Footprint{}
	}
	return v1alpha1.Footprint{
		Memory: memoryQuantity(MemoryMB(vm, containers)),
		VCPUs:  ProcessorCount(vm),
	}
}

// memoryQuantity turns MB (MiB) into a binary-SI quantity. Quantity.Mul switches to an
// arbitrary-precision value rather than overflowing for absurd sizes.
func memoryQuantity(mb int64) resource.Quantity {
	q := resource.NewQuantity(mb, resource.BinarySI)
	q.Mul(mebibyte)
	return *q
}

// FootprintFromPod reads a pod's UVM size back from the annotations Annotations wrote. A pod
// without the memory annotation has no UVM (process isolation) and gets the zero Footprint.
// A value that is not a positive integer leaves its field zero rather than failing, so one
// hand-edited pod cannot stop a pool's accounting.
func FootprintFromPod(pod *corev1.Pod) v1alpha1.Footprint {
	if pod == nil {
		return v1alpha1.Footprint{}
	}
	memoryText, ok := pod.Annotations[annotations.MemorySizeInMB]
	if !ok {
		return v1alpha1.Footprint{}
	}
	var footprint v1alpha1.Footprint
	if mb, err := strconv.ParseInt(memoryText, 10, 64); err == nil && mb > 0 {
		footprint.Memory = memoryQuantity(mb)
	}
	if vcpus, err := strconv.ParseInt(pod.Annotations[annotations.ProcessorCount], 10, 32); err == nil && vcpus > 0 {
		footprint.VCPUs = int32(vcpus)
	}
	return footprint
}

// AddFootprint returns a + b, e.g. to total the footprints of a pool's sandboxes.
func AddFootprint(a, b v1alpha1.Footprint) v1alpha1.Footprint {
	memory := a.Memory.DeepCopy()
	memory.Add(b.Memory)
	return v1alpha1.Footprint{
		Memory: memory,
		VCPUs:  saturatingAddInt32(a.VCPUs, b.VCPUs),
	}
}

// saturatingAddInt32 adds two vCPU counts, stopping at the int32 bounds instead of wrapping,
// so an overflowing total still reads as "too many" to quota checks.
func saturatingAddInt32(a, b int32) int32 {
	return int32(max(math.MinInt32, min(math.MaxInt32, int64(a)+int64(b))))
}
