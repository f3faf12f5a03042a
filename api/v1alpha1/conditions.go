package v1alpha1

// Condition types and reasons. Every reason a controller sets is declared here, so this file
// is the reference for what a condition can say.

// AgentSandbox conditions.
const (
	// SandboxReady is True when the pool holds spec.replicas Ready warm pods.
	SandboxReady = "Ready"
	// SandboxDegraded is True when something keeps the pool from its target; the reason
	// says what and the message names the values and the fix.
	SandboxDegraded = "Degraded"

	// ReasonPoolReady: the pool is at its target.
	ReasonPoolReady = "PoolReady"
	// ReasonPoolFilling: warm pods are being created or are booting.
	ReasonPoolFilling = "PoolFilling"
	// ReasonAsExpected: nothing keeps the pool from its target.
	ReasonAsExpected = "AsExpected"
	// ReasonRuntimeClassNotFound: the RuntimeClass the pods would use does not exist.
	ReasonRuntimeClassNotFound = "RuntimeClassNotFound"
	// ReasonNoCompatibleNodes: no Windows node has a build that can run spec.windows.imageBuild
	// with spec.isolation.
	ReasonNoCompatibleNodes = "NoCompatibleNodes"
	// ReasonPodCreateForbidden: the API server refused to create a pod (a ResourceQuota, an
	// admission policy); the message carries the API's words.
	ReasonPodCreateForbidden = "PodCreateForbidden"
	// ReasonPodsNotReady: warm pods did not become Ready within the deadline and are being
	// replaced, with backoff.
	ReasonPodsNotReady = "PodsNotReady"
	// ReasonQuotaLimited: the namespace's AgentQuota (warmSandboxes, memory or cpu) holds the
	// pool below spec.replicas; the message names the quota and the arithmetic.
	ReasonQuotaLimited = "QuotaLimited"

	// SandboxVMSizeApplied says whether the class's utility VMs got the memory their pods ask
	// for, as the node agents measured it through HCS (the agents.hyperpool.io/uvm-sizes Node
	// annotation). Absent while no node agent has measured a VM of the class.
	SandboxVMSizeApplied = "VMSizeApplied"
	// ReasonVMSizeMeasured: every measured VM of the class has the size its pod asks for, so
	// status.footprint is what the VMs use.
	ReasonVMSizeMeasured = "VMSizeMeasured"
	// ReasonVMSizeNotApplied: some VMs got another size, usually hcsshim's default (1024 MB),
	// because the node's containerd runtime handler does not pass pod annotations to the
	// shim. The message names the nodes and sizes and the fix; a Warning Event says so too.
	ReasonVMSizeNotApplied = "VMSizeNotApplied"

	// SandboxRuntimeReady says whether the containerd runtime handler of a HyperV class's
	// RuntimeClass runs Hyper-V sandboxes at the size asked on the nodes whose node agent
	// checked it (the agents.hyperpool.io/runtime-handlers Node annotation). Absent while no
	// node agent reports on the handler and the class does not require verified nodes.
	SandboxRuntimeReady = "RuntimeReady"
	// ReasonRuntimeVerified: every node that checked the handler found it registered, Hyper-V
	// isolated and passing the VM sizing annotations.
	ReasonRuntimeVerified = "RuntimeVerified"
	// ReasonHandlerMissing: containerd on some nodes has no such handler (or has it under a
	// plugin name its configuration version ignores); pods cannot start there.
	ReasonHandlerMissing = "HandlerMissing"
	// ReasonNotHyperV: the handler on some nodes is not runhcs with SandboxIsolation = 1,
	// so its pods would run without a utility VM.
	ReasonNotHyperV = "NotHyperV"
	// ReasonAnnotationsDropped: the handler on some nodes does not pass hcsshim's
	// io.microsoft.virtualmachine.* annotations (pod_annotations), so VMs get 1024 MB.
	ReasonAnnotationsDropped = "AnnotationsDropped"
	// ReasonNoVerifiedNode: spec.placement.requireVerifiedRuntime is set and no node agent
	// has verified the handler, so the class's pods have nowhere to go.
	ReasonNoVerifiedNode = "NoVerifiedNode"
)

// AgentSandbox conditions of a pool with spec.autoscaling (absent without it).
const (
	// SandboxScalingLimited is True when something holds the recommendation below the
	// model's need, or keeps the autoscaler from reading its spec; the reason says what.
	SandboxScalingLimited = "ScalingLimited"
	// SandboxScaleOverridden is True when spec.replicas was written by someone other than
	// the manager (an HPA, KEDA, kubectl scale) while spec.autoscaling sizes the pool.
	SandboxScaleOverridden = "ScaleOverridden"

	// ReasonWithinLimits (ScalingLimited False): the recommendation is the model's need, or
	// the need raised to a minimum.
	ReasonWithinLimits = "WithinLimits"
	// ReasonMaxReplicasLimited (ScalingLimited True): spec.autoscaling.maxReplicas cuts the
	// need; the message gives both numbers.
	ReasonMaxReplicasLimited = "MaxReplicasLimited"
	// ReasonScheduleLimited (ScalingLimited True): the open schedule's maxReplicas cuts the
	// need; the message names the schedule.
	ReasonScheduleLimited = "ScheduleLimited"
	// ReasonQuotaLimited (ScalingLimited True) is also used: the namespace's AgentQuota
	// warmSandboxes cuts the need.
	// ReasonInvalidSchedule (ScalingLimited True): a schedule's start, end or timeZone
	// cannot be read; it is ignored until fixed, and the message names the value.
	ReasonInvalidSchedule = "InvalidSchedule"
	// ReasonExternalScaleWrite (ScaleOverridden True): spec.replicas holds a value the
	// manager did not write. The pool follows the autoscaler's recommendation, not that
	// value, and the manager writes spec.replicas again only when its recommendation
	// changes, so it never fights the other writer in a loop. Remove the other writer, or
	// remove spec.autoscaling to size the pool by spec.replicas.
	ReasonExternalScaleWrite = "ExternalScaleWrite"
)

// AgentSession conditions.
const (
	// SessionReadyCondition is True while the session's sandbox is bound and Ready.
	SessionReadyCondition = "Ready"

	// ReasonBound: the session holds a Ready sandbox.
	ReasonBound = "Bound"
	// ReasonPodStarting: the session holds a pod that is still booting (a cold start).
	ReasonPodStarting = "PodStarting"
	// ReasonSandboxNotFound: the AgentSandbox named in spec.sandboxName does not exist in the
	// namespace (yet); the session binds when it appears.
	ReasonSandboxNotFound = "SandboxNotFound"
	// ReasonWaitingForWarmSandbox: startPolicy RequireWarm and no warm sandbox is Ready.
	ReasonWaitingForWarmSandbox = "WaitingForWarmSandbox"
	// ReasonPodCreateFailed: a cold pod could not be created; retried with backoff.
	ReasonPodCreateFailed = "PodCreateFailed"

	// End reasons (status.endReason, and the Ready condition's reason once finished).

	// ReasonMaxLifetime: the session reached its hard deadline.
	ReasonMaxLifetime = "MaxLifetime"
	// ReasonIdleTimeout: no heartbeat within the idle timeout.
	ReasonIdleTimeout = "IdleTimeout"
	// ReasonPodFailed: the sandbox pod failed or was evicted.
	ReasonPodFailed = "PodFailed"
	// ReasonPodDeleted: the sandbox pod was deleted by someone else.
	ReasonPodDeleted = "PodDeleted"
	// ReasonNodeLost: the node the sandbox ran on is gone.
	ReasonNodeLost = "NodeLost"
	// ReasonStartTimeout (end reason, phase Failed): the session was still Pending or
	// Queued when its startTimeout (spec.startTimeout, capped by the class's
	// spec.lifetime.startTimeout) ran out; its place in the quota queue is freed.
	ReasonStartTimeout = "StartTimeout"
	// ReasonSandboxDeleted: the session's AgentSandbox was deleted.
	ReasonSandboxDeleted = "SandboxDeleted"
)

// AgentQuota conditions, and the session condition a quota sets.
const (
	// QuotaActive is True when this AgentQuota is the one enforced for its namespace.
	QuotaActive = "Active"
	// ReasonEnforced: the quota is enforced.
	ReasonEnforced = "Enforced"
	// ReasonConflict: the namespace has more than one AgentQuota; none but the oldest is
	// enforced.
	ReasonConflict = "Conflict"

	// QuotaReserved is the session condition that says the quota admitted it.
	QuotaReserved = "QuotaReserved"
	// ReasonQuotaReserved: admitted.
	ReasonQuotaReserved = "QuotaReserved"
	// ReasonWaitingForQuota: does not fit now; admitted in FIFO order when it does.
	ReasonWaitingForQuota = "WaitingForQuota"
	// ReasonExceedsQuota: can never fit: one sandbox alone exceeds a limit.
	ReasonExceedsQuota = "ExceedsQuota"
	// ReasonResourceQuotaExceeded: a native ResourceQuota forbids the pod; retried when it
	// changes or capacity frees.
	ReasonResourceQuotaExceeded = "ResourceQuotaExceeded"
)

// The end reason of a session refused by a full quota queue.
const (
	// ReasonQueueFull (end reason, phase Failed): the session would have waited for its
	// namespace's quota while maxQueued sessions already wait (AgentQuota spec.maxQueued,
	// or the manager's --max-queued-sessions for the default quota). Retry later, or raise
	// the limit.
	ReasonQueueFull = "QueueFull"
)

// Reasons of the tenant boundary: what the manager reports when a class or session cannot
// be served as its promise to the platform team requires.
const (
	// ReasonEgressPolicyNotReady (AgentSandbox Degraded, AgentSession Ready=False): the
	// class's NetworkPolicy for spec.egress and spec.ingress does not exist (yet) or could
	// not be written. It fails closed: no pod of the class is created or bound until it exists.
	ReasonEgressPolicyNotReady = "EgressPolicyNotReady"
	// ReasonRuntimeClassMismatch (AgentSandbox Degraded): the RuntimeClass's handler does
	// not give the class's spec.isolation (a Hyper-V handler for Process, whose VM the quota
	// would not count, or a process handler for HyperV, which would run without a VM).
	ReasonRuntimeClassMismatch = "RuntimeClassMismatch"
	// ReasonPodNotReady (AgentSession Ready=False): the session's pod was Ready and is not
	// any more (a failing readiness probe, a node under pressure); the session keeps it.
	ReasonPodNotReady = "PodNotReady"
	// ReasonInvalidSpec (AgentSandbox Degraded; AgentSession end reason, or Ready=False
	// while its class has one): a stored field the manager cannot use, e.g. a duration
	// stored before the CRD bounded it. The message names the field and the value; fix or
	// recreate the object.
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonSessionDeleted (end reason): the session was deleted while it held a sandbox
	// and something (a finalizer) keeps the object; the sandbox is destroyed at once.
	ReasonSessionDeleted = "SessionDeleted"
)

// The credentials condition of a session that names Secrets in spec.credentials. The
// manager never reads the Secrets: it mirrors what the client says in the
// agents.hyperpool.io/credentials-delivered annotation (CredentialsDeliveredAnnotation).
const (
	// CredentialsDelivered is the session condition that says whether the client delivered
	// spec.credentials into the sandbox. Absent when the session names no credentials, and
	// until the session is bound.
	CredentialsDelivered = "CredentialsDelivered"
	// ReasonCredentialsDelivered (True): the client set the annotation after writing the
	// named Secrets' keys into the sandbox; the message names the Secrets and the time.
	ReasonCredentialsDelivered = "Delivered"
	// ReasonCredentialsPending (False): the session is bound and names Secrets, and no
	// client has said it delivered them yet.
	ReasonCredentialsPending = "Pending"
)
