package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
)

// Footprint is the size of the Hyper-V utility VM (UVM) behind one or more sandboxes: what the
// Windows nodes really give up for them, beyond the containers' own requests.
type Footprint struct {
	// memory is the utility VM memory (for a pool: the sum over its sandboxes).
	// +optional
	Memory resource.Quantity `json:"memory,omitempty"`

	// vcpus is the number of virtual processors of the utility VM (for a pool: the sum).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=2147483647
	// +optional
	VCPUs int32 `json:"vcpus,omitempty"`
}

// Label and annotation keys that hyperpool sets on the pods it manages, and that clients may
// read or (for LastActivityAnnotation) write.
const (
	// ClassLabel names the class (the AgentSandbox) a sandbox pod was created for. The key
	// says "sandbox" for the kind's name; the API keeps it.
	ClassLabel = "agents.hyperpool.io/sandbox"

	// SandboxLabel is ClassLabel.
	//
	// Deprecated: use ClassLabel, which names what the label names (a class, not one
	// sandbox). Kept for clients of v1alpha1; it goes with the next API version.
	SandboxLabel = ClassLabel

	// TemplateHashLabel is the hash of the AgentSandbox pod template the pod was built from.
	TemplateHashLabel = "agents.hyperpool.io/template-hash"

	// SessionLabel names the AgentSession a pod is bound to. A pod without it is warm; a pod
	// with it is never returned to a pool.
	SessionLabel = "agents.hyperpool.io/session"

	// LastActivityAnnotation is the session heartbeat: an RFC 3339 time, set on the
	// AgentSession by any client (`kubectl annotate --overwrite ases/NAME
	// agents.hyperpool.io/last-activity=2026-01-02T15:04:05Z`). It resets the idle timeout.
	LastActivityAnnotation = "agents.hyperpool.io/last-activity"
)
