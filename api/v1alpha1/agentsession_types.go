package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// StartPolicy says what a session does when its class has no Ready warm sandbox.
// +kubebuilder:validation:Enum=PreferWarm;RequireWarm
type StartPolicy string

const (
	// PreferWarm binds a warm sandbox when one is Ready, else starts a cold one at once.
	PreferWarm StartPolicy = "PreferWarm"
	// RequireWarm waits for a warm sandbox and never starts a cold one.
	RequireWarm StartPolicy = "RequireWarm"
)

// SessionPhase is where a session is in its life.
// +kubebuilder:validation:Enum=Pending;Queued;Starting;Ready;Expired;Failed;Terminated
type SessionPhase string

const (
	// SessionPending means not bound yet (no warm sandbox for RequireWarm, or its class does not
	// exist yet).
	SessionPending SessionPhase = "Pending"
	// SessionQueued means waiting for the namespace's AgentQuota to admit it.
	SessionQueued SessionPhase = "Queued"
	// SessionStarting means bound to a pod that is not Ready yet (a cold start).
	SessionStarting SessionPhase = "Starting"
	// SessionReady means bound to a Ready pod; the agent can use status.podName / status.podIP.
	SessionReady SessionPhase = "Ready"
	// SessionExpired means ended by its max lifetime or idle timeout; the pod is destroyed.
	SessionExpired SessionPhase = "Expired"
	// SessionFailed means its pod died, was evicted or lost its node, or could not be started.
	SessionFailed SessionPhase = "Failed"
	// SessionTerminated means ended on request; the pod is destroyed.
	SessionTerminated SessionPhase = "Terminated"
)

// IsFinished reports whether the phase is an end state.
func (p SessionPhase) IsFinished() bool {
	return p == SessionExpired || p == SessionFailed || p == SessionTerminated
}

// StartType says whether a session got a warm sandbox or had one started for it.
// +kubebuilder:validation:Enum=Warm;Cold
type StartType string

const (
	// StartWarm means bound to a pod of the warm pool.
	StartWarm StartType = "Warm"
	// StartCold means a pod was created for the session.
	StartCold StartType = "Cold"
)

// CredentialsDeliveredAnnotation is set on an AgentSession by the client that delivered
// its spec.credentials into the sandbox, once every named key is written: an RFC 3339
// time, the moment of delivery. The manager mirrors it into the CredentialsDelivered
// condition. It says what the client did; the manager cannot see into the sandbox.
const CredentialsDeliveredAnnotation = "agents.hyperpool.io/credentials-delivered"

// SessionCredential names one Secret of the session's namespace whose keys the client
// writes into the sandbox after the bind. Names only: a Secret's values never appear in
// the session, the pod spec or an environment variable.
type SessionCredential struct {
	// secretName is a Secret in the session's namespace, read by the client with the
	// caller's own identity: a caller who cannot get it cannot deliver it.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')",message="spec.credentials[].secretName must be the name of a Secret in this namespace: lowercase letters, digits, '-' and '.', e.g. git-token"
	SecretName string `json:"secretName"`

	// keys are the Secret's keys to deliver, each as a file of that name; unset delivers
	// every key. At most 64, each a Secret key name (letters, digits, '-', '_', '.'; not
	// '.' and not starting with '..'), at most 253 characters.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^[-._a-zA-Z0-9]+$`
	// +kubebuilder:validation:XValidation:rule="self.all(k, k != '.' && !k.startsWith('..'))",message="spec.credentials[].keys must not be '.' or start with '..': a key is a file name in the session directory"
	// +listType=set
	// +optional
	Keys []string `json:"keys,omitempty"`

	// targetDir is where the files go: a relative path inside the sandbox's session
	// directory, segments of letters, digits, '.', '_' and '-' separated by '/', at most
	// 128 characters, no '..'. Unset: the session directory itself.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self.matches('^[-._a-zA-Z0-9]+(/[-._a-zA-Z0-9]+)*$')",message="spec.credentials[].targetDir must be a relative path inside the session directory: segments of letters, digits, '.', '_' and '-' separated by '/', with no leading '/', no drive letter and no backslash, e.g. git or cloud/aws"
	// +kubebuilder:validation:XValidation:rule="!('/' + self + '/').contains('/../')",message="spec.credentials[].targetDir must not contain a '..' segment: the files stay inside the session directory"
	// +optional
	TargetDir string `json:"targetDir,omitempty"`
}

// AgentSessionSpec is one claim on one sandbox of a class, for a bounded time.
//
// +kubebuilder:validation:XValidation:rule="!has(self.idleTimeout) || !has(self.maxLifetime) || duration(self.idleTimeout) <= duration(self.maxLifetime)",message="spec.idleTimeout must not be longer than spec.maxLifetime; shorten idleTimeout or lengthen maxLifetime"
// +kubebuilder:validation:XValidation:rule="has(self.credentials) == has(oldSelf.credentials)",message="spec.credentials is immutable: the audit trail shows what a session got; delete this session and create a new one",fieldPath=".credentials"
type AgentSessionSpec struct {
	// sandboxName is the AgentSandbox (sandbox class) in the session's own namespace to take
	// a sandbox from, at most 63 characters (a class name is stored in pod labels). Immutable.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')",message="spec.sandboxName must be the name of an AgentSandbox in this namespace: lowercase letters, digits, '-' and '.'"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.sandboxName is immutable; delete this session and create a new one for another sandbox"
	SandboxName string `json:"sandboxName"`

	// maxLifetime is the session's hard deadline from its bind, longer than 0s and at most
	// 168h (7 days). It is capped by the class's spec.lifetime.maxLifetime; unset takes the
	// class's value.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s') && duration(self) <= duration('168h')",message="spec.maxLifetime must be longer than 0s and at most 168h (7 days), e.g. 30m"
	// +optional
	MaxLifetime *Duration `json:"maxLifetime,omitempty"`

	// idleTimeout ends the session when no heartbeat (the agents.hyperpool.io/last-activity
	// annotation) came for this long: longer than 0s, at most 168h (7 days). Capped by the
	// class's; unset takes the class's.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s') && duration(self) <= duration('168h')",message="spec.idleTimeout must be longer than 0s and at most 168h (7 days), e.g. 5m"
	// +optional
	IdleTimeout *Duration `json:"idleTimeout,omitempty"`

	// ttlAfterFinished is how long the session object is kept after it ends, at most 720h
	// (30 days). Capped by the class's; unset takes the class's.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('720h')",message="spec.ttlAfterFinished must be at most 720h (30 days), e.g. 10m"
	// +optional
	TTLAfterFinished *Duration `json:"ttlAfterFinished,omitempty"`

	// startTimeout is how long the session may wait for its sandbox (Pending or Queued),
	// counted from its creation, longer than 0s and at most 168h (7 days). Past it the
	// session ends Failed with reason StartTimeout and frees its place in the quota queue.
	// Capped by the class's spec.lifetime.startTimeout; unset takes the class's (and with
	// neither, the session waits until it starts).
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s') && duration(self) <= duration('168h')",message="spec.startTimeout must be longer than 0s and at most 168h (7 days), e.g. 2m"
	// +optional
	StartTimeout *Duration `json:"startTimeout,omitempty"`

	// user is free text for audit: who or what the session is for.
	// +kubebuilder:validation:MaxLength=256
	// +optional
	User string `json:"user,omitempty"`

	// startPolicy is PreferWarm (take a warm sandbox, else start a cold one; the default)
	// or RequireWarm (wait for a warm sandbox).
	// +kubebuilder:default=PreferWarm
	// +optional
	StartPolicy StartPolicy `json:"startPolicy,omitempty"`

	// credentials names Secrets of the session's namespace, at most 16, whose keys the
	// client (pkg/client, kubectl agents) writes as files into the sandbox's session
	// directory after the bind, through exec stdin with the caller's own identity: never
	// in the pod spec, an environment variable or a warm pod. They die with the sandbox's
	// VM. Names only, so the session's audit trail shows what it got; the
	// CredentialsDelivered condition says when the client delivered them. Immutable.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.credentials is immutable: the audit trail shows what a session got; delete this session and create a new one"
	// +listType=map
	// +listMapKey=secretName
	// +optional
	Credentials []SessionCredential `json:"credentials,omitempty"`
}

// AgentSessionStatus is the observed state of a session.
type AgentSessionStatus struct {
	// phase is Pending, Queued, Starting, Ready, or an end state: Expired, Failed,
	// Terminated.
	// +optional
	Phase SessionPhase `json:"phase,omitempty"`

	// podName is the sandbox pod bound to this session.
	// +optional
	PodName string `json:"podName,omitempty"`

	// nodeName is the Windows node the sandbox runs on.
	// +optional
	NodeName string `json:"nodeName,omitempty"`

	// podIP is the sandbox pod's IP address.
	// +optional
	PodIP string `json:"podIP,omitempty"`

	// startType is Warm (taken from the pool) or Cold (started for this session).
	// +optional
	StartType StartType `json:"startType,omitempty"`

	// boundTime is when the pod was bound to the session, to the second (rounded down):
	// for display. Lifetimes count from preciseBoundTime.
	// +optional
	BoundTime *metav1.Time `json:"boundTime,omitempty"`

	// preciseBoundTime is when the pod was bound to the session, to the microsecond: the
	// instant the max lifetime and the idle timeout count from. A session bound by a manager
	// older than this field has only boundTime, whose lifetimes count from it.
	// +optional
	PreciseBoundTime *metav1.MicroTime `json:"preciseBoundTime,omitempty"`

	// readyTime is when the session first became Ready.
	// +optional
	ReadyTime *metav1.Time `json:"readyTime,omitempty"`

	// expiryTime is the hard deadline, preciseExpiryTime, rounded down to the second: for
	// display, and a time the session is sure to last until. The idle timeout may end the
	// session earlier.
	// +optional
	ExpiryTime *metav1.Time `json:"expiryTime,omitempty"`

	// preciseExpiryTime is the hard deadline to the microsecond: preciseBoundTime plus the
	// effective max lifetime (the session's, capped by its class's as it is now). The
	// session ends then, within the manager's reconcile lag, unless the idle timeout ended
	// it earlier.
	// +optional
	PreciseExpiryTime *metav1.MicroTime `json:"preciseExpiryTime,omitempty"`

	// endTime is when the session ended.
	// +optional
	EndTime *metav1.Time `json:"endTime,omitempty"`

	// endReason says why the session ended: MaxLifetime, IdleTimeout, PodFailed, PodDeleted,
	// NodeLost, or SandboxDeleted.
	// +optional
	EndReason string `json:"endReason,omitempty"`

	// footprint is the utility VM size of the session's sandbox.
	// +optional
	Footprint *Footprint `json:"footprint,omitempty"`

	// conditions: Ready (the sandbox can be used), QuotaReserved (the namespace's
	// AgentQuota admitted the session), and CredentialsDelivered (for a session with
	// spec.credentials, once bound: whether the client says it delivered them). Reasons are
	// documented with their constants.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// AgentSession is one claim on one sandbox of a class, for a bounded time. Deleting it
// destroys its sandbox. Its name is at most 63 characters: it is stored in the
// agents.hyperpool.io/session label of its pod.
//
// +kubebuilder:object:root=true
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63",message="metadata.name must be at most 63 characters: the session's name is stored in the agents.hyperpool.io/session label of its pod, and a label value is at most 63 characters"
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ases,categories=agents
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Sandbox",type=string,JSONPath=`.spec.sandboxName`
// +kubebuilder:printcolumn:name="Pod",type=string,JSONPath=`.status.podName`
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.status.nodeName`
// +kubebuilder:printcolumn:name="Start",type=string,JSONPath=`.status.startType`,description="Warm or Cold"
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.expiryTime`,description="The hard deadline (RFC 3339); the idle timeout may end the session sooner"
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.endReason`,priority=1
// +kubebuilder:printcolumn:name="User",type=string,JSONPath=`.spec.user`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AgentSession struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec names the sandbox class and the session's limits.
	Spec AgentSessionSpec `json:"spec"`
	// status tells where the session's sandbox is and when it ends.
	// +optional
	Status AgentSessionStatus `json:"status,omitempty"`
}

// AgentSessionList is a list of AgentSession.
//
// +kubebuilder:object:root=true
type AgentSessionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AgentSession `json:"items"`
}

func init() {
	SchemeBuilder.Register(&AgentSession{}, &AgentSessionList{})
}
