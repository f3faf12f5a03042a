package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// QuotaLimits are the resources an AgentQuota caps. An unset field is not limited.
type QuotaLimits struct {
	// sessions is the number of active sessions: bound or starting, not finished. At most
	// 1000000.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000000
	// +optional
	Sessions *int32 `json:"sessions,omitempty"`

	// warmSandboxes is the number of warm pods across all pools of the namespace. Pools are
	// trimmed to fit. At most 1000000.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000000
	// +optional
	WarmSandboxes *int32 `json:"warmSandboxes,omitempty"`

	// memory is the total Hyper-V utility VM memory of the namespace's live sandboxes, warm
	// and bound, e.g. 64Gi.
	// +kubebuilder:validation:XValidation:rule="!string(self).startsWith('-')",message="memory must not be negative, e.g. 64Gi"
	// +kubebuilder:validation:XValidation:rule="!string(self).matches('[eE][-+]?[0-9]{4,}')",message="memory must not have an exponent of more than 3 digits (a huge exponent stalls the manager's decoding or wraps to another value), e.g. 64Gi"
	// +optional
	Memory *resource.Quantity `json:"memory,omitempty"`

	// cpu is the total number of utility VM virtual processors of the namespace's live
	// sandboxes, warm and bound, e.g. 32.
	// +kubebuilder:validation:XValidation:rule="!string(self).startsWith('-')",message="cpu must not be negative, e.g. 32"
	// +kubebuilder:validation:XValidation:rule="!string(self).matches('[eE][-+]?[0-9]{4,}')",message="cpu must not have an exponent of more than 3 digits (a huge exponent stalls the manager's decoding or wraps to another value), e.g. 32"
	// +optional
	CPU *resource.Quantity `json:"cpu,omitempty"`
}

// AgentQuotaSpec is a namespace's ceiling for hyperpool sandboxes.
type AgentQuotaSpec struct {
	// hard are the limits. Sessions that do not fit wait in FIFO order (phase Queued), up
	// to maxQueued of them.
	Hard QuotaLimits `json:"hard"`

	// maxQueued is how many sessions may wait for a sessions slot at once. A session that
	// would wait beyond it ends at once in phase Failed with reason QueueFull (and a Warning
	// event), so one namespace cannot grow the manager's queue without limit: the client
	// retries later. Sessions already waiting stay queued when it is lowered. 0: no session
	// waits. Unset: the manager's --max-queued-sessions (default 1000).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100000
	// +optional
	MaxQueued *int32 `json:"maxQueued,omitempty"`
}

// AgentQuotaStatus is the namespace's usage against its quota.
type AgentQuotaStatus struct {
	// observedGeneration is the spec generation this status describes.
	// +kubebuilder:validation:Minimum=0
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// used is the namespace's current usage, with the same keys as spec.hard.
	// +optional
	Used QuotaLimits `json:"used,omitempty"`

	// queued is the number of sessions waiting for this quota.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=2147483647
	// +optional
	Queued int32 `json:"queued"`

	// queueHead is the session admitted next (the oldest waiting one).
	// +optional
	QueueHead string `json:"queueHead,omitempty"`

	// conditions: Active (this quota is the one enforced for the namespace; False with reason
	// Conflict when the namespace has more than one AgentQuota).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// AgentQuota is a namespace's ceiling on sessions, warm sandboxes, and Hyper-V VM memory and
// vCPUs. One per namespace.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=aq,categories=agents
// +kubebuilder:printcolumn:name="Sessions",type=integer,JSONPath=`.status.used.sessions`,description="Active sessions"
// +kubebuilder:printcolumn:name="Max Sessions",type=integer,JSONPath=`.spec.hard.sessions`
// +kubebuilder:printcolumn:name="Warm",type=integer,JSONPath=`.status.used.warmSandboxes`
// +kubebuilder:printcolumn:name="Max Warm",type=integer,JSONPath=`.spec.hard.warmSandboxes`
// +kubebuilder:printcolumn:name="Queued",type=integer,JSONPath=`.status.queued`
// +kubebuilder:printcolumn:name="Max Queued",type=integer,JSONPath=`.spec.maxQueued`,priority=1
// +kubebuilder:printcolumn:name="Next",type=string,JSONPath=`.status.queueHead`,description="The session admitted next"
// +kubebuilder:printcolumn:name="Memory",type=string,JSONPath=`.status.used.memory`,priority=1
// +kubebuilder:printcolumn:name="Max Memory",type=string,JSONPath=`.spec.hard.memory`,priority=1
// +kubebuilder:printcolumn:name="CPU",type=string,JSONPath=`.status.used.cpu`,priority=1
// +kubebuilder:printcolumn:name="Max CPU",type=string,JSONPath=`.spec.hard.cpu`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AgentQuota struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec holds the limits.
	Spec AgentQuotaSpec `json:"spec"`
	// status holds the usage and the queue.
	// +optional
	Status AgentQuotaStatus `json:"status,omitempty"`
}

// AgentQuotaList is a list of AgentQuota.
//
// +kubebuilder:object:root=true
type AgentQuotaList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AgentQuota `json:"items"`
}

func init() {
	SchemeBuilder.Register(&AgentQuota{}, &AgentQuotaList{})
}
