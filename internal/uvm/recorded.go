package uvm

import (
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/hyperpool/hyperpool/api/v1alpha1"
)

// FootprintAnnotation records, on every sandbox pod the manager creates, the footprint it
// charges for the pod's VM, computed from the class when the pod is built (FootprintOf).
// Quotas and pools read it back (RecordedFootprint) instead of the
// io.microsoft.virtualmachine.* sizing keys: those are the shim's input, and stripping them
// from a running pod leaves its VM as large as it was. Its value is the JSON of a
// v1alpha1.Footprint, e.g. {"memory":"1536Mi","vcpus":2}; {"memory":"0"} for a
// process-isolated pod. Only the manager may write it (the agent-metadata admission policy).
// The manager's pod cache must keep it.
const FootprintAnnotation = "agents.hyperpool.io/footprint"

// maxRecordedFootprintBytes bounds what RecordedFootprint parses: the manager writes well
// under 64 bytes, and anything much longer is not its.
const maxRecordedFootprintBytes = 256

// FormatFootprint is the FootprintAnnotation value for f.
func FormatFootprint(f v1alpha1.Footprint) string {
	data, _ := json.Marshal(f) // a quantity and an int: cannot fail
	return string(data)
}

// RecordedFootprint reads the footprint the manager recorded on a pod. ok is false when
// the annotation is missing (a pod made before the annotation existed, or stripped) or is
// not a footprint the manager could have written (too long, not JSON, negative values): the
// caller must then fall back to the class (see controllers' sandboxPodFootprint), never to
// zero.
func RecordedFootprint(pod *corev1.Pod) (f v1alpha1.Footprint, ok bool) {
	if pod == nil {
		return f, false
	}
	f, err := ParseFootprint(pod.Annotations[FootprintAnnotation])
	return f, err == nil
}

// ParseFootprint parses a FootprintAnnotation value.
func ParseFootprint(text string) (v1alpha1.Footprint, error) {
	var f v1alpha1.Footprint
	switch {
	case text == "":
		return f, fmt.Errorf("no %s annotation", FootprintAnnotation)
	case len(text) > maxRecordedFootprintBytes:
		return f, fmt.Errorf("%s is %d bytes, more than %d", FootprintAnnotation, len(text), maxRecordedFootprintBytes)
	}
	if err := json.Unmarshal([]byte(text), &f); err != nil {
		return v1alpha1.Footprint{}, fmt.Errorf("%s %q: %w", FootprintAnnotation, text, err)
	}
	if f.Memory.Sign() < 0 || f.VCPUs < 0 {
		return v1alpha1.Footprint{}, fmt.Errorf("%s %q: negative size", FootprintAnnotation, text)
	}
	return f, nil
}

// MaxFootprint is the larger of a and b in each dimension: what to count when two
// sources disagree and the smaller one may be a tenant's edit.
func MaxFootprint(a, b v1alpha1.Footprint) v1alpha1.Footprint {
	memory := a.Memory
	if b.Memory.Cmp(a.Memory) > 0 {
		memory = b.Memory
	}
	return v1alpha1.Footprint{Memory: memory.DeepCopy(), VCPUs: max(a.VCPUs, b.VCPUs)}
}
