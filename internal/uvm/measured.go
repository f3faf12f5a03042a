package uvm

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/Microsoft/hcsshim/pkg/annotations"
)

// SizesAnnotation is the Node annotation where the node agent reports the sizes its pods'
// utility VMs really got, measured through HCS, next to the sizes their pods asked for
// (MemorySizeInMB). The manager reads it to tell a class whether its VM size was applied
// (the AgentSandbox condition VMSizeApplied). Its value is FormatSizeReports' JSON.
const SizesAnnotation = "agents.hyperpool.io/uvm-sizes"

// NormalizedMiB is the size hcsshim gives a VM that asks for requestedMiB: aligned up to an
// even number of MB (internal/vm/vmutils NormalizeMemorySize: "(requested + 1) &^ 1").
func NormalizedMiB(requestedMiB int64) int64 { return (requestedMiB + 1) &^ 1 }

// maxSizeReports bounds the annotation: a node runs far fewer classes than this, and a
// Node object must stay small (every kubelet heartbeat rewrites it).
const maxSizeReports = 64

// SizeReport is what one node saw of one class's VMs of one requested size: how many, and
// the size they got. A node with VMs of a class at two sizes (a template roll-out, a VM that
// got the default) has one report per (requested, assigned) pair.
type SizeReport struct {
	Namespace string `json:"namespace"`
	// Sandbox is the AgentSandbox (class) name, from the pods' agents.hyperpool.io/sandbox label.
	Sandbox string `json:"sandbox"`
	// RequestedMiB is the pods' MemorySizeInMB annotation.
	RequestedMiB int64 `json:"requestedMiB"`
	// AssignedMiB is the memory HCS says the VMs got, in whole MiB (rounded to nearest).
	AssignedMiB int64 `json:"assignedMiB"`
	// VMs is how many VMs of the class on the node have this pair.
	VMs int `json:"vms"`
}

// Applied reports whether the VMs got the requested size (SizeApplied).
func (r SizeReport) Applied() bool { return SizeApplied(r.RequestedMiB, r.AssignedMiB) }

// SizeApplied reports whether a VM of assignedMiB got the requestedMiB its pod asked for:
// exactly the size hcsshim configures for it (NormalizedMiB). HCS's AssignedMemory, in 4 KiB
// pages, is what hcsshim's own tests compare with the configured size, also for a VM backed
// by virtual memory (AllowOvercommit, the default), so no tolerance is needed; that memory
// is the VM's size, not what it costs the host (the vmmem process's working set).
func SizeApplied(requestedMiB, assignedMiB int64) bool {
	return assignedMiB == NormalizedMiB(requestedMiB)
}

// AssignedMiB turns HCS's assigned bytes into whole MiB, rounded to nearest.
func AssignedMiB(assignedBytes uint64) int64 {
	return int64((assignedBytes + mebibyte/2) / mebibyte) //nolint:gosec // bytes/MiB fits an int64
}

// RequestedMiB returns the UVM size a pod asked for through its MemorySizeInMB annotation,
// and false when it has none or it is not a positive integer (the shim would ignore it).
func RequestedMiB(podAnnotations map[string]string) (int64, bool) {
	v, ok := podAnnotations[annotations.MemorySizeInMB]
	if !ok {
		return 0, false
	}
	mb, err := strconv.ParseInt(v, 10, 64)
	if err != nil || mb <= 0 {
		return 0, false
	}
	return mb, true
}

// FormatSizeReports returns the annotation value: the reports sorted (namespace, sandbox,
// requested, assigned), at most maxSizeReports of them (the mismatches first, so a long
// list never hides one), as compact JSON; "" when there are none.
func FormatSizeReports(reports []SizeReport) string {
	if len(reports) == 0 {
		return ""
	}
	rs := slices.Clone(reports)
	slices.SortFunc(rs, compareReports)
	if len(rs) > maxSizeReports {
		mismatches := slices.DeleteFunc(slices.Clone(rs), SizeReport.Applied)
		applied := slices.DeleteFunc(rs, func(r SizeReport) bool { return !r.Applied() })
		rs = append(mismatches, applied...)[:maxSizeReports]
		slices.SortFunc(rs, compareReports)
	}
	b, err := json.Marshal(rs)
	if err != nil { // a slice of plain structs always marshals
		panic(err)
	}
	return string(b)
}

func compareReports(a, b SizeReport) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Sandbox, b.Sandbox),
		cmp.Compare(a.RequestedMiB, b.RequestedMiB), cmp.Compare(a.AssignedMiB, b.AssignedMiB))
}

// ParseSizeReports reads an annotation value written by FormatSizeReports; "" is none.
// Unknown fields are ignored, so an older manager reads a newer agent's reports.
func ParseSizeReports(value string) ([]SizeReport, error) {
	if value == "" {
		return nil, nil
	}
	var rs []SizeReport
	if err := json.Unmarshal([]byte(value), &rs); err != nil {
		return nil, fmt.Errorf("%s: %w", SizesAnnotation, err)
	}
	return rs, nil
}
