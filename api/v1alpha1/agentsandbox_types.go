package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// IsolationMode says how the sandbox's containers are isolated from the Windows host.
// +kubebuilder:validation:Enum=HyperV;Process
type IsolationMode string

const (
	// IsolationHyperV runs each pod in its own Hyper-V utility VM (runhcs-wcow-hypervisor).
	IsolationHyperV IsolationMode = "HyperV"
	// IsolationProcess shares the host kernel (runhcs-wcow-process): faster, weaker.
	IsolationProcess IsolationMode = "Process"
)

// EgressPolicy says where a sandbox's pods may open connections to.
// +kubebuilder:validation:Enum=None;Internet;Unrestricted
type EgressPolicy string

const (
	// EgressNone denies all egress.
	EgressNone EgressPolicy = "None"
	// EgressInternet allows public addresses only: no cluster-internal, private or
	// link-local (cloud metadata) ranges.
	EgressInternet EgressPolicy = "Internet"
	// EgressUnrestricted applies no egress policy.
	EgressUnrestricted EgressPolicy = "Unrestricted"
)

// IngressPolicy says who may open connections to a sandbox's pods over the pod network.
// hyperpool's own access (exec, file transfer, the MCP tools) goes through the API server and
// the kubelet, never through the pod network, so it needs no ingress.
// +kubebuilder:validation:Enum=None;SameNamespace
type IngressPolicy string

const (
	// IngressNone lets nothing in over the pod network (the kubelet's probes from the node
	// still reach the pod: a NetworkPolicy never blocks the pod's own node).
	IngressNone IngressPolicy = "None"
	// IngressSameNamespace lets in pods of the class's namespace only, including its other
	// sandboxes.
	IngressSameNamespace IngressPolicy = "SameNamespace"
)

// MaxTerminationGracePeriodSeconds caps spec.template.spec.terminationGracePeriodSeconds: a
// session's deadline holds only if its sandbox stops within a bounded time after it ends.
const MaxTerminationGracePeriodSeconds = 300

// UpdateStrategyType says how warm pods built from an old template are replaced.
// +kubebuilder:validation:Enum=Recreate;OnReplenish
type UpdateStrategyType string

const (
	// RecreateUpdateStrategy deletes unclaimed warm pods of an old template promptly,
	// maxConcurrent at a time, and creates new ones in their place.
	RecreateUpdateStrategy UpdateStrategyType = "Recreate"
	// OnReplenishUpdateStrategy keeps old warm pods until sessions take them; the pods
	// created to refill the pool use the new template.
	OnReplenishUpdateStrategy UpdateStrategyType = "OnReplenish"
)

// PlacementSpec narrows where a class's pods run.
type PlacementSpec struct {
	// requireVerifiedRuntime sends the class's pods only to nodes whose hyperpool node agent
	// verified the RuntimeClass's containerd handler: registered, Hyper-V isolated, and
	// passing the VM sizing annotations (the Node label
	// runtime.agents.hyperpool.io/<handler>=verified). Needs the node agent on the Windows
	// nodes (the chart's nodeAgent.enabled); without one, the pods stay Pending and the
	// condition RuntimeReady says NoVerifiedNode. Only with isolation HyperV.
	// +kubebuilder:default=false
	// +optional
	RequireVerifiedRuntime bool `json:"requireVerifiedRuntime,omitempty"`
}

// AgentSandboxSpec is a sandbox class: the Windows pod, its Hyper-V VM, its limits, and the
// size of its warm pool.
//
// +kubebuilder:validation:XValidation:rule="!has(self.vm) || self.isolation == 'HyperV'",message="spec.vm sizes the Hyper-V utility VM and has no effect with spec.isolation: Process; remove spec.vm or set spec.isolation: HyperV"
// +kubebuilder:validation:XValidation:rule="!has(self.placement) || !has(self.placement.requireVerifiedRuntime) || !self.placement.requireVerifiedRuntime || self.isolation == 'HyperV'",message="spec.placement.requireVerifiedRuntime checks the Hyper-V runtime handler and has no effect with spec.isolation: Process; remove it or set spec.isolation: HyperV"
type AgentSandboxSpec struct {
	// replicas is the number of warm sandboxes to keep: Ready pods that no session holds
	// yet. Sessions take them at once; the pool refills behind them. 0 turns the pool off
	// (sessions then start cold). Also served by the /scale subresource (kubectl scale,
	// HPA, KEDA).
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10000
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// template is the pod each sandbox runs. hyperpool adds the Windows node selector and
	// toleration, the build affinity, the RuntimeClass, the VM sizing annotations and safe
	// defaults (no service account token, ContainerUser). Host access is refused: no
	// hostNetwork, no HostProcess, no privileged containers. Credentials come with the
	// session, never in a warm pod: no automountServiceAccountToken: true, no secret,
	// projected, csi or azureFile volumes nor any volume with a secretRef, no gMSA
	// (windowsOptions.gmsaCredentialSpec[Name]), and no Secret in env or envFrom. No
	// persistentVolumeClaim volumes: every pod of the pool would share the claim (an
	// ephemeral volume's volumeClaimTemplate gives each its own).
	// terminationGracePeriodSeconds is at most 300 (unset: Kubernetes' 30): the VM runs
	// that long after its session ends. Label and annotation keys under
	// agents.hyperpool.io/ are the manager's own and refused.
	// +kubebuilder:validation:XValidation:rule="has(self.spec) && size(self.spec.containers) > 0",message="spec.template.spec.containers must list at least one container"
	// +kubebuilder:validation:XValidation:rule="!has(self.spec) || !has(self.spec.hostNetwork) || !self.spec.hostNetwork",message="spec.template.spec.hostNetwork is not allowed: sandboxes never share the node's network; remove it"
	// +kubebuilder:validation:XValidation:rule="!has(self.spec) || !has(self.spec.securityContext) || !has(self.spec.securityContext.windowsOptions) || !has(self.spec.securityContext.windowsOptions.hostProcess) || !self.spec.securityContext.windowsOptions.hostProcess",message="spec.template.spec.securityContext.windowsOptions.hostProcess is not allowed: a HostProcess pod runs on the host, outside any sandbox; remove it"
	// +kubebuilder:validation:XValidation:rule="!has(self.spec) || self.spec.containers.all(c, !has(c.securityContext) || !has(c.securityContext.windowsOptions) || !has(c.securityContext.windowsOptions.hostProcess) || !c.securityContext.windowsOptions.hostProcess)",message="spec.template.spec.containers[].securityContext.windowsOptions.hostProcess is not allowed: a HostProcess container runs on the host, outside any sandbox; remove it"
	// +kubebuilder:validation:XValidation:rule="!has(self.spec) || self.spec.containers.all(c, !has(c.securityContext) || !has(c.securityContext.privileged) || !c.securityContext.privileged)",message="spec.template.spec.containers[].securityContext.privileged is not allowed in a sandbox; remove it"
	// +kubebuilder:validation:XValidation:rule="!has(self.spec) || !has(self.spec.initContainers) || self.spec.initContainers.all(c, !has(c.securityContext) || ((!has(c.securityContext.privileged) || !c.securityContext.privileged) && (!has(c.securityContext.windowsOptions) || !has(c.securityContext.windowsOptions.hostProcess) || !c.securityContext.windowsOptions.hostProcess)))",message="spec.template.spec.initContainers[].securityContext may not be privileged or hostProcess; remove it"
	// +kubebuilder:validation:XValidation:rule="!has(self.spec) || !has(self.spec.runtimeClassName)",message="spec.template.spec.runtimeClassName is set by hyperpool; use spec.runtimeClassName instead"
	// +kubebuilder:validation:XValidation:rule="!has(self.spec) || !has(self.spec.nodeName)",message="spec.template.spec.nodeName is not allowed: the scheduler places sandboxes on compatible Windows nodes; remove it"
	// +kubebuilder:validation:XValidation:rule="!has(self.spec) || ((!has(self.spec.hostPID) || !self.spec.hostPID) && (!has(self.spec.hostIPC) || !self.spec.hostIPC))",message="spec.template.spec.hostPID and hostIPC are not allowed: sandboxes never share the node's processes; remove them"
	// +kubebuilder:validation:XValidation:rule="!has(self.spec) || !has(self.spec.volumes) || self.spec.volumes.all(v, !has(v.hostPath))",message="spec.template.spec.volumes[].hostPath is not allowed: a sandbox must not reach the node's disk; use an emptyDir or a persistent volume"
	// +kubebuilder:validation:XValidation:rule="!has(self.spec) || !has(self.spec.os) || self.spec.os.name == 'windows'",message="spec.template.spec.os.name must be windows (or unset): hyperpool runs Windows sandboxes"
	// +kubebuilder:validation:XValidation:rule="!has(self.metadata) || !has(self.metadata.labels) || self.metadata.labels.all(k, !k.startsWith('agents.hyperpool.io/'))",message="spec.template.metadata.labels must not use keys under agents.hyperpool.io/: they are the manager's own bookkeeping on its pods (a template label agents.hyperpool.io/session made a pool create pods without end); remove them"
	// +kubebuilder:validation:XValidation:rule="!has(self.metadata) || !has(self.metadata.annotations) || self.metadata.annotations.all(k, !k.startsWith('agents.hyperpool.io/'))",message="spec.template.metadata.annotations must not use keys under agents.hyperpool.io/: they are the manager's own bookkeeping on its pods; remove them"
	// +kubebuilder:validation:XValidation:rule="!has(self.spec) || !has(self.spec.automountServiceAccountToken) || !self.spec.automountServiceAccountToken",message="spec.template.spec.automountServiceAccountToken: true is not allowed: a warm sandbox holds no credentials, they come with the session; remove it"
	// +kubebuilder:validation:XValidation:rule="!has(self.spec) || !has(self.spec.volumes) || self.spec.volumes.all(v, !has(v.secret))",message="spec.template.spec.volumes[].secret is not allowed: a warm sandbox holds no credentials, they come with the session; remove the volume"
	// +kubebuilder:validation:XValidation:rule="!has(self.spec) || !has(self.spec.volumes) || self.spec.volumes.all(v, !has(v.projected))",message="spec.template.spec.volumes[].projected is not allowed: it can carry a service account token or a Secret, and a warm sandbox holds no credentials (they come with the session); use configMap, downwardAPI or emptyDir volumes"
	// +kubebuilder:validation:XValidation:rule="!has(self.spec) || !has(self.spec.priorityClassName) || !self.spec.priorityClassName.startsWith('system-')",message="spec.template.spec.priorityClassName must not be a system- priority class (system-node-critical, system-cluster-critical): those are for the cluster's own components; use a priority class of your own"
	// +kubebuilder:validation:XValidation:rule="!has(self.spec) || !has(self.spec.ephemeralContainers) || size(self.spec.ephemeralContainers) == 0",message="spec.template.spec.ephemeralContainers is not allowed: a pod is never created with ephemeral containers; remove it"
	// +kubebuilder:validation:XValidation:rule="!has(self.spec) || !has(self.spec.terminationGracePeriodSeconds) || (self.spec.terminationGracePeriodSeconds >= 0 && self.spec.terminationGracePeriodSeconds <= 300)",message="spec.template.spec.terminationGracePeriodSeconds must be between 0 and 300 (5 minutes): a sandbox's VM keeps running for its grace period after its session ends; shorten it (unset: 30)"
	// +kubebuilder:validation:XValidation:rule="!has(self.spec) || !has(self.spec.volumes) || self.spec.volumes.all(v, !has(v.csi))",message="spec.template.spec.volumes[].csi is not allowed: a CSI volume can carry node-publish secrets and mounts storage the driver may share between pods; a warm sandbox holds no credentials, they come with the session; for storage of its own use volumes[].ephemeral.volumeClaimTemplate"
	// +kubebuilder:validation:XValidation:rule="!has(self.spec) || !has(self.spec.volumes) || self.spec.volumes.all(v, !has(v.azureFile))",message="spec.template.spec.volumes[].azureFile is not allowed: it mounts the share with the storage account key of the Secret its secretName names, and a warm sandbox holds no credentials, they come with the session; remove the volume (for storage of its own use volumes[].ephemeral.volumeClaimTemplate)"
	// +kubebuilder:validation:XValidation:rule="!has(self.spec) || !has(self.spec.volumes) || self.spec.volumes.all(v, !(has(v.cephfs) && has(v.cephfs.secretRef)) && !(has(v.cinder) && has(v.cinder.secretRef)) && !(has(v.flexVolume) && has(v.flexVolume.secretRef)) && !(has(v.iscsi) && has(v.iscsi.secretRef)) && !(has(v.rbd) && has(v.rbd.secretRef)) && !has(v.scaleIO) && !(has(v.storageos) && has(v.storageos.secretRef)))",message="spec.template.spec.volumes[].<kind>.secretRef (cephfs, cinder, flexVolume, iscsi, rbd, scaleIO, storageos) is not allowed: the volume is mounted with the Secret it names, and a warm sandbox holds no credentials, they come with the session; remove the volume (for storage of its own use volumes[].ephemeral.volumeClaimTemplate)"
	// +kubebuilder:validation:XValidation:rule="!has(self.spec) || !has(self.spec.volumes) || self.spec.volumes.all(v, !has(v.gitRepo))",message="spec.template.spec.volumes[].gitRepo is not allowed: the kubelet runs git for it on the node (CVE-2024-10220), and the volume kind is deprecated; clone the repository inside the sandbox after the bind"
	// +kubebuilder:validation:XValidation:rule="!has(self.spec) || !has(self.spec.volumes) || self.spec.volumes.all(v, !has(v.persistentVolumeClaim))",message="spec.template.spec.volumes[].persistentVolumeClaim is not allowed: every warm sandbox of the pool would mount the same claim, so one session's files would reach the next; use volumes[].ephemeral.volumeClaimTemplate for a claim per sandbox"
	// +kubebuilder:validation:XValidation:rule="!has(self.spec) || !has(self.spec.securityContext) || !has(self.spec.securityContext.windowsOptions) || (!has(self.spec.securityContext.windowsOptions.gmsaCredentialSpec) && !has(self.spec.securityContext.windowsOptions.gmsaCredentialSpecName))",message="spec.template.spec.securityContext.windowsOptions.gmsaCredentialSpec and gmsaCredentialSpecName are not allowed: a warm sandbox would hold an Active Directory identity before any session takes it; remove them"
	// +kubebuilder:validation:XValidation:rule="!has(self.spec) || (self.spec.containers.all(c, !has(c.securityContext) || !has(c.securityContext.windowsOptions) || (!has(c.securityContext.windowsOptions.gmsaCredentialSpec) && !has(c.securityContext.windowsOptions.gmsaCredentialSpecName))) && (!has(self.spec.initContainers) || self.spec.initContainers.all(c, !has(c.securityContext) || !has(c.securityContext.windowsOptions) || (!has(c.securityContext.windowsOptions.gmsaCredentialSpec) && !has(c.securityContext.windowsOptions.gmsaCredentialSpecName)))))",message="spec.template.spec.containers[] and initContainers[] securityContext.windowsOptions.gmsaCredentialSpec and gmsaCredentialSpecName are not allowed: a warm sandbox would hold an Active Directory identity before any session takes it; remove them"
	Template corev1.PodTemplateSpec `json:"template"`

	// isolation is HyperV (each pod in its own utility VM, the default) or Process
	// (shares the host kernel; the image build must match the node's, see windows).
	// +kubebuilder:default=HyperV
	// +optional
	Isolation IsolationMode `json:"isolation,omitempty"`

	// runtimeClassName is the RuntimeClass of the sandbox pods. Empty means the manager's
	// configured class for the isolation (--hyperv-runtime-class or --process-runtime-class).
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')",message="spec.runtimeClassName must be a RuntimeClass name: lowercase letters, digits, '-' and '.', e.g. hyperv"
	// +optional
	RuntimeClassName *string `json:"runtimeClassName,omitempty"`

	// windows says which Windows build the image targets.
	Windows WindowsSpec `json:"windows"`

	// vm sizes the Hyper-V utility VM of each sandbox. Only meaningful with isolation
	// HyperV. Unset values take hcsshim's defaults, except memory, which defaults to the
	// sum of the containers' memory limits plus 256 MB, rounded up to 512 MB.
	// +optional
	VM *VMSpec `json:"vm,omitempty"`

	// placement narrows the nodes the sandbox pods may run on, beyond the RuntimeClass's
	// scheduling and the Windows build.
	// +optional
	Placement PlacementSpec `json:"placement,omitempty"`

	// lifetime holds the caps every session of this class lives under. A session may ask
	// for less, never for more.
	// +kubebuilder:default={}
	// +optional
	Lifetime LifetimeSpec `json:"lifetime,omitempty"`

	// egress is the network policy of the sandbox pods: None (no egress), Internet (public
	// addresses only, the default) or Unrestricted.
	// +kubebuilder:default=Internet
	// +optional
	Egress EgressPolicy `json:"egress,omitempty"`

	// ingress says who may connect to the sandbox pods over the pod network: None (nobody,
	// the default) or SameNamespace (pods of this namespace, the class's other sandboxes
	// included). Sessions need none: exec, file transfer and the MCP tools reach the sandbox
	// through the API server and the kubelet. The class's NetworkPolicy (<class>-egress)
	// carries it, beside spec.egress.
	// +kubebuilder:default=None
	// +optional
	Ingress IngressPolicy `json:"ingress,omitempty"`

	// updateStrategy says how warm pods of an older template are replaced when the
	// template changes. Pods bound to a session are never touched.
	// +kubebuilder:default={}
	// +optional
	UpdateStrategy UpdateStrategy `json:"updateStrategy,omitempty"`

	// replenish paces how the pool replaces the warm sandboxes that sessions take.
	// +optional
	Replenish ReplenishSpec `json:"replenish,omitempty"`

	// autoscaling sizes the warm pool by demand; the manager then owns replicas. See
	// AutoscalingSpec.
	// +optional
	Autoscaling *AutoscalingSpec `json:"autoscaling,omitempty"`

	// rawTemplate and templateError are set when the stored spec.template could not be
	// decoded into a PodTemplateSpec (see UnmarshalJSON and TemplateProblem).
	rawTemplate   string `json:"-"`
	templateError string `json:"-"`
}

// ReplenishSpec paces the replacement of taken warm sandboxes. Every replacement is a pod
// to create, schedule and boot (a Hyper-V VM), work that competes with the binds of the
// sessions arriving at the same moment, on the API server and on the nodes. A pool sized for
// a burst can wait for the burst to pass before it refills.
type ReplenishSpec struct {
	// quietPeriod: the pool replaces taken sandboxes once no session has taken one for this
	// long (0, the default: at once). At most 5m.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('5m')",message="spec.replenish.quietPeriod must be between 0s and 5m, e.g. 2s"
	// +optional
	QuietPeriod *Duration `json:"quietPeriod,omitempty"`

	// minReady: while fewer warm sandboxes than this are Ready, the pool replaces at once,
	// quiet or not, so that a steady stream of sessions never drains it. Unset: half of
	// replicas, rounded up. Only used with a quietPeriod. At most 10000, as replicas.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10000
	// +optional
	MinReady *int32 `json:"minReady,omitempty"`
}

// WindowsSpec describes the Windows image of a sandbox class.
type WindowsSpec struct {
	// imageBuild is the Windows build number the image targets, e.g. 17763 (Server 2019),
	// 20348 (Server 2022) or 26100 (Server 2025). With HyperV isolation a pod runs on nodes
	// of the same or a newer build; with Process isolation on nodes of the same build (or,
	// from Server 2022 on, a node of a newer build that accepts the previous LTSC). Nodes
	// are matched on their node.kubernetes.io/windows-build label. At most 65535 (a Windows
	// build number is 16 bits).
	// +kubebuilder:validation:XValidation:rule="self >= 17763 && self <= 65535",message="spec.windows.imageBuild must be a Windows build number from 17763 (Server 2019) up to 65535, e.g. 17763, 20348 or 26100"
	ImageBuild int32 `json:"imageBuild"`
}

// VMSpec sizes a Hyper-V utility VM. Each field maps to an hcsshim pod annotation
// (io.microsoft.virtualmachine.*).
type VMSpec struct {
	// memoryMB is the VM's memory in MB (a multiple of 2). Unset: the sum of the
	// containers' memory limits plus 256 MB, rounded up to 512 MB (1024 MB without limits).
	// +kubebuilder:validation:Minimum=256
	// +kubebuilder:validation:Maximum=1048576
	// +kubebuilder:validation:XValidation:rule="self % 2 == 0",message="spec.vm.memoryMB must be a multiple of 2 MB (Hyper-V allocates memory in 2 MB pages), e.g. 2048"
	// +optional
	MemoryMB *int32 `json:"memoryMB,omitempty"`

	// processorCount is the number of virtual processors. Unset: hcsshim's default (2).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=128
	// +optional
	ProcessorCount *int32 `json:"processorCount,omitempty"`

	// processorLimit caps the VM's processor use, 1-100000 (100000 = all of its vCPUs).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	// +optional
	ProcessorLimit *int32 `json:"processorLimit,omitempty"`

	// processorWeight is the VM's relative processor weight against other VMs, 0-10000.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10000
	// +optional
	ProcessorWeight *int32 `json:"processorWeight,omitempty"`

	// allowOvercommit backs the VM's memory with host virtual memory that can be paged
	// (denser, slower under pressure). Unset: hcsshim's default (true).
	// +optional
	AllowOvercommit *bool `json:"allowOvercommit,omitempty"`

	// storageQoS caps the VM's storage throughput.
	// +optional
	StorageQoS *StorageQoS `json:"storageQoS,omitempty"`
}

// StorageQoS caps a utility VM's storage throughput.
type StorageQoS struct {
	// iopsMaximum is the maximum number of I/O operations per second, 1 to 2147483647
	// (hcsshim reads it as a 32-bit integer).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=2147483647
	// +optional
	IOPSMaximum *int32 `json:"iopsMaximum,omitempty"`

	// bandwidthMaximum is the maximum bandwidth in bytes per second, 1 to 2147483647
	// (hcsshim reads it as a 32-bit integer and ignores a larger value).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=2147483647
	// +optional
	BandwidthMaximum *int64 `json:"bandwidthMaximum,omitempty"`
}

// LifetimeSpec bounds every session of a class. Durations are Go durations: 90s, 15m, 1h30m.
// +kubebuilder:validation:XValidation:rule="!has(self.idleTimeout) || !has(self.maxLifetime) || duration(self.idleTimeout) <= duration(self.maxLifetime)",message="spec.lifetime.idleTimeout must not be longer than spec.lifetime.maxLifetime (default 1h); shorten idleTimeout or lengthen maxLifetime"
type LifetimeSpec struct {
	// maxLifetime is the hard deadline of a session, counted from its bind: 1s to 168h
	// (7 days).
	// +kubebuilder:default="1h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('168h')",message="spec.lifetime.maxLifetime must be between 1s and 168h (7 days), e.g. 1h"
	// +optional
	MaxLifetime *Duration `json:"maxLifetime,omitempty"`

	// idleTimeout ends a session that has sent no heartbeat (the
	// agents.hyperpool.io/last-activity annotation) for this long: longer than 0s, at most
	// 168h (7 days). Unset: 15m, or maxLifetime when that is shorter.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s') && duration(self) <= duration('168h')",message="spec.lifetime.idleTimeout must be longer than 0s and at most 168h (7 days), e.g. 15m"
	// +optional
	IdleTimeout *Duration `json:"idleTimeout,omitempty"`

	// startTimeout is the longest a session of this class may wait for its sandbox
	// (Pending or Queued), counted from its creation, and the value for sessions that set
	// none: past it the session ends Failed (StartTimeout) and frees its place in the
	// quota queue. Longer than 0s, at most 168h (7 days). Unset: sessions wait until they
	// start, or as long as their own spec.startTimeout.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s') && duration(self) <= duration('168h')",message="spec.lifetime.startTimeout must be longer than 0s and at most 168h (7 days), e.g. 5m"
	// +optional
	StartTimeout *Duration `json:"startTimeout,omitempty"`

	// ttlAfterFinished is how long a finished session object is kept (for its status and
	// events) before it is deleted, at most 720h (30 days).
	// +kubebuilder:default="10m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('720h')",message="spec.lifetime.ttlAfterFinished must be at most 720h (30 days), e.g. 10m"
	// +optional
	TTLAfterFinished *Duration `json:"ttlAfterFinished,omitempty"`
}

// UpdateStrategy says how warm pods of an older template are replaced.
type UpdateStrategy struct {
	// type is Recreate (replace old warm pods promptly, maxConcurrent at a time; the
	// default) or OnReplenish (replace them only as sessions take them).
	// +kubebuilder:default=Recreate
	// +optional
	Type UpdateStrategyType `json:"type,omitempty"`

	// maxConcurrent is how many old warm pods Recreate replaces at a time, so a template
	// change does not empty the pool at once. At most 10000, as replicas.
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	// +optional
	MaxConcurrent *int32 `json:"maxConcurrent,omitempty"`
}

// AgentSandboxStatus is the observed state of a sandbox class and its warm pool.
type AgentSandboxStatus struct {
	// observedGeneration is the spec generation this status describes.
	// +kubebuilder:validation:Minimum=0
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// replicas is the number of warm pods (not bound to a session), Ready or not.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=2147483647
	// +optional
	Replicas int32 `json:"replicas"`

	// readyReplicas is the number of warm pods that are Ready to be bound.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=2147483647
	// +optional
	ReadyReplicas int32 `json:"readyReplicas"`

	// activeSessions is the number of pods of this class bound to a session.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=2147483647
	// +optional
	ActiveSessions int32 `json:"activeSessions"`

	// selector is the label selector of the warm pods, for the /scale subresource.
	// +optional
	Selector string `json:"selector,omitempty"`

	// templateHash is the hash of the current pod template; warm pods carry it in the
	// agents.hyperpool.io/template-hash label.
	// +optional
	TemplateHash string `json:"templateHash,omitempty"`

	// footprint is the utility VM size of one sandbox of this class and of all its live
	// pods (warm and bound).
	// +optional
	Footprint *PoolFootprint `json:"footprint,omitempty"`

	// autoscaling is what the autoscaler measured and decided, when spec.autoscaling is set.
	// +optional
	Autoscaling *AutoscalingStatus `json:"autoscaling,omitempty"`

	// conditions: Ready (the pool holds spec.replicas Ready warm pods) and Degraded (with
	// reason RuntimeClassNotFound, NoCompatibleNodes, PodCreateForbidden or PodsNotReady
	// and a message naming the value and the fix).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// PoolFootprint is the utility VM size of a class's sandboxes.
type PoolFootprint struct {
	// perSandbox is the VM of one sandbox.
	PerSandbox Footprint `json:"perSandbox"`
	// total is the sum over all live pods of the class, warm and bound.
	Total Footprint `json:"total"`
}

// AgentSandbox is a sandbox class and its warm pool of Hyper-V-isolated Windows pods. Its
// name is at most 63 characters: it is stored in the agents.hyperpool.io/sandbox label of
// its pods.
//
// +kubebuilder:object:root=true
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63",message="metadata.name must be at most 63 characters: the class's name is stored in the agents.hyperpool.io/sandbox label of its pods, and a label value is at most 63 characters"
// +kubebuilder:subresource:status
// +kubebuilder:subresource:scale:specpath=.spec.replicas,statuspath=.status.replicas,selectorpath=.status.selector
// +kubebuilder:resource:shortName=asb,categories=agents
// +kubebuilder:printcolumn:name="Warm",type=integer,JSONPath=`.spec.replicas`,description="Target number of warm sandboxes"
// +kubebuilder:printcolumn:name="Ready",type=integer,JSONPath=`.status.readyReplicas`,description="Warm sandboxes Ready to bind"
// +kubebuilder:printcolumn:name="Active",type=integer,JSONPath=`.status.activeSessions`,description="Sandboxes bound to a session"
// +kubebuilder:printcolumn:name="Isolation",type=string,JSONPath=`.spec.isolation`
// +kubebuilder:printcolumn:name="Build",type=integer,JSONPath=`.spec.windows.imageBuild`,description="Windows build the image targets"
// +kubebuilder:printcolumn:name="VM Memory",type=string,JSONPath=`.status.footprint.perSandbox.memory`,priority=1
// +kubebuilder:printcolumn:name="Total Memory",type=string,JSONPath=`.status.footprint.total.memory`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AgentSandbox struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the sandbox class and the size of its warm pool.
	Spec AgentSandboxSpec `json:"spec"`
	// status is the observed state of the pool.
	// +optional
	Status AgentSandboxStatus `json:"status,omitempty"`
}

// AgentSandboxList is a list of AgentSandbox.
//
// +kubebuilder:object:root=true
type AgentSandboxList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AgentSandbox `json:"items"`
}

func init() {
	SchemeBuilder.Register(&AgentSandbox{}, &AgentSandboxList{})
}
