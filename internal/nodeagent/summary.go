package nodeagent

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"gopkg.in/inf.v0"
	"k8s.io/apimachinery/pkg/api/resource"
)

// SummaryAnnotation is the Node annotation where the agent keeps the node's UVM footprint,
// e.g. "vms=12 memory=18Gi scratch=40Gi orphans=1 unattributed=0 leaked=1536Mi sizeMismatches=0". kubectl shows it with
// `kubectl get nodes -o custom-columns=NAME:.metadata.name,UVMS:.metadata.annotations.agents\.hyperpool\.io/uvm-summary`.
const SummaryAnnotation = "agents.hyperpool.io/uvm-summary"

// Summary is the footprint of the utility VMs on one node, after this round's reaping.
type Summary struct {
	// VMs is the number of utility VMs.
	VMs int
	// MemoryBytes is the host memory they hold (UtilityVM.HostBytes: the vmmem working sets).
	MemoryBytes uint64
	// ScratchBytes is the size on disk of their scratch disks.
	ScratchBytes uint64
	// Orphans is the number of leaked VMs still on the node (VerdictOrphan).
	Orphans int
	// Unattributed is the number of VMs the agent could not tie to a pod (never reaped).
	Unattributed int
	// LeakedBytes is the host memory (UtilityVM.HostBytes) of the VMs whose pod is gone, seen so in two rounds at least
	// (orphans, and VMs still inside the grace period): memory no pod's requests and no
	// RuntimeClass overhead stand for, so the scheduler does not count it (see LeakTaint).
	LeakedBytes uint64
	// SizeMismatches is the number of VMs of live pods whose memory is not the size their
	// pod asked for (uvm.SizeApplied): the runtime handler did not pass the annotation on.
	SizeMismatches int
}

const mebibyte = 1 << 20

// maxBytes is the largest byte count a Summary prints: the largest whole MiB in an int64.
const maxBytes = uint64(math.MaxInt64) / mebibyte * mebibyte

// String formats the summary as the annotation value: space-separated key=value pairs, byte
// counts rounded up to whole MiB and printed as Kubernetes binary quantities ("1536Mi",
// "18Gi"), which resource.ParseQuantity reads back.
func (s Summary) String() string {
	return fmt.Sprintf("vms=%d memory=%s scratch=%s orphans=%d unattributed=%d leaked=%s sizeMismatches=%d",
		s.VMs, formatBytes(s.MemoryBytes), formatBytes(s.ScratchBytes), s.Orphans, s.Unattributed,
		formatBytes(s.LeakedBytes), s.SizeMismatches)
}

func formatBytes(b uint64) string {
	if b > maxBytes {
		b = maxBytes
	} else if r := b % mebibyte; r != 0 {
		b += mebibyte - r
	}
	return resource.NewQuantity(int64(b), resource.BinarySI).String() //nolint:gosec // b <= MaxInt64
}

// ParseSummary reads an annotation value written by Summary.String. Unknown keys are
// ignored, so older readers accept newer agents; missing keys are zero.
func ParseSummary(value string) (Summary, error) {
	var s Summary
	for _, field := range strings.Fields(value) {
		key, val, ok := strings.Cut(field, "=")
		if !ok {
			return Summary{}, fmt.Errorf("uvm summary: %q is not key=value", field)
		}
		var err error
		switch key {
		case "vms":
			s.VMs, err = parseCount(val)
		case "orphans":
			s.Orphans, err = parseCount(val)
		case "unattributed":
			s.Unattributed, err = parseCount(val)
		case "sizeMismatches":
			s.SizeMismatches, err = parseCount(val)
		case "leaked":
			s.LeakedBytes, err = parseBytes(val)
		case "memory":
			s.MemoryBytes, err = parseBytes(val)
		case "scratch":
			s.ScratchBytes, err = parseBytes(val)
		}
		if err != nil {
			return Summary{}, fmt.Errorf("uvm summary: %s: %w", key, err)
		}
	}
	return s, nil
}

func parseCount(v string) (int, error) {
	n, err := strconv.ParseUint(v, 10, 31)
	if err != nil {
		return 0, err
	}
	return int(n), nil
}

func parseBytes(v string) (uint64, error) {
	q, err := resource.ParseQuantity(v)
	if err != nil {
		return 0, err
	}
	// Exact, whatever the suffix: AsInt64 refuses a large binary quantity ("953674316407Mi")
	// that String itself writes, since it is held as a decimal. ParseQuantity saturates
	// what exceeds an int64 ("9Ei") to MaxInt64, which String never writes: refused.
	whole := new(inf.Dec).Round(q.AsDec(), 0, inf.RoundExact)
	if whole == nil || whole.Sign() < 0 || !whole.UnscaledBig().IsInt64() || whole.UnscaledBig().Int64() == math.MaxInt64 {
		return 0, fmt.Errorf("%q is not a byte count", v)
	}
	return uint64(whole.UnscaledBig().Int64()), nil //nolint:gosec // checked >= 0 above
}
